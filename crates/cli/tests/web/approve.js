// Drives Debian's Chromium (headless, through playwright-core) against a
// running `blastwall serve`, for crates/cli/tests/suite/web.rs:
//   1. a fresh browser with no cookie is refused the page;
//   2. a name rebound to 127.0.0.1 (DNS rebinding) is refused, token or not;
//   3. the URL with the token signs in, and the token leaves the address bar;
//   4. the pending approval's summary is on the page, as text;
//   5. its Approve button is clicked; the page says it was approved.
// Prints one JSON line with what it saw; exits 1 if a step failed.
//
// Environment: BW_URL (the URL `serve` printed, with its token),
// BW_APPROVAL (the approval id), BW_SUMMARY (its summary text),
// BW_CHROMIUM (default /usr/bin/chromium).
'use strict';

const { chromium } = require('playwright-core');

const url = process.env.BW_URL;
const id = process.env.BW_APPROVAL;
const summary = process.env.BW_SUMMARY;
const executablePath = process.env.BW_CHROMIUM || '/usr/bin/chromium';

function fail(result, why) {
  result.ok = false;
  result.failures.push(why);
}

async function main() {
  const result = { ok: true, failures: [], steps: {} };
  const base = new URL(url);
  const token = base.searchParams.get('token');
  base.search = '';
  const port = base.port;
  // Playwright gives every launch a fresh, empty profile directory of its
  // own (it refuses a --user-data-dir in `args`).
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // A rebinding attacker's name, resolved to the page's address.
      '--host-resolver-rules=MAP rebind.blastwall.test 127.0.0.1',
    ],
  });
  try {
    // 1. No cookie, no token: refused.
    {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const r = await page.goto(base.toString());
      result.steps.no_token = { status: r.status(), text: (await page.textContent('h1')) || '' };
      if (r.status() !== 401) fail(result, `no token: status ${r.status()}`);
      await ctx.close();
    }
    // 2. The right token under another name: refused, and no cookie is set.
    {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const evil = `http://rebind.blastwall.test:${port}/?token=${token}`;
      const r = await page.goto(evil);
      const cookies = await ctx.cookies();
      result.steps.wrong_host = { status: r.status(), cookies: cookies.length };
      if (r.status() !== 421) fail(result, `wrong host: status ${r.status()}`);
      if (cookies.length !== 0) fail(result, 'wrong host: a cookie was set');
      await ctx.close();
    }
    // 3-5. Signed in, the approval is there, one click approves it.
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const csp = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) csp.push(m.text());
    });
    page.on('pageerror', (e) => csp.push(String(e)));
    const r = await page.goto(url);
    result.steps.sign_in = { status: r.status(), url: page.url() };
    if (r.status() !== 200) fail(result, `sign in: status ${r.status()}`);
    if (page.url().includes('token')) fail(result, `the token stayed in the URL: ${page.url()}`);
    const cookies = await ctx.cookies();
    const c = cookies[0] || {};
    result.steps.cookie = { count: cookies.length, httpOnly: c.httpOnly, sameSite: c.sameSite };
    if (!(c.httpOnly && c.sameSite === 'Strict')) fail(result, `cookie: ${JSON.stringify(c)}`);
    const item = page.locator(`li.approval[data-id="${id}"]`);
    await item.waitFor({ timeout: 30000 });
    const shown = (await item.locator('.summary').textContent()).trim();
    result.steps.summary = shown;
    if (shown !== summary) fail(result, `summary: ${JSON.stringify(shown)} != ${JSON.stringify(summary)}`);
    // The script ran under the CSP and its event stream is open.
    await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 15000 })
      .then(() => { result.steps.live = true; })
      .catch(() => { result.steps.live = false; fail(result, 'the live event stream did not open'); });
    await Promise.all([
      page.waitForNavigation({ timeout: 30000 }),
      item.locator('button.approve').click(),
    ]);
    const flash = ((await page.textContent('#flash')) || '').trim();
    result.steps.flash = flash;
    if (!flash.includes(`${id} approved (once)`)) fail(result, `after the click: ${flash}`);
    if (await page.locator(`li.approval[data-id="${id}"]`).count() !== 0) {
      fail(result, 'the approval is still listed as pending');
    }
    result.steps.csp_violations = csp;
    if (csp.length) fail(result, `CSP or script errors: ${csp.join(' | ')}`);
    await ctx.close();
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, failures: [String(e && e.stack || e)] }) + '\n');
  process.exit(1);
});
