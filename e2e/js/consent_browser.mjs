// Drives the consent page in headless Chromium (playwright-core with Debian's chromium):
// opens the authorization URL, saves a screenshot of the consent page, clicks Allow or Deny,
// and waits until the browser lands on the client's redirect URI. With a second URL it then
// checks that a remembered consent skips the page. Prints one JSON line.
//
// Usage: node consent_browser.mjs '<json config>'
//   {"authorize": url, "action": "allow"|"deny", "redirectPrefix": url, "screenshot": path,
//    "again": url (optional)}
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
process.on('unhandledRejection', () => {}); // a failed step is reported in the JSON line
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const out = { ok: false };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const violations = [];
  page.on('console', m => { if (/Content Security Policy|Refused/i.test(m.text())) violations.push(m.text()); });
  page.on('framenavigated', f => { if (f === page.mainFrame()) (out.nav ||= []).push(f.url().split('?')[0]); });
  await page.goto(cfg.authorize);
  await page.waitForSelector('#allow', { timeout: 15000 });
  out.consentURL = new URL(page.url()).pathname;
  out.title = await page.title();
  out.clientName = await page.textContent('#client-name');
  out.unverified = (await page.locator('#unverified').count()) > 0;
  out.redirectHost = await page.textContent('#redirect-host');
  if (cfg.screenshot) await page.screenshot({ path: cfg.screenshot, fullPage: true });
  const cookiesBefore = await context.cookies();
  out.flowCookie = cookiesBefore.filter(c => c.name.startsWith('__Host-mcpgate-flow-')).map(c => ({ secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
  await Promise.all([
    page.waitForURL(u => u.toString().startsWith(cfg.redirectPrefix), { timeout: 20000 }),
    page.click(cfg.action === 'deny' ? '#deny' : '#allow'),
  ]);
  out.final = page.url();
  const cookies = await context.cookies();
  out.consentCookie = cookies.filter(c => c.name === '__Host-mcpgate-consent').map(c => ({ secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
  if (cfg.again) {
    let sawConsent = false;
    page.on('framenavigated', f => { if (f === page.mainFrame() && new URL(f.url()).pathname === '/consent') sawConsent = true; });
    await page.goto(cfg.again);
    await page.waitForURL(u => u.toString().startsWith(cfg.redirectPrefix), { timeout: 20000 });
    out.again = page.url();
    out.againSawConsent = sawConsent;
  }
  out.cspViolations = violations;
  out.ok = true;
} catch (e) {
  out.error = String(e && e.message || e).slice(0, 300);
  out.cspViolations = violations;
  try { out.stuckAt = browser.contexts()[0].pages()[0].url(); out.stuckBody = (await browser.contexts()[0].pages()[0].content()).slice(0, 1500); } catch {}
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
