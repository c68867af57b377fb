// readme_page.mjs — opens chatd's page (CHATD_URL) in headless Chromium
// as a person would after `make run`, and waits for the welcome: the user's
// name shown and the status online. Exits 0 then, 1 otherwise. Run by
// tests/integration/readme.sh inside a network namespace.
import { launchChromium } from '../lib/chromium.mjs';

const url = process.env.CHATD_URL || 'http://127.0.0.1:8080/';
const browser = await launchChromium();
let status = 1;
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => {
    const n = document.querySelector('#me-name');
    const s = document.querySelector('#status');
    return n && n.textContent.trim() !== '' && s && s.dataset.state === 'online';
  }, null, { timeout: 30000 });
  console.log(`welcome: ${(await page.textContent('#me-name')).trim()}`);
  status = 0;
} catch (e) {
  console.log(`no welcome: ${String((e && e.message) || e).split('\n')[0]}`);
} finally {
  await browser.close();
}
process.exit(status);
