// page.mjs — one page of the web client in headless Chromium, driven by
// tests/cluster/test_cluster.py one JSON line at a time (in the cluster
// suite's network namespace: Chromium gathers no candidate on loopback).
//
//   CHATD_URL=http://127.0.0.1:PORT/?room=NAME node tests/cluster/page.mjs
//
// Once the page has its welcome it prints {"event":"ready","sub":ID,"name":NAME}.
// Then each line read from stdin is a command, answered by one line:
//   {"op":"wait","text":T}  -> {"event":"got","id":ID,"name":NAME}: a confirmed
//                              message with exactly that text is shown
//   {"op":"post","text":T}  -> {"event":"posted","id":ID}: typed, sent, and
//                              confirmed by the server (it has its id)
//   {"op":"shot","name":F}  -> {"event":"shot","path":P}: a screenshot in ARTIFACTS_DIR
//   {"op":"errors"}         -> {"event":"errors","errors":[...]}: page errors so far
//   {"op":"quit"}           -> exits 0
// A command that fails answers {"event":"error","message":...}; a page that
// never gets its welcome prints that and exits 1.
import { launchChromium } from '../lib/chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const URL_ = process.env.CHATD_URL || 'http://127.0.0.1:8080/';
const STEP_MS = Number(process.env.CHATD_STEP_TIMEOUT_MS || 20000);
const ARTIFACTS = process.env.ARTIFACTS_DIR || 'build/artifacts';

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const reason = (e) => String((e && e.message) || e).split('\n')[0];

/* The confirmed message (it has a data-id) whose text is exactly T. */
function shown(page, t) {
  return page.waitForFunction((want) => {
    for (const m of document.querySelectorAll('#messages .msg[data-id]')) {
      const txt = m.querySelector('.msg-text');
      if (txt && txt.textContent === want) {
        const n = m.querySelector('.msg-name');
        return { id: m.dataset.id, name: n ? n.textContent : '' };
      }
    }
    return null;
  }, t, { timeout: STEP_MS }).then((h) => h.jsonValue());
}

mkdirSync(ARTIFACTS, { recursive: true });
const browser = await launchChromium();
let code = 0;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(URL_, { waitUntil: 'load', timeout: STEP_MS });
  await page.waitForFunction(() => {
    const n = document.querySelector('#me-name');
    const s = document.querySelector('#status');
    return n && n.textContent.trim() !== '' && s && s.dataset.state === 'online';
  }, null, { timeout: STEP_MS });
  const token = await page.evaluate(() => localStorage.getItem('chatd.token'));
  const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  say({ event: 'ready', sub: payload.sub, name: (await page.textContent('#me-name')).trim() });

  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if (cmd.op === 'quit') break;
    try {
      if (cmd.op === 'wait') {
        say({ event: 'got', ...(await shown(page, cmd.text)) });
      } else if (cmd.op === 'post') {
        await page.fill('#compose', cmd.text);
        await page.click('#send');
        say({ event: 'posted', id: (await shown(page, cmd.text)).id });
      } else if (cmd.op === 'shot') {
        const path = join(ARTIFACTS, cmd.name);
        await page.screenshot({ path, animations: 'disabled' });
        say({ event: 'shot', path });
      } else if (cmd.op === 'errors') {
        say({ event: 'errors', errors });
      } else {
        say({ event: 'error', message: `unknown op ${cmd.op}` });
      }
    } catch (e) {
      say({ event: 'error', message: reason(e) });
    }
  }
  await ctx.close();
} catch (e) {
  say({ event: 'error', message: reason(e) });
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
