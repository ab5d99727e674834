// Drives aspen's PSU pages in Debian's Chromium the way a member would.
// Called by crates/aspen/tests/browser.rs with one JSON argument; prints
// one JSON object with what it saw. No JavaScript runs in the pages.
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

// RFC 6238 (SHA-1, 6 digits, 30 s) from a base32 secret, as an
// authenticator app computes it.
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
const out = {};
let trail = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false });
  const page = await context.newPage();
  trail = [];
  page.on('response', (r) => trail.push(`${r.status()} ${r.request().method()} ${r.url().slice(0, 80)}`));
  page.on('console', (m) => trail.push(`console: ${m.text()}`));
  const shot = async (name) => {
    if (cfg.screenshots) await page.screenshot({ path: `${cfg.screenshots}/${cfg.screenshot_prefix || ''}${name}.png`, fullPage: true });
  };
  const login = async (password) => {
    await page.getByLabel('Username').fill(cfg.username);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForLoadState();
  };

  await page.goto(cfg.start_url);
  await page.waitForLoadState();
  out.login_title = await page.title();
  await shot('login');
  if (cfg.wrong_password) {
    await login(cfg.wrong_password);
    out.login_error = (await page.getByRole('alert').textContent())?.trim();
  }
  await login(cfg.password);
  // The second factor, when the bank asks for it (SCA).
  if (new URL(page.url()).pathname === '/login/otp') {
    out.otp_text = (await page.locator('main').innerText()).trim();
    await shot('otp');
    if (cfg.totp_secret) {
      // A code is good once: when this time step's code was already spent
      // (an earlier journey in the same 30 s), the next step's code, which
      // the bank accepts as clock drift, is what the app shows next.
      for (const ahead of [0, 30000]) {
        await page.getByLabel('Authentication code').fill(totp(cfg.totp_secret, Date.now() + ahead));
        await page.getByRole('button', { name: 'Verify' }).click();
        await page.waitForLoadState();
        if (new URL(page.url()).pathname !== '/login/otp') break;
      }
    }
  }

  if (cfg.mode === 'authorize') {
    out.consent_heading = (await page.getByRole('heading', { level: 1 }).textContent())?.trim();
    const boxes = page.locator('input[name="account"]');
    out.account_count = await boxes.count();
    // AIS shows checkboxes; a payment shows radios (one debtor account).
    out.input_type = out.account_count ? await boxes.nth(0).getAttribute('type') : null;
    if (out.input_type === 'checkbox') {
      for (let i = 0; i < out.account_count; i++) await boxes.nth(i).uncheck();
    }
    out.details = (await page.locator('main').innerText()).trim();
    for (const i of cfg.accounts || []) await boxes.nth(i).check();
    out.chosen = [];
    for (const i of cfg.accounts || []) out.chosen.push(await boxes.nth(i).getAttribute('value'));
    await shot('consent');
    // The TPP's host does not exist here; what matters is where the bank
    // sends the browser: the Location of the redirect, fragment included.
    const toTpp = page.waitForRequest((r) => r.url().startsWith(cfg.redirect_prefix), { timeout: 15000 });
    await page.getByRole('button', { name: cfg.decision === 'deny' ? 'Deny' : 'Allow' }).click();
    const req = await toTpp;
    const hop = req.redirectedFrom();
    const resp = hop ? await hop.response() : null;
    out.final_url = resp ? resp.headers()['location'] : req.url();
  } else if (cfg.mode === 'dashboard') {
    await shot('dashboard');
    out.before = await page.locator('main').innerText();
    await page.getByRole('button', { name: `Revoke access for ${cfg.client_name}` }).first().click();
    await page.waitForLoadState();
    out.after = await page.locator('main').innerText();
  }
} catch (e) {
  out.error = String(e);
  out.trail = trail;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
