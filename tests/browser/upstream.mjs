// Drives a journey through the bank's upstream OpenID provider in Debian's
// Chromium (crates/aspen/tests/upstream_oidc.rs): the TPP's authorisation
// URL, the provider's sign-in page, aspen's consent page, Allow. One JSON
// argument; prints one JSON object with what it saw.
import { chromium } from 'playwright-core';

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
  page.on('response', (r) => trail.push(`${r.status()} ${r.request().method()} ${r.url().slice(0, 80)}`));

  await page.goto(cfg.start_url);
  await page.waitForLoadState();
  if (!page.url().startsWith(cfg.upstream)) throw new Error(`not at the provider: ${page.url()}`);
  out.upstream_heading = (await page.getByRole('heading', { level: 1 }).textContent())?.trim();
  await page.getByLabel('Username').fill(cfg.username);
  await page.getByLabel('Authentication').selectOption('sca');
  if (cfg.screenshots) await page.screenshot({ path: `${cfg.screenshots}/upstream-login.png`, fullPage: true });
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState();

  out.consent_heading = (await page.getByRole('heading', { level: 1 }).textContent())?.trim();
  const boxes = page.locator('input[name="account"]');
  out.account_count = await boxes.count();
  await boxes.nth(0).check();
  // The TPP's host does not exist here: what matters is the Location the
  // bank answers with, fragment included.
  const toTpp = page.waitForRequest((r) => r.url().startsWith(cfg.redirect_prefix), { timeout: 15000 });
  await page.getByRole('button', { name: 'Allow' }).click();
  const req = await toTpp;
  const hop = req.redirectedFrom();
  const resp = hop ? await hop.response() : null;
  out.final_url = resp ? resp.headers()['location'] : req.url();
} catch (e) {
  out.error = String(e);
  out.trail = trail;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
