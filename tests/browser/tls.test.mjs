// Browser suite, HTTPS: the web client in headless Chromium against a chatd
// started with --tls-cert/--tls-key and a certificate from a test CA
// (tests/lib/testca.sh); tests/browser/run.sh makes both and runs this.
//
//   CHATD_URL=https://127.0.0.1:PORT/ CHATD_TLS_SPKI=BASE64 node tests/browser/tls.test.mjs
//
// Chromium trusts the test certificate through
// --ignore-certificate-errors-spki-list: certificate errors are ignored
// only for a chain holding a public key whose SHA-256 (base64) is listed,
// here the server certificate's own key, so the check is a pin, not a
// blanket ignore (the last two tests show a browser without the pin, and
// one with another key's pin, refusing the page).
//
// Environment:
//   CHATD_URL        the https:// page to open
//   CHATD_TLS_SPKI   base64 SHA-256 of the server certificate's public key
//   CHATD_STEP_TIMEOUT_MS  how long any step may take (20000)
//   ARTIFACTS_DIR    screenshots go here (build/artifacts)
//
// Prints "ok NAME" or "FAIL NAME: reason" per test and ends with
// "N passed, N failed, N skipped". Exits 1 on any failure.
import { launchChromium } from '../lib/chromium.mjs';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.CHATD_URL || '';
const SPKI = process.env.CHATD_TLS_SPKI || '';
const STEP_MS = Number(process.env.CHATD_STEP_TIMEOUT_MS || 20000);
const ARTIFACTS = process.env.ARTIFACTS_DIR || 'build/artifacts';

mkdirSync(ARTIFACTS, { recursive: true });

let passed = 0;
let failed = 0;

async function test(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    const reason = String((e && e.message) || e).split('\n')[0];
    console.log(`FAIL ${name}: ${reason}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function waitWelcome(page) {
  await page.waitForFunction(() => {
    const n = document.querySelector('#me-name');
    const s = document.querySelector('#status');
    return n && n.textContent.trim() !== '' && s && s.dataset.state === 'online';
  }, null, { timeout: STEP_MS });
  return (await page.textContent('#me-name')).trim();
}

/* The server-confirmed manual message with exactly this text: its sender. */
function waitManual(page, text) {
  return page.waitForFunction((t) => {
    for (const m of document.querySelectorAll('#messages .msg[data-source="manual"][data-id]')) {
      const txt = m.querySelector('.msg-text');
      if (txt && txt.textContent === t) return m.querySelector('.msg-name').textContent;
    }
    return null;
  }, text, { timeout: STEP_MS }).then((h) => h.jsonValue());
}

/* What opening the page does in a browser launched with these flags:
 * "loaded", or the navigation error. */
async function openWith(args) {
  const browser = await launchChromium(args);
  try {
    const page = await (await browser.newContext()).newPage();
    try {
      await page.goto(BASE, { waitUntil: 'load', timeout: STEP_MS });
      return 'loaded';
    } catch (e) {
      return String(e.message || e).split('\n')[0];
    }
  } finally {
    await browser.close();
  }
}

let exitCode = 1;
try {
  assert(BASE.startsWith('https://'), `CHATD_URL is not https: "${BASE}"`);
  assert(SPKI.length > 0, 'CHATD_TLS_SPKI is not set');
  const browser = await launchChromium([`--ignore-certificate-errors-spki-list=${SPKI}`]);
  const a = await (await browser.newContext()).newPage();
  const b = await (await browser.newContext()).newPage();
  const errors = [];
  a.on('pageerror', (e) => errors.push(e.message));
  b.on('pageerror', (e) => errors.push(e.message));
  let nameA = null;

  await test('https: the page loads as a secure context and gets its welcome', async () => {
    await a.goto(BASE, { waitUntil: 'load', timeout: STEP_MS });
    const where = await a.evaluate(() => ({ proto: location.protocol, secure: window.isSecureContext }));
    assert(where.proto === 'https:' && where.secure, `not a secure https page: ${JSON.stringify(where)}`);
    nameA = await waitWelcome(a);
    // the token's issuer is the https public URL
    const token = await a.evaluate(() => localStorage.getItem('chatd.token'));
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    assert(claims.iss === BASE.replace(/\/$/, ''), `iss is "${claims.iss}", not the https URL`);
  });

  await test('https: a message goes from one page to another over the data channel', async () => {
    await b.goto(BASE, { waitUntil: 'load', timeout: STEP_MS });
    await waitWelcome(b);
    const text = `over https ${Date.now().toString(36)}`;
    await a.fill('#compose', text);
    await a.click('#send');
    assert((await waitManual(a, text)) === nameA, 'the sender does not see its message confirmed');
    assert((await waitManual(b, text)) === nameA, 'the other page does not get the message');
    await a.screenshot({ path: join(ARTIFACTS, 'https.png'), animations: 'disabled' });
    assert(errors.length === 0, errors.join(' | '));
  });
  await browser.close();

  await test('https: a browser without the pin refuses the test certificate', async () => {
    const got = await openWith([]);
    assert(/ERR_CERT_AUTHORITY_INVALID/.test(got), `without the pin: ${got}`);
  });

  await test('https: a pin of another key does not help', async () => {
    const other = createHash('sha256').update('not the server key').digest('base64');
    const got = await openWith([`--ignore-certificate-errors-spki-list=${other}`]);
    assert(/ERR_CERT_AUTHORITY_INVALID/.test(got), `with another pin: ${got}`);
  });
  exitCode = failed === 0 ? 0 : 1;
} catch (e) {
  failed++;
  console.log(`FAIL tls suite: ${String((e && e.message) || e).split('\n')[0]}`);
}
console.log(`${passed} passed, ${failed} failed, 0 skipped`);
process.exit(exitCode);
