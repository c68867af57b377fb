// Browser suite: the web client in headless Chromium against a running chatd.
//
//   CHATD_URL=http://127.0.0.1:8080/ node tests/browser/web.test.mjs
//
// Chromium gathers no ICE candidate on loopback, so run this (and chatd)
// inside scripts/netns.sh; tests/browser/run.sh does all of it.
//
// Environment:
//   CHATD_URL                   page to open (default http://127.0.0.1:8080/)
//   CHATD_AUTO_POST_TIMEOUT_MS  how long to wait for the first auto post (15000;
//                               run.sh starts chatd with --auto-post-max-ms 2000)
//   CHATD_STEP_TIMEOUT_MS       how long any other step may take (20000)
//   ARTIFACTS_DIR               screenshots go here (build/artifacts)
//   CHROMIUM                    browser binary (/usr/bin/chromium)
//
// Prints "ok NAME" or "FAIL NAME: reason" per test and ends with
// "N passed, N failed, N skipped". Exits 1 on any failure.
import { launchChromium } from '../lib/chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.CHATD_URL || 'http://127.0.0.1:8080/';
const AUTO_MS = Number(process.env.CHATD_AUTO_POST_TIMEOUT_MS || 15000);
const STEP_MS = Number(process.env.CHATD_STEP_TIMEOUT_MS || 20000);
const ARTIFACTS = process.env.ARTIFACTS_DIR || 'build/artifacts';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

mkdirSync(ARTIFACTS, { recursive: true });

let passed = 0;
let failed = 0;
const pageErrors = [];

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

async function shot(page, name) {
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, animations: 'disabled' });
  return path;
}

function watch(page, label) {
  page.on('pageerror', (err) => pageErrors.push(`${label}: ${err.message}`));
}

/* Waits until the page has had its welcome: name shown and status online. */
async function waitWelcome(page) {
  await page.waitForFunction(() => {
    const n = document.querySelector('#me-name');
    const s = document.querySelector('#status');
    return n && n.textContent.trim() !== '' && s && s.dataset.state === 'online';
  }, null, { timeout: STEP_MS });
  return {
    name: (await page.textContent('#me-name')).trim(),
    username: (await page.textContent('#me-username')).trim(),
    email: (await page.textContent('#me-email')).trim(),
  };
}

/* The confirmed (server-echoed) manual message with exactly this text. */
function waitManual(page, text, timeout) {
  return page.waitForFunction((t) => {
    for (const m of document.querySelectorAll('#messages .msg[data-source="manual"][data-id]')) {
      const txt = m.querySelector('.msg-text');
      if (txt && txt.textContent === t) {
        return { name: m.querySelector('.msg-name').textContent, id: m.dataset.id };
      }
    }
    return null;
  }, text, { timeout }).then((h) => h.jsonValue());
}

const browser = await launchChromium();

let exitCode = 1;
try {
  const ctxA = await browser.newContext({ viewport: DESKTOP });
  const ctxB = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const a = await ctxA.newPage();
  const b = await ctxB.newPage();
  watch(a, 'desktop');
  watch(b, 'phone');
  let meA = null;
  let meB = null;
  let postText = null;

  await test('welcome shows the user', async () => {
    await a.goto(BASE, { waitUntil: 'load', timeout: STEP_MS });
    meA = await waitWelcome(a);
    assert(meA.name.length > 0, '#me-name is empty');
    assert(meA.username.length > 0, '#me-username is empty');
    assert(meA.email.includes('@'), `#me-email looks wrong: "${meA.email}"`);
    const token = await a.evaluate(() => localStorage.getItem('chatd.token'));
    assert(token && token.split('.').length === 3, 'no JWT stored after welcome');
    const listed = await a.$$eval('#online-list li', (lis) => lis.map((li) => li.textContent));
    assert(listed.some((t) => t.includes(meA.name)), 'own user missing from #online-list');
    // The "you" tag must be shown whole, not clipped by a long name.
    const tag = await a.$eval('#online-list .person-self .you-tag', (t) => {
      const r = t.getBoundingClientRect();
      const at = document.elementFromPoint(r.right - 2, r.top + r.height / 2);
      return { w: r.width, shown: at === t };
    });
    assert(tag.w >= 12 && tag.shown, `"you" tag not fully visible (width ${tag.w})`);
  });

  await test('auto post arrives', async () => {
    const h = await a.waitForFunction(() => {
      for (const m of document.querySelectorAll('#messages .msg[data-source="auto"]')) {
        const title = m.querySelector('.msg-title');
        const text = m.querySelector('.msg-text');
        const name = m.querySelector('.msg-name');
        if (title && title.textContent.trim() && text && text.textContent.trim() && name && name.textContent.trim()) {
          return title.textContent;
        }
      }
      return null;
    }, null, { timeout: AUTO_MS });
    assert(await h.jsonValue(), 'auto post without a title');
    await shot(a, 'desktop.png');
  });

  await test('second browser joins', async () => {
    await b.goto(BASE, { waitUntil: 'load', timeout: STEP_MS });
    meB = await waitWelcome(b);
    // A learns about B through presence (or already lists that user).
    await a.waitForFunction((u) => Array.from(document.querySelectorAll('#online-list li'))
      .some((li) => li.textContent.includes('@' + u)), meB.username.replace(/^@/, ''), { timeout: STEP_MS });
  });

  await test('post appears with the user\'s name', async () => {
    postText = `hello from the browser test ${Date.now().toString(36)} ✓`;
    await a.fill('#compose', postText);
    await a.click('#send');
    const got = await waitManual(a, postText, STEP_MS);
    assert(got.name === meA.name, `name is "${got.name}", expected "${meA.name}"`);
    const left = await a.inputValue('#compose');
    assert(left === '', 'composer not cleared after sending');
    await shot(a, 'desktop-posted.png');
  });

  await test('second browser sees the post', async () => {
    assert(postText, 'nothing was posted');
    const got = await waitManual(b, postText, STEP_MS);
    assert(got.name === meA.name, `name is "${got.name}", expected "${meA.name}"`);
    await shot(b, 'phone.png');
  });

  await test('phone layout: people drawer', async () => {
    assert(!(await b.isVisible('#me-name')), 'sidebar visible on a phone before opening it');
    await b.click('#menu-toggle');
    await b.waitForSelector('#me-name', { state: 'visible', timeout: 5000 });
    assert((await b.getAttribute('#menu-toggle', 'aria-expanded')) === 'true', 'aria-expanded not set');
    await b.waitForTimeout(300); // let the slide-in finish for the screenshot
    await shot(b, 'phone-drawer.png');
    await b.keyboard.press('Escape');
    await b.waitForSelector('#me-name', { state: 'hidden', timeout: 5000 });
  });

  await test('length limit hint', async () => {
    await a.fill('#compose', 'x'.repeat(2001));
    assert(await a.isDisabled('#send'), '#send enabled for 2001 characters');
    const hint = await a.textContent('#compose-hint');
    assert(/2000/.test(hint), `no limit hint: "${hint}"`);
    await a.fill('#compose', '   ');
    assert(await a.isDisabled('#send'), '#send enabled for blank text');
    await a.fill('#compose', '');
  });

  await test('reload keeps the identity', async () => {
    await a.reload({ waitUntil: 'load', timeout: STEP_MS });
    const again = await waitWelcome(a);
    assert(again.username === meA.username, `username changed: "${meA.username}" -> "${again.username}"`);
    assert(again.name === meA.name, `name changed: "${meA.name}" -> "${again.name}"`);
    // The earlier post is back from history, still attributed to us.
    if (postText) await waitManual(a, postText, STEP_MS);
  });

  await test('no page errors', async () => {
    assert(pageErrors.length === 0, pageErrors.join(' | '));
  });

  await ctxA.close();
  await ctxB.close();
  exitCode = failed === 0 ? 0 : 1;
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${String((e && e.message) || e).split('\n')[0]}`);
} finally {
  await browser.close();
}

console.log(`${passed} passed, ${failed} failed, 0 skipped`);
process.exit(exitCode);
