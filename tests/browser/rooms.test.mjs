// Browser suite, part 2: the web client's side of PROTOCOL.md section 10
// (rooms, pins, whispers, owners' kick and announce, announcements, search,
// catch-up after a reconnect) in headless Chromium against a running chatd.
//
//   CHATD_URL=http://127.0.0.1:8080/ node tests/browser/rooms.test.mjs
//
// Run it inside scripts/netns.sh, as tests/browser/run.sh does (Chromium
// gathers no ICE candidate on loopback). The same environment as
// web.test.mjs: CHATD_URL, CHATD_STEP_TIMEOUT_MS (20000), ARTIFACTS_DIR
// (build/artifacts), CHROMIUM; and CHATD_ADMIN_KEY, chatd's --admin-key
// (run.sh sets one): with it, creating a room without the key must fail
// with 403 and an announcement to every room is tested; without it (empty)
// those two checks are left out.
//
// Four browser contexts are four users: the owner (creates a room with a
// secret and a pin), a guest and a third user (join it with the pin), and a
// phone. The tests run in order and build on each other; a screenshot of
// each new screen goes to ARTIFACTS_DIR as web-*.png.
//
// Prints "ok NAME" or "FAIL NAME: reason" per test and ends with
// "N passed, N failed, N skipped". Exits 1 on any failure.
import { launchChromium } from '../lib/chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.CHATD_URL || 'http://127.0.0.1:8080/';
const STEP_MS = Number(process.env.CHATD_STEP_TIMEOUT_MS || 20000);
const ARTIFACTS = process.env.ARTIFACTS_DIR || 'build/artifacts';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

mkdirSync(ARTIFACTS, { recursive: true });

let passed = 0;
let failed = 0;
let skipped = 0;
const pageErrors = [];
const tag = Date.now().toString(36);
const ROOM = `club-${tag}`;
const SECRET = `owner-pass-${tag}`;
const PIN = '4321';
const ADMIN_KEY = process.env.CHATD_ADMIN_KEY || '';

/* Runs fn unless a test it needs failed (needs: names of earlier tests). */
const results = new Map();
async function test(name, fn, needs = []) {
  const missing = needs.filter((n) => results.get(n) !== true);
  if (missing.length) {
    skipped++;
    results.set(name, false);
    console.log(`skip ${name}: needs "${missing.join('", "')}"`);
    return;
  }
  try {
    await fn();
    passed++;
    results.set(name, true);
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    results.set(name, false);
    const reason = String((e && e.message) || e).split('\n')[0];
    console.log(`FAIL ${name}: ${reason}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, name), animations: 'disabled' });
}

function watch(page, label) {
  page.on('pageerror', (err) => pageErrors.push(`${label}: ${err.message}`));
}

/* Waits for the welcome in ROOM (status online, #room-name shows it). */
async function waitOnline(page, room = 'lobby') {
  await page.waitForFunction((r) => {
    const n = document.querySelector('#me-name');
    const s = document.querySelector('#status');
    const rn = document.querySelector('#room-name');
    return n && n.textContent.trim() !== '' && s && s.dataset.state === 'online' &&
      rn && rn.textContent === '#' + r;
  }, room, { timeout: STEP_MS });
}

/* The user id this page was given (its own entry in the online list). */
function selfId(page) {
  return page.$eval('#online-list .person-self', (li) => li.dataset.userId);
}

/*
 * Opens BASE in a fresh page of ctx as a user not in `taken` (ids). The
 * server draws among 10 users, so two contexts can get the same one; then
 * this forgets the token and draws again.
 */
async function newUser(ctx, label, taken) {
  const page = await ctx.newPage();
  watch(page, label);
  await page.goto(BASE, { waitUntil: 'load', timeout: STEP_MS });
  for (let i = 0; i < 12; i++) {
    await waitOnline(page);
    const id = await selfId(page);
    if (!taken.includes(id)) {
      const name = (await page.textContent('#me-name')).trim();
      return { page, id, name };
    }
    await page.evaluate(() => localStorage.removeItem('chatd.token'));
    await page.reload({ waitUntil: 'load', timeout: STEP_MS });
  }
  throw new Error(`${label}: no distinct user after 12 draws`);
}

/* The confirmed message (any source) whose text is exactly `text`, or null. */
function findMessage(page, text) {
  return page.evaluate((t) => {
    for (const m of document.querySelectorAll('#messages .msg[data-id]')) {
      const txt = m.querySelector('.msg-text');
      if (txt && txt.textContent === t) {
        const to = m.querySelector('.msg-whisper-to');
        const badge = m.querySelector('.msg-badge-private');
        return { id: m.dataset.id, source: m.dataset.source, to: to ? to.textContent : null,
          private: !!badge, scope: m.dataset.scope || null };
      }
    }
    return null;
  }, text);
}
async function waitMessage(page, text, timeout = STEP_MS) {
  const h = await page.waitForFunction((t) => {
    for (const m of document.querySelectorAll('#messages .msg[data-id]')) {
      const txt = m.querySelector('.msg-text');
      if (txt && txt.textContent === t) return true;
    }
    return false;
  }, text, { timeout });
  await h.dispose();
  return findMessage(page, text);
}

/* Every message id on the page, in page order. */
function pageIds(page) {
  return page.$$eval('#messages .msg[data-id]', (ms) => ms.map((m) => m.dataset.id));
}

function idGt(a, b) {
  return BigInt(a) > BigInt(b);
}

async function post(page, text) {
  await page.fill('#compose', text);
  await page.press('#compose', 'Enter');
  return waitMessage(page, text);
}

const browser = await launchChromium();
let exitCode = 1;
try {
  const ctxOwner = await browser.newContext({ viewport: DESKTOP });
  const ctxGuest = await browser.newContext({ viewport: DESKTOP });
  const ctxThird = await browser.newContext({ viewport: DESKTOP });
  const ctxPhone = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  let owner = null; // { page, id, name }
  let guest = null;
  let third = null;
  let phonePage = null;

  await test('room list shows the lobby with its online count', async () => {
    owner = await newUser(ctxOwner, 'owner', []);
    const p = owner.page;
    await p.waitForSelector('#room-list .room[data-room="lobby"] .room-online', { timeout: STEP_MS });
    const lobby = await p.$eval('#room-list .room[data-room="lobby"]', (li) => ({
      current: li.querySelector('.room-btn').getAttribute('aria-current'),
      online: Number(li.querySelector('.room-online').textContent),
    }));
    assert(lobby.current === 'true', 'the lobby is not marked as the current room');
    assert(lobby.online >= 1, `the lobby shows ${lobby.online} online`);
  });

  /* Submits the create dialog and returns the error it then shows. */
  async function createError(p) {
    await p.evaluate(() => { document.querySelector('#create-error').hidden = true; });
    await p.click('[data-testid="create-submit"]');
    await p.waitForSelector('#create-error:not([hidden])', { timeout: STEP_MS });
    return p.textContent('#create-error');
  }

  await test('create dialog shows the server\'s errors (403 without the admin key, 409 for an existing room)', async () => {
    const p = owner.page;
    await p.click('#new-room');
    await p.waitForSelector('#create-dialog[open]', { timeout: 5000 });
    await p.fill('[data-testid="create-name"]', ROOM);
    if (ADMIN_KEY) {
      const err = await createError(p);
      assert(/Not allowed: .*admin key/.test(err), `403 shown as "${err}"`);
      await p.click('#create-dialog summary');
      await p.fill('[data-testid="create-admin-key"]', ADMIN_KEY);
    }
    await p.fill('[data-testid="create-name"]', 'lobby');
    const err = await createError(p);
    assert(/already exists/.test(err), `409 shown as "${err}"`);
    await shot(p, 'web-create-room-error.png');
  }, ['room list shows the lobby with its online count']);

  await test('create a room with a secret and a pin', async () => {
    const p = owner.page;
    if (!(await p.isVisible('#create-dialog'))) await p.click('#new-room');
    await p.fill('[data-testid="create-name"]', ROOM);
    await p.fill('[data-testid="create-description"]', 'Books <b>and</b> tea'); // shown as text, not HTML
    await p.fill('[data-testid="create-secret"]', SECRET);
    await p.fill('[data-testid="create-pin"]', PIN);
    await shot(p, 'web-create-room.png');
    await p.click('[data-testid="create-submit"]');
    await waitOnline(p, ROOM);
    assert(!(await p.isVisible('#create-dialog')), 'the dialog is still open');
    const cred = await p.evaluate((r) => sessionStorage.getItem('chatd.owner.' + r), ROOM);
    assert(cred && JSON.parse(cred).secret === SECRET, 'the owner secret was not remembered for the room');
    assert(await p.isVisible('#announce-btn'), 'no Announce button for the owner');
    await p.waitForSelector(`#room-list .room[data-room="${ROOM}"] .room-lock`, { timeout: STEP_MS });
    const desc = await p.textContent(`#room-list .room[data-room="${ROOM}"] .room-desc-line`);
    assert(desc === 'Books <b>and</b> tea', `description shown as "${desc}"`);
    assert(new URL(p.url()).searchParams.get('room') === ROOM, 'the address does not name the room');
    await shot(p, 'web-rooms-list.png');
  }, ['room list shows the lobby with its online count']);

  await test('joining with a wrong pin says "wrong pin"', async () => {
    guest = await newUser(ctxGuest, 'guest', [owner.id]);
    const p = guest.page;
    await p.waitForSelector(`#room-list .room[data-room="${ROOM}"]`, { timeout: STEP_MS });
    await p.click(`#room-list .room[data-room="${ROOM}"] .room-btn`);
    await p.waitForSelector('#pin-dialog[open]', { timeout: 5000 });
    await p.fill('[data-testid="pin-input"]', '0000');
    await p.click('[data-testid="pin-submit"]');
    await p.waitForFunction(() => {
      const d = document.querySelector('#pin-dialog');
      const e = document.querySelector('#pin-error');
      return d.open && !e.hidden && /wrong pin/i.test(e.textContent);
    }, null, { timeout: STEP_MS });
    const st = await p.$eval('#status', (s) => s.dataset.state);
    assert(st === 'ended', `status is "${st}" after a refused pin (expected no automatic retry)`);
    await shot(p, 'web-pin-wrong.png');
  }, ['create a room with a secret and a pin']);

  await test('joining with the right pin', async () => {
    const p = guest.page;
    await p.fill('[data-testid="pin-input"]', PIN);
    await p.click('[data-testid="pin-submit"]');
    await waitOnline(p, ROOM);
    await owner.page.waitForSelector(`#online-list .person[data-user-id="${guest.id}"]`, { timeout: STEP_MS });
  }, ['joining with a wrong pin says "wrong pin"']);

  await test('a room address with a pin asks for it', async () => {
    // A user distinct from the other two (drawn in the lobby), then the room's address.
    third = await newUser(ctxThird, 'third', [owner.id, guest.id]);
    const p = third.page;
    await p.goto(new URL(`/?room=${ROOM}`, BASE).href, { waitUntil: 'load', timeout: STEP_MS });
    await p.waitForSelector('#pin-dialog[open]', { timeout: STEP_MS });
    await p.fill('[data-testid="pin-input"]', PIN);
    await p.press('[data-testid="pin-input"]', 'Enter');
    await waitOnline(p, ROOM);
    // The owner's room list counts three (it refreshes every 10 s and after actions).
    await owner.page.waitForFunction((r) => {
      const c = document.querySelector(`#room-list .room[data-room="${r}"] .room-online`);
      return c && c.textContent === '3';
    }, ROOM, { timeout: 15000 });
  }, ['joining with the right pin']);

  let whisperText = null;
  await test('whisper: only the sender and the recipient see it, marked private', async () => {
    const o = owner.page;
    await o.click(`#online-list .person[data-user-id="${guest.id}"] button.person-main`);
    await o.waitForSelector('#whisper-bar:not([hidden])', { timeout: 5000 });
    const bar = await o.textContent('#whisper-bar');
    assert(bar.includes('Whisper to') && bar.includes(guest.name), `whisper bar says "${bar}"`);
    whisperText = `psst, just for you ${tag}`;
    await o.fill('#compose', whisperText);
    await o.press('#compose', 'Enter');
    const mine = await waitMessage(o, whisperText);
    assert(mine.source === 'whisper' && mine.private, 'the sender\'s copy is not marked private');
    assert(mine.to && mine.to.includes(guest.name), `the sender's copy says "${mine.to}"`);
    const theirs = await waitMessage(guest.page, whisperText);
    assert(theirs.source === 'whisper' && theirs.private, 'the recipient\'s copy is not marked private');
    assert(/to you/.test(theirs.to), `the recipient's copy says "${theirs.to}"`);
    assert(theirs.id === mine.id, 'different ids for the same whisper');
    await shot(o, 'web-whisper.png');
    await shot(guest.page, 'web-whisper-received.png');
    // Escape goes back to writing to the room; a public post after the
    // whisper proves the third user has caught up past it.
    await o.focus('#compose');
    await o.keyboard.press('Escape');
    assert(await o.isHidden('#whisper-bar'), 'Escape did not cancel the whisper');
    const marker = `after the whisper ${tag}`;
    await post(o, marker);
    const m3 = await waitMessage(third.page, marker);
    assert(m3.source === 'manual', 'the marker is not a public message');
    assert(await findMessage(third.page, whisperText) === null, 'the third user sees the whisper');
    const ids3 = await pageIds(third.page);
    assert(!ids3.includes(mine.id), 'the third user has the whisper\'s id');
  }, ['a room address with a pin asks for it']);

  await test('owner kicks a user; the kicked page says so and offers to rejoin', async () => {
    const o = owner.page;
    const kick = `#online-list .person[data-user-id="${third.id}"] .kick-btn`;
    await o.waitForSelector(kick, { timeout: 5000 });
    assert(!(await guest.page.isVisible('.kick-btn')), 'a guest sees kick buttons');
    await shot(o, 'web-owner-kick.png');
    await o.click(kick);
    const t = third.page;
    await t.waitForFunction(() => {
      const b = document.querySelector('#error-banner');
      return b && !b.hidden && b.dataset.code === 'KICKED';
    }, null, { timeout: STEP_MS });
    const text = await t.textContent('#error-banner');
    assert(/removed/i.test(text), `kicked banner says "${text}"`);
    assert((await t.textContent('#reconnect-btn')).trim() === 'Rejoin', 'no Rejoin button');
    await o.waitForSelector(`#online-list .person[data-user-id="${third.id}"]`, { state: 'detached', timeout: STEP_MS });
    // No automatic reconnect after a kick.
    await t.waitForTimeout(3000);
    const st = await t.$eval('#status', (s) => s.dataset.state);
    assert(st === 'ended', `the kicked page's status is "${st}"`);
    await shot(t, 'web-kicked.png');
  }, ['whisper: only the sender and the recipient see it, marked private']);

  await test('the kicked user rejoins with the button', async () => {
    const t = third.page;
    await t.click('#reconnect-btn');
    await waitOnline(t, ROOM);
    await owner.page.waitForSelector(`#online-list .person[data-user-id="${third.id}"]`, { timeout: STEP_MS });
  }, ['owner kicks a user; the kicked page says so and offers to rejoin']);

  await test('owner announces; members see a banner line', async () => {
    const o = owner.page;
    await o.click('#announce-btn');
    await o.waitForSelector('#announce-dialog[open]', { timeout: 5000 });
    const text = `The club meets at 8 ${tag}`;
    assert(await o.isHidden('[data-testid="announce-global"]') === !ADMIN_KEY,
      'the "to every room" choice does not follow the admin key');
    await o.fill('[data-testid="announce-text"]', text);
    await o.click('[data-testid="announce-submit"]');
    await o.waitForSelector('#announce-dialog', { state: 'hidden', timeout: STEP_MS });
    for (const page of [o, guest.page, third.page]) {
      const m = await waitMessage(page, text);
      assert(m.source === 'announcement' && m.scope === 'room', `not an announcement line: ${JSON.stringify(m)}`);
    }
    await shot(guest.page, 'web-announcement.png');
  }, ['create a room with a secret and a pin']);

  await test('search finds a posted word', async () => {
    const word = `zebrafinch${tag}`;
    await post(owner.page, `look: a ${word} in the garden`);
    const p = guest.page;
    await p.click('#search-toggle');
    await p.waitForSelector('#search-panel:not([hidden])', { timeout: 5000 });
    assert(await p.evaluate(() => document.activeElement.id === 'search-input'), 'the search box has no focus');
    // A message may sit in the write queue for a few milliseconds: search again until found.
    let found = 0;
    for (let i = 0; i < 10 && !found; i++) {
      await p.fill('#search-input', word.toUpperCase()); // case-insensitive
      await p.press('#search-input', 'Enter');
      await p.waitForFunction(() => !/Searching/.test(document.querySelector('#search-status').textContent),
        null, { timeout: STEP_MS });
      found = await p.$$eval('#search-results .msg', (ms) => ms.length);
      if (!found) await p.waitForTimeout(500);
    }
    assert(found === 1, `${found} results`);
    const marked = await p.textContent('#search-results .msg mark');
    assert(marked.toLowerCase() === word, `highlighted "${marked}"`);
    await shot(p, 'web-search.png');
    await p.keyboard.press('Escape');
    await p.waitForSelector('#search-panel', { state: 'hidden', timeout: 5000 });
  }, ['joining with the right pin']);

  await test('reconnect after the session drops: reconnecting shown, then no missing and no duplicate ids', async () => {
    const p = guest.page;
    // The session's address, from the answer to the offer.
    let location = null;
    const rtcRequests = [];
    p.on('response', (r) => {
      if (r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/rtc' && r.status() === 201) {
        location = r.headers().location;
      }
    });
    p.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/rtc') rtcRequests.push(r);
    });
    // Reconnect once so this page's session address is known.
    await p.reload({ waitUntil: 'load', timeout: STEP_MS });
    await waitOnline(p, ROOM);
    assert(location, 'no Location for the session');
    await p.waitForSelector('#messages .msg[data-id]', { timeout: STEP_MS }); // the history is in
    const before = await pageIds(p);
    const lastBefore = before.reduce((a, b) => (idGt(b, a) ? b : a), '0');

    // Hold the first reconnect attempt back so the gap is certain.
    const isOffer = (url) => url.pathname === '/api/rtc';
    await p.route(isOffer, (route) => route.abort('connectionrefused'));
    const del = await p.request.fetch(new URL(location, BASE).href, { method: 'DELETE' });
    assert(del.status() === 204, `DELETE ${location}: ${del.status()}`);
    await p.waitForFunction(() => /Reconnecting… \(attempt 2, next in \d+ s\)/.test(
      document.querySelector('#conn-banner').textContent), null, { timeout: STEP_MS });
    assert((await p.$eval('#status', (s) => s.dataset.state)) === 'offline', 'status not offline while reconnecting');
    // A message while it is away (auto posts come too, every 0-2 s).
    const away1 = `while you were away ${tag}`;
    await post(owner.page, away1);
    await shot(p, 'web-reconnecting.png');
    await p.unroute(isOffer);
    await p.waitForFunction(() => {
      const c = document.querySelector('#conn-banner');
      return !c.hidden && c.dataset.state === 'reconnected' && /Reconnected/.test(c.textContent) &&
        document.querySelector('#status').dataset.state === 'online';
    }, null, { timeout: 40000 });
    await shot(p, 'web-reconnected.png');
    const last = rtcRequests[rtcRequests.length - 1];
    const since = new URL(last.url()).searchParams.get('since');
    assert(since && !idGt(lastBefore, since), `since=${since}, last id seen ${lastBefore}`);
    assert(/^Bearer \S+/.test((await last.allHeaders()).authorization || ''), 'no bearer token on reconnect');
    assert((await p.$eval('#me-name', (n) => n.textContent.trim())) === guest.name, 'the user changed');

    // After a marker from the owner, the guest holds every id the owner has
    // after the guest's last one, and no id twice.
    const marker = `back again ${tag}`;
    const mk = await post(owner.page, marker);
    await waitMessage(p, marker);
    await waitMessage(p, away1);
    const ids = await pageIds(p);
    const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
    assert(dup.length === 0, `ids shown twice: ${dup.join(', ')}`);
    const ownerIds = await pageIds(owner.page);
    const missing = ownerIds.filter((id) => idGt(id, lastBefore) && !idGt(id, mk.id) && !ids.includes(id));
    assert(missing.length === 0, `missing after the reconnect: ${missing.join(', ')}`);
    const sorted = ids.slice().sort((a, b) => (idGt(a, b) ? 1 : idGt(b, a) ? -1 : 0));
    assert(sorted.join() === ids.join(), 'messages out of id order after the catch-up');
  }, ['joining with the right pin']);

  await test('keyboard: dialogs open from the keyboard, Escape closes them and focus returns', async () => {
    const p = owner.page;
    await p.focus('#new-room');
    await p.keyboard.press('Enter');
    await p.waitForSelector('#create-dialog[open]', { timeout: 5000 });
    const inside = await p.evaluate(() => document.querySelector('#create-dialog').contains(document.activeElement));
    assert(inside, 'focus is not inside the dialog');
    await p.keyboard.press('Escape');
    await p.waitForSelector('#create-dialog', { state: 'hidden', timeout: 5000 });
    assert(await p.evaluate(() => document.activeElement.id === 'new-room'), 'focus did not come back to the button');
    // Focus is visible on a keyboard-focused control.
    await p.keyboard.press('Tab');
    const outline = await p.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert(outline !== 'none', 'no visible focus outline');
    // Every visible button has a name a screen reader can say.
    const unnamed = await p.$$eval('button', (bs) => bs.filter((b) => b.offsetParent !== null &&
      !(b.getAttribute('aria-label') || b.textContent.trim())).map((b) => b.outerHTML.slice(0, 60)));
    assert(unnamed.length === 0, `buttons without a name: ${unnamed.join(' | ')}`);
  }, ['create a room with a secret and a pin']);

  await test('"I own this room": a wrong secret is refused, the right one turns the owner tools on', async () => {
    const p = third.page;
    assert(await p.isHidden('#announce-btn'), 'a member who is not the owner sees Announce');
    await p.click('#claim-owner');
    await p.waitForSelector('#owner-dialog[open]', { timeout: 5000 });
    await p.fill('[data-testid="owner-secret"]', 'not-the-secret');
    await p.click('[data-testid="owner-submit"]');
    await p.waitForSelector('#owner-error:not([hidden])', { timeout: STEP_MS });
    const err = await p.textContent('#owner-error');
    assert(/not right/.test(err), `wrong secret shown as "${err}"`);
    await p.fill('[data-testid="owner-secret"]', SECRET);
    await p.click('[data-testid="owner-submit"]');
    await p.waitForSelector('#owner-dialog', { state: 'hidden', timeout: STEP_MS });
    assert(await p.isVisible('#announce-btn'), 'no Announce after the right secret');
    await p.waitForSelector(`#online-list .person[data-user-id="${guest.id}"] .kick-btn`, { timeout: 5000 });
    // Forget it again: the tools go away.
    await p.click('#manage-btn');
    await p.click('[data-testid="owner-forget"]');
    await p.waitForSelector('#announce-btn', { state: 'hidden', timeout: 5000 });
    assert(!(await p.isVisible('.kick-btn')), 'kick buttons left after forgetting the secret');
  }, ['the kicked user rejoins with the button']);

  await test('phone: the room list is in the drawer', async () => {
    const phone = await newUser(ctxPhone, 'phone', [owner.id, guest.id, third.id]);
    const p = phone.page;
    assert(!(await p.isVisible('#room-list')), 'room list visible on a phone before opening the menu');
    await p.click('#menu-toggle');
    await p.waitForSelector(`#room-list .room[data-room="${ROOM}"]`, { state: 'visible', timeout: STEP_MS });
    await p.waitForTimeout(300); // the slide-in, for the screenshot
    await shot(p, 'web-phone.png');
    await p.click(`#room-list .room[data-room="${ROOM}"] .room-btn`);
    await p.waitForSelector('#pin-dialog[open]', { timeout: 5000 });
    const box = await p.$eval('#pin-dialog', (d) => d.getBoundingClientRect().toJSON());
    assert(box.x >= 0 && box.right <= 390, `the pin dialog does not fit the screen: ${JSON.stringify(box)}`);
    await shot(p, 'web-phone-pin.png');
    await p.keyboard.press('Escape');
    await p.waitForSelector('#pin-dialog', { state: 'hidden', timeout: 5000 });
    assert((await p.textContent('#room-name')) === '#lobby', 'cancelling the pin left the lobby');
    phonePage = p;
  }, ['create a room with a secret and a pin']);

  await test('an announcement to every room reaches the lobby too', async () => {
    if (!ADMIN_KEY) {
      console.log('  (no CHATD_ADMIN_KEY: only the room announcement was tested)');
      return;
    }
    const o = owner.page;
    await o.click('#announce-btn');
    await o.waitForSelector('#announce-dialog[open]', { timeout: 5000 });
    await o.check('[data-testid="announce-global"]');
    const text = `chatd restarts at 22:00 UTC ${tag}`;
    await o.fill('[data-testid="announce-text"]', text);
    await o.click('[data-testid="announce-submit"]');
    for (const page of [o, phonePage]) {
      const m = await waitMessage(page, text);
      assert(m.source === 'announcement' && m.scope === 'global', `not a global announcement: ${JSON.stringify(m)}`);
    }
    await shot(phonePage, 'web-announcement-global.png');
  }, ['phone: the room list is in the drawer', 'owner announces; members see a banner line']);

  await test('deleting the room sends its members to the lobby', async () => {
    const o = owner.page;
    await o.click('#manage-btn');
    await o.waitForSelector('#owner-dialog[open]', { timeout: 5000 });
    await o.click('#owner-delete');
    await o.click('#owner-delete'); // the second click confirms
    for (const page of [o, guest.page]) {
      await page.waitForFunction(() => {
        const b = document.querySelector('#error-banner');
        return b && !b.hidden && b.dataset.code === 'ROOM_CLOSED';
      }, null, { timeout: STEP_MS });
      await waitOnline(page, 'lobby');
    }
    await shot(guest.page, 'web-room-closed.png');
    await o.waitForSelector(`#room-list .room[data-room="${ROOM}"]`, { state: 'detached', timeout: 15000 });
  }, ['create a room with a secret and a pin']);

  await test('no page errors', async () => {
    assert(pageErrors.length === 0, pageErrors.join(' | '));
  });

  for (const c of [ctxOwner, ctxGuest, ctxThird, ctxPhone]) await c.close();
  exitCode = failed === 0 ? 0 : 1;
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${String((e && e.message) || e).split('\n')[0]}`);
} finally {
  await browser.close();
}

console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(exitCode);
