// A real OpenID provider (npm oidc-provider) standing in for the bank's own
// login in crates/aspen/tests/upstream_oidc.rs. Called with one JSON
// argument:
//   { "cert": "<PEM file>", "key": "<PEM file>", "alg": "PS256" | "RS256",
//     "secret_client": { "client_id", "client_secret" },
//     "jwt_client": { "client_id", "jwk": { public RSA JWK } } }
// Serves HTTPS on 127.0.0.1 on a port of its own and prints one line,
// {"issuer":"https://127.0.0.1:<port>"}, once it listens. aspen is then
// started with that issuer; the test writes one line to stdin,
// {"redirect_uri":"https://127.0.0.1:<aspen>/login/callback"}, and the
// provider answers "ready" once its clients are registered with it.
//
// Its login is a form (`username`, `level`, button "Sign in"). It ends the
// interaction with accountId = username and, for level "sca", acr
// urn:openbanking:psd2:sca with amr ["pwd","otp"]; for level "ca", acr
// urn:openbanking:psd2:ca with amr ["pwd"]. Consent is implied (the bank's
// own first-party client).
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { Provider } from 'oidc-provider';

const cfg = JSON.parse(process.argv[2]);
const SCA = 'urn:openbanking:psd2:sca';
const CA = 'urn:openbanking:psd2:ca';

// Generated as PEM and read back before the JWK export: exporting the
// generated KeyObject itself deadlocks Node 20 now and then (a garbage
// collection during the export destroys the finished key-generation job,
// which waits on a lock the export holds; seen as a provider that never
// printed its issuer, 1 start in ~40).
const signing = createPrivateKey(generateKeyPairSync('rsa', {
  modulusLength: 2048,
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' },
}).privateKey).export({ format: 'jwk' });
signing.kid = 'upstream-1';
signing.use = 'sig';

const server = https.createServer({
  cert: readFileSync(cfg.cert),
  key: readFileSync(cfg.key),
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `https://127.0.0.1:${server.address().port}`;

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Upstream Bank sign-in</title>
<style>body{font-family:sans-serif;max-width:26rem;margin:3rem auto;color:#222}
h1{color:#7a1f3d}label{display:block;margin-top:1rem}input,select{width:100%;padding:.4rem}
button{margin-top:1.2rem;padding:.5rem 1.4rem;background:#7a1f3d;color:#fff;border:0}</style>
</head><body><h1>Upstream Bank</h1>${body}</body></html>`;

const lines = (async function* () {
  let buf = '';
  for await (const chunk of process.stdin) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}());
let handler = (req, res) => { res.statusCode = 503; res.end(); };
server.on('request', (req, res) => handler(req, res));
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.stdin.setEncoding('utf8');
const { value: first } = await lines.next();
const { redirect_uri: redirectUri } = JSON.parse(first);
cfg.redirect_uri = redirectUri;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: cfg.secret_client.client_id,
      client_secret: cfg.secret_client.client_secret,
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: [cfg.redirect_uri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      id_token_signed_response_alg: cfg.alg,
    },
    {
      client_id: cfg.jwt_client.client_id,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'PS256',
      jwks: { keys: [cfg.jwt_client.jwk] },
      redirect_uris: [cfg.redirect_uri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      id_token_signed_response_alg: cfg.alg,
    },
  ],
  jwks: { keys: [signing] },
  acrValues: [SCA, CA],
  claims: { openid: ['sub', 'amr', 'auth_time'], acr: null },
  cookies: { keys: ['upstream-test-cookie-key'] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  enabledJWA: {
    idTokenSigningAlgValues: ['PS256', 'RS256'],
    clientAuthSigningAlgValues: ['PS256'],
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id }; } };
  },
  // The bank's own client: a grant for what it asked, with no consent page.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid');
    grant.addOIDCClaims(['acr', 'amr', 'auth_time']);
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page(`<p role="alert">${escape(out.error)}: ${escape(out.error_description || '')}</p>`);
  },
});

const form = (uid, error) => page(`
<form method="post" action="/interaction/${escape(uid)}/login">
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="level">Authentication</label>
<select id="level" name="level">
<option value="sca" selected>Password and code (strong)</option>
<option value="ca">Password only</option>
</select>
<button type="submit">Sign in</button>
</form>`);

const readForm = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { body += c; if (body.length > 10000) req.destroy(); });
  req.on('end', () => resolve(new URLSearchParams(body)));
  req.on('error', reject);
});

const oidc = provider.callback();
handler = async (req, res) => {
  const m = req.url.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!m) return oidc(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== m[1]) throw new Error('interaction mismatch');
    if (req.method === 'GET' && !m[2]) {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.setHeader('cache-control', 'no-store');
      return res.end(form(details.uid));
    }
    if (req.method === 'POST' && m[2]) {
      const f = await readForm(req);
      const username = (f.get('username') || '').trim();
      if (!username) {
        res.statusCode = 400;
        res.setHeader('content-type', 'text/html; charset=utf-8');
        return res.end(form(details.uid, 'Enter your username.'));
      }
      const strong = (f.get('level') || 'sca') === 'sca';
      return await provider.interactionFinished(req, res, {
        login: {
          accountId: username,
          acr: strong ? SCA : CA,
          amr: strong ? ['pwd', 'otp'] : ['pwd'],
        },
      }, { mergeWithLastSubmission: false });
    }
    res.statusCode = 405;
    return res.end();
  } catch (e) {
    res.statusCode = 400;
    res.setHeader('content-type', 'text/html; charset=utf-8');
    return res.end(page(`<p role="alert">${escape(e.message)}</p>`));
  }
};
process.stdout.write('ready\n');
// The test closes stdin (or dies): the provider goes with it.
for await (const _ of lines);
process.exit(0);
