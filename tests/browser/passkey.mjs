// Passkeys in Debian's Chromium (issue 14): a virtual authenticator
// (Chrome DevTools Protocol, WebAuthn domain) stands in for the PSU's
// phone or laptop. Called by crates/aspen/tests/browser.rs with one JSON
// argument; prints one JSON object with what it saw. JavaScript is on
// here: passkeys are the one thing on aspen's pages that needs it.
import { createHmac } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

function totp(secret, now = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 30000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = (mac.readUInt32BE(off) & 0x7fffffff) % 1000000;
  return String(bin).padStart(6, '0');
}

const cfg = JSON.parse(process.argv[2]);
const out = { journeys: [] };
let trail = [];
// The TPP's host does not exist here: it resolves to the bank's own port,
// whose 404 stands in for the TPP's page, so each journey's last
// navigation ends before the next starts.
const tpp = new URL(cfg.redirect_prefix).hostname;
const bank = new URL(cfg.dashboard_url).port;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [`--host-resolver-rules=MAP ${tpp}:443 127.0.0.1:${bank}`, '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('response', (r) => trail.push(`${r.status()} ${r.request().method()} ${r.url().slice(0, 80)}`));
  page.on('console', (m) => trail.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => trail.push(`pageerror: ${e}`));
  const shot = async (name) => {
    if (cfg.screenshots) await page.screenshot({ path: `${cfg.screenshots}/${name}.png`, fullPage: true });
  };
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });

  // Dashboard: password and code, then add a passkey on the security page.
  await page.goto(cfg.dashboard_url);
  await page.getByLabel('Username').fill(cfg.username);
  await page.getByLabel('Password').fill(cfg.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState();
  for (const ahead of [0, 30000]) {
    await page.getByLabel('Authentication code').fill(totp(cfg.totp_secret, Date.now() + ahead));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.waitForLoadState();
    if (new URL(page.url()).pathname !== '/login/otp') break;
  }
  await page.goto(new URL('/account/security', cfg.dashboard_url).href);
  await page.getByLabel('Name', { exact: true }).last().fill('Virtual key');
  await shot('passkey-enrol');
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await page.getByText('Passkey added.').waitFor({ timeout: 15000 });
  out.security_text = (await page.locator('main').innerText()).trim();
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  out.credentials = credentials.length;
  out.resident = credentials.every((c) => c.isResidentCredential);

  // Each TPP journey: the login page's "Use a passkey", no username.
  for (const j of cfg.journeys) {
    trail = [];
    const seen = {};
    await page.goto(j.start_url);
    await page.waitForLoadState();
    seen.login_text = (await page.locator('main').innerText()).trim();
    if (j.screenshot) await shot(j.screenshot);
    // The test may change the payment behind the page now.
    if (j.pause_file) {
      writeFileSync(j.pause_file, 'ready');
      const until = Date.now() + 20000;
      while (!existsSync(j.resume_file) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    }
    const toTpp = page.waitForRequest((r) => r.url().startsWith(cfg.redirect_prefix), { timeout: 15000 });
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    if (!j.expect_denied) {
      await page.waitForURL((u) => u.pathname === '/consent', { timeout: 15000 });
      seen.consent_text = (await page.locator('main').innerText()).trim();
      const boxes = page.locator('input[name="account"]');
      await boxes.first().check();
      await page.getByRole('button', { name: 'Allow' }).click();
    }
    const req = await toTpp;
    const hop = req.redirectedFrom();
    const resp = hop ? await hop.response() : null;
    seen.final_url = resp ? resp.headers()['location'] : req.url();
    await page.waitForURL((u) => u.href.startsWith(cfg.redirect_prefix));
    out.journeys.push(seen);
  }
} catch (e) {
  out.error = String(e);
  out.trail = trail;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
