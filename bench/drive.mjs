// A fixed number of requests over keep-alive mTLS, for per-request cost
// under callgrind or perf (bench/profile.sh): the count, not the rate, is
// what matters, so the client may be slow. Client assertions are signed
// before the first request.
//
//   node bench/drive.mjs --url https://127.0.0.1:18443 --kit KIT \
//     --scenario pkjwt|tls|discovery|jwks --n 500 --conns 1 [--client-id ID] \
//     [--warm 40 --before CMD --after CMD]
//   node bench/drive.mjs ... --scenario get --path /open-banking/... --bearer TOKEN
//     (a resource GET with a bound access token, e.g. an AIS page)
//
// --warm sends that many requests first, on the same connections, and
// --before runs a shell command after them, --after one after the n counted
// requests, before the connections close: so a count between the two (say
// `callgrind_control -z` and `-d`) holds no TLS handshake, whatever the
// number of connections (a handshake costs about 2.5M instructions, which
// at 8 connections and 400 requests is 44,000 a request).
import { createPrivateKey, randomUUID, sign, constants } from 'node:crypto';
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    url: { type: 'string' },
    kit: { type: 'string' },
    scenario: { type: 'string' },
    n: { type: 'string', default: '500' },
    conns: { type: 'string', default: '1' },
    'client-id': { type: 'string' },
    path: { type: 'string' },
    bearer: { type: 'string' },
    warm: { type: 'string', default: '0' },
    before: { type: 'string' },
    after: { type: 'string' },
  },
});
const warm = Number(o.warm);
const n = Number(o.n);
const conns = Number(o.conns);
const kit = (f) => readFileSync(`${o.kit}/${f}`);
const agent = new https.Agent({
  keepAlive: true,
  maxSockets: conns,
  ca: kit('ca.pem'),
  cert: kit('transport.pem'),
  key: kit('transport-key.pem'),
});
const token = `${o.url}/token`;
const b64 = (x) => Buffer.from(x).toString('base64url');

function assertion(key, kid) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'PS256', kid, typ: 'JWT' }));
  const body = b64(JSON.stringify({
    iss: o['client-id'], sub: o['client-id'], aud: token, iat: now, exp: now + 600, jti: randomUUID(),
  }));
  const sig = sign('sha256', Buffer.from(`${head}.${body}`), {
    key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
  });
  return `${head}.${body}.${b64(sig)}`;
}

const bodies = [];
if (o.scenario === 'pkjwt') {
  const key = createPrivateKey(kit('signing-key.pem'));
  const kid = JSON.parse(kit('kit.json')).signing_kid;
  for (let i = 0; i < warm + n; i++) {
    bodies.push(new URLSearchParams({
      grant_type: 'client_credentials', scope: 'accounts',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion(key, kid),
    }).toString());
  }
} else if (o.scenario === 'tls') {
  const b = new URLSearchParams({
    grant_type: 'client_credentials', scope: 'accounts', client_id: o['client-id'],
  }).toString();
  for (let i = 0; i < warm + n; i++) bodies.push(b);
}

function once(i) {
  return new Promise((resolve, reject) => {
    const post = bodies.length > 0;
    const url = post ? token
      : o.scenario === 'get' ? `${o.url}${o.path}`
        : o.scenario === 'jwks' ? `${o.url}/jwks` : `${o.url}/.well-known/openid-configuration`;
    const headers = post ? { 'content-type': 'application/x-www-form-urlencoded' }
      : o.bearer ? { authorization: `Bearer ${o.bearer}` } : {};
    const req = https.request(url, {
      agent,
      method: post ? 'POST' : 'GET',
      headers,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`${res.statusCode} ${Buffer.concat(chunks)}`));
        } else resolve();
      });
    });
    req.setTimeout(120000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (post) req.write(bodies[i]);
    req.end();
  });
}

// Requests [from, to) over every connection at once.
let next = 0;
async function run(from, to) {
  next = from;
  await Promise.all(Array.from({ length: conns }, async () => {
    while (next < to) await once(next++);
  }));
}
const hook = (cmd) => cmd && execSync(cmd, { stdio: 'inherit', timeout: 120000 });
await run(0, warm);
hook(o.before);
const t0 = performance.now();
await run(warm, warm + n);
const ms = performance.now() - t0;
hook(o.after);
console.log(`${o.scenario} n=${n} conns=${conns} ${(ms / n).toFixed(3)} ms/request`);
agent.destroy();
