// The developer portal in Debian's Chromium (issue 16): every page given
// loads, nothing is fetched from anywhere but the server, and basic
// accessibility holds. Called by crates/aspen/tests/portal.rs with one
// JSON argument; prints {visited, problems}.
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const out = { visited: 0, problems: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  let current = '';
  page.on('request', (r) => {
    if (!r.url().startsWith(cfg.origin) && !r.url().startsWith('data:')) out.problems.push(`${current}: fetched ${r.url()}`);
  });
  page.on('console', (m) => { if (m.type() === 'error') out.problems.push(`${current}: console error ${m.text()}`); });
  page.on('pageerror', (e) => out.problems.push(`${current}: ${e}`));
  for (const url of cfg.pages) {
    current = new URL(url).pathname;
    const resp = await page.goto(url);
    if (!resp || resp.status() !== 200) { out.problems.push(`${current}: status ${resp && resp.status()}`); continue; }
    out.visited += 1;
    const found = await page.evaluate(() => {
      const p = [];
      if (!document.documentElement.lang) p.push('no lang on <html>');
      if (!document.title.trim()) p.push('no title');
      const h1 = document.querySelectorAll('h1');
      if (h1.length !== 1) p.push(`${h1.length} h1 elements`);
      let last = 0;
      for (const h of document.querySelectorAll('main h1, main h2, main h3, main h4, main h5, main h6')) {
        const level = Number(h.tagName[1]);
        if (last && level > last + 1) p.push(`heading ${h.tagName} "${h.textContent.trim().slice(0, 40)}" skips a level after h${last}`);
        last = level;
      }
      for (const a of document.querySelectorAll('a')) {
        if (!(a.textContent.trim() || a.getAttribute('aria-label'))) p.push(`a link without a name: ${a.getAttribute('href')}`);
      }
      for (const t of document.querySelectorAll('table')) {
        if (!t.querySelector('th')) p.push('a table without header cells');
      }
      for (const i of document.querySelectorAll('img')) {
        if (!i.hasAttribute('alt')) p.push('an image without alt');
      }
      for (const i of document.querySelectorAll('input, select, textarea')) {
        if (i.type !== 'hidden' && !(i.labels && i.labels.length) && !i.getAttribute('aria-label')) p.push(`an unlabelled ${i.tagName}`);
      }
      if (!document.querySelector('nav[aria-label]')) p.push('no labelled navigation');
      if (!document.querySelector('main')) p.push('no main');
      return p;
    });
    for (const f of found) out.problems.push(`${current}: ${f}`);
    if (cfg.screenshots && (current === '/developers' || current === '/developers/payment-rules')) {
      const name = current === '/developers' ? 'portal' : 'portal-payment-rules';
      await page.screenshot({ path: `${cfg.screenshots}/${name}.png` });
    }
  }
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
