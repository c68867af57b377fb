// Interop: headless Chromium (its own RTCPeerConnection) <-> chatd (relay) <-> chat-client.
//
// Must run inside the private network namespace (headless Chromium gathers no
// candidate on loopback); tests/interop/run_chromium.sh does that:
//
//   tests/interop/run_chromium.sh
//
// Environment:
//   CHATD_BIN        chatd binary               (default build/chatd)
//   CHAT_CLIENT_BIN  chat-client binary         (default build/chat-client)
//   ICE_ADDRESS      address for ICE            (default $NETNS_ADDR or 10.77.0.1)
//   CHATD_LOG_LEVEL  chatd --log-level          (default debug)
//   TEST_LOG_DIR     logs                       (default build/test-logs)
//   ARTIFACTS_DIR    screenshots                (default build/artifacts)
//
// ice_tcp_with_udp_dropped starts a second chatd with --ice-tcp-port and
// drops UDP to and from its RTC port with nftables (nft; the namespace's
// rules only), so Chromium can reach it over ICE-TCP alone (skipped without
// nft).
//
// The page is served by chatd (GET /); the tests drive their own inline
// RTCPeerConnection through page.evaluate rather than the web client's UI.
// Each test prints "ok NAME", "FAIL NAME: reason" or "skip NAME: reason"; the
// last line is "N passed, N failed, N skipped"; exit status 1 on any failure.

import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../lib/chromium.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
process.chdir(ROOT);

const CHATD_BIN = process.env.CHATD_BIN || 'build/chatd';
const CHAT_CLIENT_BIN = process.env.CHAT_CLIENT_BIN || 'build/chat-client';
const ICE_ADDRESS = process.env.ICE_ADDRESS || process.env.NETNS_ADDR || '10.77.0.1';
const LOG_LEVEL = process.env.CHATD_LOG_LEVEL || 'debug';
const LOG_DIR = process.env.TEST_LOG_DIR || 'build/test-logs';
const ARTIFACTS_DIR = process.env.ARTIFACTS_DIR || 'build/artifacts';
const MAX_MESSAGE = 65536;

const NO_MDNS = '--disable-features=WebRtcHideLocalIpsWithMdns';

class TestFailure extends Error {}
class Skip extends Error {}
const check = (cond, reason) => { if (!cond) throw new TestFailure(reason); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new TestFailure(`${what}: timed out after ${ms / 1000}s`)), ms); }),
  ]);
}

// ---------------------------------------------------------------- line queue
class Lines {
  constructor() { this.items = []; this.waiters = []; this.ended = false; }
  push(x) { const w = this.waiters.shift(); if (w) w.resolve(x); else this.items.push(x); }
  end() { this.ended = true; for (const w of this.waiters.splice(0)) w.reject(new TestFailure('stream ended')); }
  next(ms, what) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.ended) return Promise.reject(new TestFailure(`${what}: stream ended`));
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) { this.waiters.splice(i, 1); reject(new TestFailure(`no ${what} within ${ms / 1000}s`)); }
      }, ms);
    });
  }
}

// ---------------------------------------------------------------- chatd
const chatd = { proc: null, url: null, exit: null, logPath: path.join(LOG_DIR, 'interop-chromium-chatd.log') };

async function startChatd() {
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const dataDir = chatd.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-interop-'));
  const log = fs.openSync(chatd.logPath, 'w');
  chatd.proc = spawn(CHATD_BIN, ['--mode', 'relay', '--listen', '127.0.0.1:0', '--ice-address', ICE_ADDRESS,
    '--data-dir', dataDir, '--log-level', LOG_LEVEL], { stdio: ['ignore', 'pipe', log] });
  chatd.proc.on('exit', (code, sig) => { chatd.exit = { code, sig }; });
  let out = '';
  chatd.url = await withTimeout(new Promise((resolve, reject) => {
    chatd.proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1].replace(/\/$/, ''));
    });
    chatd.proc.on('exit', (code) => reject(new Error(`chatd exited (${code}) before printing its URL: ${out}`)));
  }), 15000, 'chatd start');
}

// Another chatd (relay) with extra flags; returns { url, logPath, stop() }.
async function startExtraChatd(label, args) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-interop-'));
  const logPath = path.join(LOG_DIR, `interop-chromium-chatd-${label}.log`);
  const proc = spawn(CHATD_BIN, ['--mode', 'relay', '--listen', '127.0.0.1:0', '--ice-address', ICE_ADDRESS,
    '--data-dir', dataDir, '--log-level', LOG_LEVEL, ...args], { stdio: ['ignore', 'pipe', fs.openSync(logPath, 'w')] });
  let exit = null;
  proc.on('exit', (code, sig) => { exit = { code, sig }; });
  let out = '';
  const url = await withTimeout(new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1].replace(/\/$/, ''));
    });
    proc.on('exit', (code) => reject(new TestFailure(`chatd ${label} exited (${code}): ${out}; see ${logPath}`)));
  }), 15000, `chatd ${label} start`);
  return {
    url, logPath,
    async stop() {
      if (!exit) {
        const done = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([done, sleep(10000)]);
        if (!exit) { proc.kill('SIGKILL'); await done; }
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
      return exit;
    },
  };
}

function hasNft() {
  return spawnSync('nft', ['--version'], { encoding: 'utf8' }).status === 0;
}

function nft(args) {
  const r = spawnSync('nft', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new TestFailure(`nft ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}

// Packets the chatd_icetcp table's counters dropped.
function nftDropped() {
  const text = nft(['list', 'table', 'inet', 'chatd_icetcp']);
  return [...text.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

async function metricsOf(url) {
  const text = await (await fetch(url + '/metrics')).text();
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

async function stopChatd() {
  if (!chatd.proc) return null;
  if (!chatd.exit) {
    const done = new Promise((r) => chatd.proc.once('exit', r));
    chatd.proc.kill('SIGTERM');
    await Promise.race([done, sleep(10000)]);
    if (!chatd.exit) { chatd.proc.kill('SIGKILL'); await done; }
  }
  if (chatd.dataDir) fs.rmSync(chatd.dataDir, { recursive: true, force: true });
  return chatd.exit;
}

// ---------------------------------------------------------------- chat-client
class ChatClient {
  constructor(room) { this.room = room; this.lines = new Lines(); this.stderr = []; }
  async start(ms = 15000) {
    this.proc = spawn(CHAT_CLIENT_BIN, ['--raw', '--url', `${chatd.url}/?room=${this.room}`,
      '--ice-address', ICE_ADDRESS], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((r) => this.proc.on('exit', (code, sig) => r(code ?? sig)));
    createInterface({ input: this.proc.stdout, crlfDelay: Infinity })
      .on('line', (l) => this.lines.push(l)).on('close', () => this.lines.end());
    const connected = new Promise((resolve, reject) => {
      createInterface({ input: this.proc.stderr }).on('line', (l) => {
        this.stderr.push(l);
        if (l.includes('chat-client: connected')) resolve();
      }).on('close', () => reject(new TestFailure(`chat-client ended before connecting: ${this.stderr.join(' | ')}`)));
    });
    await withTimeout(connected, ms, `chat-client connect (${this.stderr.join(' | ')})`);
  }
  send(line) { this.proc.stdin.write(line + '\n'); }
  next(ms = 10000, what = 'line from chat-client') { return this.lines.next(ms, what); }
  async finish(ms = 10000) {
    if (!this.proc) return null;
    this.proc.stdin.end();
    const rc = await Promise.race([this.exited, sleep(ms).then(() => 'timeout')]);
    if (rc === 'timeout') { this.proc.kill('SIGKILL'); await this.exited; }
    return rc;
  }
}

// ---------------------------------------------------------------- browser side
// Installed into the page: a tiny harness around RTCPeerConnection.
function pageHarness() {
  const peers = {};
  const waitFor = (cond, ms, what) => new Promise((resolve, reject) => {
    const t0 = Date.now();
    (function poll() {
      if (cond()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`${what}: timed out after ${ms} ms`));
      setTimeout(poll, 20);
    })();
  });
  window.T = {
    // Create a peer, offer, POST the offer, apply the answer, wait for open.
    // mungeSetup: rewrite a=setup in the POSTed text only (Chromium's local
    // description keeps actpass; it takes its DTLS role from the answer).
    async connect(name, room, mungeSetup) {
      const pc = new RTCPeerConnection({ iceServers: [] });
      const ch = pc.createDataChannel('chat');
      const st = { pc, ch, msgs: [], errors: [], open: false, closed: false };
      peers[name] = st;
      ch.onopen = () => { st.open = true; };
      ch.onclose = () => { st.closed = true; };
      ch.onerror = (e) => { st.errors.push(String((e && e.error && e.error.message) || e)); };
      ch.onmessage = (e) => { st.msgs.push(e.data); };
      await pc.setLocalDescription(await pc.createOffer());
      await waitFor(() => pc.iceGatheringState === 'complete', 10000, 'ICE gathering');
      const offer = pc.localDescription.sdp;
      const sent = mungeSetup ? offer.replace(/^a=setup:\w+/gm, 'a=setup:' + mungeSetup) : offer;
      const r = await fetch('/api/rtc' + (room ? '?room=' + encodeURIComponent(room) : ''), {
        method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: sent });
      const answer = await r.text();
      const res = { status: r.status, location: r.headers.get('Location'), offer, sent, answer };
      if (r.status !== 201) return res;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      const tAnswer = performance.now();
      try {
        await waitFor(() => st.open, 15000, 'data channel open');
      } catch (e) {
        res.openError = `${e.message} (ice=${pc.iceConnectionState}, conn=${pc.connectionState}, ` +
          `channel=${ch.readyState})`;
      }
      res.open = st.open;
      res.openMs = Math.round(performance.now() - tAnswer);
      res.maxMessageSize = pc.sctp ? pc.sctp.maxMessageSize : null;
      res.dtlsState = pc.sctp && pc.sctp.transport ? pc.sctp.transport.state : null;
      try {
        const stats = await pc.getStats();
        let pairId = null;
        stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
        const pair = pairId && stats.get(pairId);
        if (pair) {
          const l = stats.get(pair.localCandidateId), rc = stats.get(pair.remoteCandidateId);
          res.pair = `${l.candidateType} ${l.address}:${l.port} -> ${rc.candidateType} ${rc.address}:${rc.port}`;
          res.pairProtocol = l.protocol;
        }
        stats.forEach((s) => { if (s.type === 'transport') res.dtlsRole = s.dtlsRole; });
      } catch (e) { res.statsError = String(e); }
      return res;
    },
    send(name, msg) {
      const st = peers[name];
      try { st.ch.send(msg); return { ok: true }; } catch (e) {
        return { ok: false, name: e.name, message: e.message };
      }
    },
    sendMany(name, msgs) { for (const m of msgs) peers[name].ch.send(m); return peers[name].ch.bufferedAmount; },
    state(name) {
      const st = peers[name];
      return { readyState: st.ch.readyState, errors: st.errors.slice(), pending: st.msgs.length,
        bufferedAmount: st.ch.bufferedAmount, conn: st.pc.connectionState };
    },
    async recv(name, ms) {
      const st = peers[name];
      await waitFor(() => st.msgs.length > 0, ms, 'message in the browser');
      return st.msgs.shift();
    },
    async drain(name, ms) { await new Promise((r) => setTimeout(r, ms)); return peers[name].msgs.splice(0); },
    close(name) { const st = peers[name]; if (st) { try { st.pc.close(); } catch (e) {} delete peers[name]; } },
  };
}

class Browser {
  constructor(label, extraArgs, url) {
    this.label = label; this.extraArgs = extraArgs; this.url = url; this.consoleLines = [];
  }
  async start() {
    this.browser = await launchChromium(this.extraArgs);
    this.page = await this.browser.newPage();
    this.page.on('console', (m) => this.consoleLines.push(`[${m.type()}] ${m.text()}`));
    this.page.on('pageerror', (e) => this.consoleLines.push(`[pageerror] ${e.message}`));
    const r = await this.page.goto((this.url || chatd.url) + '/');
    if (!r || r.status() !== 200) throw new Error(`GET / answered ${r && r.status()}`);
    await this.page.evaluate(`(${pageHarness.toString()})()`);
  }
  ev(fn, ...args) { return this.page.evaluate(fn, args); }
  async connect(name, room, munge) {
    return this.page.evaluate(([n, r, m]) => window.T.connect(n, r, m), [name, room, munge || null]);
  }
  send(name, msg) { return this.page.evaluate(([n, m]) => window.T.send(n, m), [name, msg]); }
  recv(name, ms = 10000) { return this.page.evaluate(([n, t]) => window.T.recv(n, t), [name, ms]); }
  state(name) { return this.page.evaluate((n) => window.T.state(n), name); }
  close(name) { return this.page.evaluate((n) => window.T.close(n), name); }
  async screenshot(file) {
    try {
      fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
      await this.page.screenshot({ path: path.join(ARTIFACTS_DIR, file) });
    } catch (e) { /* artifact only */ }
  }
  async stop() {
    if (this.browser) await this.browser.close().catch(() => {});
    fs.mkdirSync(LOG_DIR, { recursive: true });
    fs.writeFileSync(path.join(LOG_DIR, `interop-chromium-console-${this.label}.log`), this.consoleLines.join('\n') + '\n');
  }
}

// ---------------------------------------------------------------- helpers
const sdpLines = (sdp, re) => sdp.split(/\r?\n/).filter((l) => re.test(l));
const candidates = (sdp) => sdpLines(sdp, /^a=candidate:/);
let sdpLog = [];
function recordSdp(test, res) {
  sdpLog.push(`===== ${test}: offer as POSTed\n${res.sent}\n===== ${test}: answer (HTTP ${res.status})\n${res.answer}\n` +
    `===== ${test}: result ${JSON.stringify({ open: res.open, openError: res.openError, pair: res.pair,
      dtlsRole: res.dtlsRole, maxMessageSize: res.maxMessageSize, location: res.location })}\n`);
}

async function connectOk(b, name, room, test, munge) {
  const res = await b.connect(name, room, munge);
  recordSdp(test, res);
  check(res.status === 201, `POST /api/rtc answered ${res.status}: ${res.answer.slice(0, 300)}`);
  check(res.location && res.location.startsWith('/api/rtc/'), `Location ${res.location}`);
  check(res.open, `data channel did not open: ${res.openError}`);
  return res;
}

async function withClient(room, fn) {
  const c = new ChatClient(room);
  try {
    await c.start();
    await fn(c);
  } finally {
    const rc = await c.finish();
    c.rc = rc;
  }
  check(c.rc === 0, `chat-client exit status ${c.rc} after end of input (want 0): ${c.stderr.slice(-3).join(' | ')}`);
}

async function relayBothWays(b, name, c, tag) {
  const m1 = `hello from chromium (${tag})`;
  const s = await b.send(name, m1);
  check(s.ok, `send threw ${s.name}: ${s.message}`);
  const got = await c.next(10000, 'relayed browser message');
  check(got === m1, `chat-client printed ${JSON.stringify(got)}, want ${JSON.stringify(m1)}`);
  const m2 = `hello from chat-client (${tag})`;
  c.send(m2);
  const got2 = await b.recv(name, 10000);
  check(got2 === m2, `browser received ${JSON.stringify(got2)}, want ${JSON.stringify(m2)}`);
}

// ---------------------------------------------------------------- tests
let B;          // browser with its real host candidate (mDNS hiding off)
let main;       // result of the main connection
const notes = [];

const tests = [
  ['offer_modern_dialect_and_answer_matches', 30000, async () => {
    main = await connectOk(B, 'main', 'interop_chromium', 'main');
    const { offer, answer } = main;
    check(/^m=application \d+ UDP\/DTLS\/SCTP webrtc-datachannel\r?$/m.test(offer),
      `Chromium's offer is not the modern dialect: ${sdpLines(offer, /^m=/).join(' ')}`);
    check(/^a=sctp-port:5000\r?$/m.test(offer), 'Chromium offered no a=sctp-port:5000');
    const m = /^m=application (\d+) (\S+) (\S+)\r?$/m.exec(answer);
    check(m, `answer has no m=application line:\n${answer}`);
    check(m[2] === 'UDP/DTLS/SCTP' && m[3] === 'webrtc-datachannel',
      `answer m-line "${m[0].trim()}", want UDP/DTLS/SCTP webrtc-datachannel`);
    check(/^a=sctp-port:5000\r?$/m.test(answer), 'answer lacks a=sctp-port:5000');
    check(!/^a=sctpmap:/m.test(answer), 'answer mixes dialects: modern m-line with a=sctpmap');
    const mm = /^a=max-message-size:(\d+)/m.exec(answer);
    check(mm && Number(mm[1]) === MAX_MESSAGE, `answer a=max-message-size ${mm && mm[1]}, want ${MAX_MESSAGE}`);
    const setup = /^a=setup:(\w+)/m.exec(answer);
    check(setup && ['active', 'passive'].includes(setup[1]), `answer a=setup ${setup && setup[1]}`);
    const mid = /^a=mid:(\S+)/m.exec(offer)[1];
    check(new RegExp(`^a=mid:${mid}\\r?$`, 'm').test(answer), `answer does not echo a=mid:${mid}`);
    check(new RegExp(`^a=group:BUNDLE ${mid}\\r?$`, 'm').test(answer), `answer lacks a=group:BUNDLE ${mid}`);
    notes.push(`host-candidate browser: offer candidates ${JSON.stringify(candidates(offer))}; ` +
      `answer a=setup:${setup[1]}, browser dtlsRole ${main.dtlsRole}; pair ${main.pair}; ` +
      `pc.sctp.maxMessageSize ${main.maxMessageSize}; open ${main.openMs} ms after the answer`);
  }],
  ['channel_opens', 5000, async () => {
    check(main && main.open, 'main connection did not open');
    const st = await B.state('main');
    check(st.readyState === 'open', `readyState ${st.readyState}`);
    check(main.maxMessageSize === MAX_MESSAGE,
      `Chromium's pc.sctp.maxMessageSize is ${main.maxMessageSize}, want ${MAX_MESSAGE} (from the answer)`);
  }],
  ['relay_browser_and_chat_client', 40000, async () => {
    await withClient('interop_chromium', async (c) => {
      await relayBothWays(B, 'main', c, 'main');
    });
  }],
  ['hundred_messages_in_order', 60000, async () => {
    await withClient('interop_chromium', async (c) => {
      const msgs = Array.from({ length: 100 }, (_, i) => `msg ${String(i).padStart(3, '0')} ` + 'z'.repeat((i * 37) % 500));
      await B.ev(([m]) => window.T.sendMany('main', m), msgs);
      for (let i = 0; i < msgs.length; i++) {
        const got = await c.next(20000, `message ${i} of 100`);
        check(got === msgs[i], `message ${i}: got ${JSON.stringify(got.slice(0, 20))}, want ${JSON.stringify(msgs[i].slice(0, 20))}`);
      }
    });
  }],
  ['exactly_64KiB_relayed', 40000, async () => {
    await withClient('interop_chromium', async (c) => {
      const big = 'B'.repeat(MAX_MESSAGE);
      const s = await B.send('main', big);
      check(s.ok, `Chromium refused a ${MAX_MESSAGE}-byte message: ${s.name}: ${s.message}`);
      const got = await c.next(15000, '65536-byte message');
      check(got === big, `chat-client printed ${got.length} bytes, want ${MAX_MESSAGE} B's`);
    });
  }],
  ['over_64KiB_refused', 40000, async () => {
    await withClient('interop_chromium', async (c) => {
      const s = await B.send('main', 'x'.repeat(70000));
      let what;
      if (!s.ok) {
        what = `Chromium refused to send 70000 bytes itself: ${s.name}: ${s.message}`;
      } else {
        // Chromium sent it anyway: then chatd must drop it and answer TOO_LARGE.
        const reply = await B.recv('main', 10000);
        let j = null;
        try { j = JSON.parse(reply); } catch (e) { /* checked below */ }
        check(j && j.type === 'error' && j.code === 'TOO_LARGE', `browser received ${reply.slice(0, 120)}, want TOO_LARGE`);
        what = 'Chromium sent 70000 bytes; chatd answered TOO_LARGE';
      }
      notes.push(`over 64 KiB: ${what}`);
      const st = await B.state('main');
      check(st.readyState === 'open', `channel ${st.readyState} after the oversized send (errors ${st.errors})`);
      await relayBothWays(B, 'main', c, 'after oversized');
    });
  }],
  ['dtls_role_browser_client', 40000, async () => {
    // Offer text says a=setup:active, so chatd must answer passive and be the
    // DTLS server; Chromium follows the answer and becomes the DTLS client.
    const res = await connectOk(B, 'active', 'interop_chromium_role', 'role-active', 'active');
    const setup = /^a=setup:(\w+)/m.exec(res.answer);
    check(setup && setup[1] === 'passive', `offer a=setup:active answered a=setup:${setup && setup[1]}, want passive`);
    check(!res.dtlsRole || res.dtlsRole === 'client', `Chromium dtlsRole ${res.dtlsRole}, want client`);
    notes.push(`browser DTLS client (chatd server): channel open ${res.openMs} ms after the answer`);
    await withClient('interop_chromium_role', (c) => relayBothWays(B, 'active', c, 'browser DTLS client'));
    await B.close('active');
  }],
  ['dtls_role_browser_server', 40000, async () => {
    const res = await connectOk(B, 'passive', 'interop_chromium_role2', 'role-passive', 'passive');
    const setup = /^a=setup:(\w+)/m.exec(res.answer);
    check(setup && setup[1] === 'active', `offer a=setup:passive answered a=setup:${setup && setup[1]}, want active`);
    check(!res.dtlsRole || res.dtlsRole === 'server', `Chromium dtlsRole ${res.dtlsRole}, want server`);
    notes.push(`browser DTLS server (chatd client): channel open ${res.openMs} ms after the answer`);
    await withClient('interop_chromium_role2', (c) => relayBothWays(B, 'passive', c, 'browser DTLS server'));
    await B.close('passive');
  }],
  ['delete_session', 20000, async () => {
    const res = await connectOk(B, 'del', 'interop_chromium_del', 'delete');
    const r = await B.ev(async ([loc]) => { const x = await fetch(loc, { method: 'DELETE' }); return x.status; }, res.location);
    check(r === 204, `DELETE ${res.location} answered ${r}, want 204`);
    const t0 = Date.now();
    let st;
    while (Date.now() - t0 < 10000) {
      st = await B.state('del');
      if (st.readyState === 'closed') break;
      await sleep(100);
    }
    check(st.readyState === 'closed', `browser channel still ${st.readyState} 10s after DELETE`);
    await B.close('del');
  }],
  ['mdns_only_candidates', 60000, async () => {
    // Chromium's default: host addresses hidden behind random .local names,
    // which chatd cannot resolve; ICE must work through peer-reflexive candidates.
    const M = new Browser('mdns', []);
    try {
      await M.start();
      const res = await M.connect('m', 'interop_chromium_mdns');
      recordSdp('mdns', res);
      const cands = candidates(res.offer);
      notes.push(`default (mDNS) browser: offer candidates ${JSON.stringify(cands)}; pair ${res.pair}`);
      check(res.status === 201, `POST /api/rtc answered ${res.status}: ${res.answer.slice(0, 300)}`);
      check(res.open, `data channel did not open with mDNS candidates: ${res.openError}`);
      if (!cands.some((c) => /\.local /.test(c))) notes.push('note: this Chromium offered no .local candidate');
      await withClient('interop_chromium_mdns', (c) => relayBothWays(M, 'm', c, 'mdns'));
      await M.screenshot('interop-chromium-mdns.png');
    } finally {
      await M.stop();
    }
  }],
  ['ice_tcp_with_udp_dropped', 90000, async () => {
    // A second chatd with --ice-tcp-port; nftables drops every UDP packet
    // to or from its RTC port in this namespace, so only its passive TCP
    // candidates can work. Two Chromium peers connect to it and a message
    // goes each way; the selected pair must be TCP, the drop counter must
    // have counted Chromium's UDP checks, and chatd must have read no UDP.
    if (!hasNft()) throw new Skip('nft not installed');
    const rtcPort = 41234, tcpPort = 41235;
    const tcp = await startExtraChatd('icetcp', ['--rtc-port', String(rtcPort), '--ice-tcp-port', String(tcpPort)]);
    const T2 = new Browser('icetcp', [NO_MDNS], tcp.url);
    try {
      nft(['add', 'table', 'inet', 'chatd_icetcp']);
      nft(['add', 'chain', 'inet', 'chatd_icetcp', 'out', '{ type filter hook output priority 0 ; }']);
      nft(['add', 'rule', 'inet', 'chatd_icetcp', 'out', 'udp', 'dport', String(rtcPort), 'counter', 'drop']);
      nft(['add', 'rule', 'inet', 'chatd_icetcp', 'out', 'udp', 'sport', String(rtcPort), 'counter', 'drop']);
      await T2.start();
      const x = await T2.connect('x', 'interop_icetcp');
      recordSdp('icetcp-x', x);
      check(x.status === 201, `POST /api/rtc answered ${x.status}: ${x.answer.slice(0, 300)}`);
      check(/ tcp \d+ \S+ \d+ typ host tcptype passive/.test(x.answer), `no passive TCP candidate in the answer:\n${x.answer}`);
      check(x.open, `data channel did not open over ICE-TCP: ${x.openError}`);
      const y = await T2.connect('y', 'interop_icetcp');
      recordSdp('icetcp-y', y);
      check(y.open, `second data channel did not open over ICE-TCP: ${y.openError}`);
      check(x.pairProtocol === 'tcp' && y.pairProtocol === 'tcp',
        `selected candidate pairs are ${x.pairProtocol} (${x.pair}) and ${y.pairProtocol} (${y.pair}), want tcp`);
      for (const [from, to] of [['x', 'y'], ['y', 'x']]) {
        const msg = `over ICE-TCP from ${from}`;
        const s = await T2.send(from, msg);
        check(s.ok, `send threw ${s.name}: ${s.message}`);
        const got = await T2.recv(to, 10000);
        check(got === msg, `${to} received ${JSON.stringify(got)}, want ${JSON.stringify(msg)}`);
      }
      const dropped = nftDropped();
      check(dropped > 0, 'nftables dropped no UDP packet: Chromium never tried UDP?');
      const m = await metricsOf(tcp.url);
      check(m['chatd_udp_datagrams_total{direction="in"}'] === 0,
        `chatd read ${m['chatd_udp_datagrams_total{direction="in"}']} UDP datagrams with UDP dropped`);
      check(m['chatd_tcp_frames_total{direction="in"}'] > 0 && m['chatd_tcp_connections{state="open"}'] >= 2,
        `chatd's TCP counters: frames in ${m['chatd_tcp_frames_total{direction="in"}']}, open ${m['chatd_tcp_connections{state="open"}']}`);
      notes.push(`ICE-TCP: pairs ${x.pair} / ${y.pair} (${x.pairProtocol}), open ${x.openMs} and ${y.openMs} ms after the answer; ` +
        `${dropped} UDP packets dropped by nftables; chatd TCP frames in/out ${m['chatd_tcp_frames_total{direction="in"}']}/` +
        `${m['chatd_tcp_frames_total{direction="out"}']}, handed to another loop ${m.chatd_tcp_handed_off_total}`);
      await T2.close('x');
      await T2.close('y');
      // Left: the page's own web client (it joins the lobby on load, over
      // TCP too): one connection per remaining session.
      const t0 = Date.now();
      let open = -1, peers = -1;
      while (Date.now() - t0 < 10000) {
        const mm = await metricsOf(tcp.url);
        open = mm['chatd_tcp_connections{state="open"}'];
        peers = mm.chatd_peers;
        if (open === peers && peers <= 1) break;
        await sleep(200);
      }
      check(open === peers && peers <= 1,
        `${open} TCP connections for ${peers} sessions 10 s after the test closed its two peers`);
    } finally {
      await T2.stop();
      try { nft(['delete', 'table', 'inet', 'chatd_icetcp']); } catch (e) { /* never made */ }
      const exit = await tcp.stop();
      check(exit && exit.code === 0, `ICE-TCP chatd exit ${JSON.stringify(exit)}, want 0; see ${tcp.logPath}`);
    }
  }],
  ['chatd_still_running', 5000, async () => {
    check(!chatd.exit, `chatd exited: ${JSON.stringify(chatd.exit)}; see ${chatd.logPath}`);
  }],
];

async function run() {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  const only = process.argv.slice(2);
  for (const bin of [CHATD_BIN, CHAT_CLIENT_BIN]) {
    try { fs.accessSync(bin, fs.constants.X_OK); } catch (e) {
      console.log(`FAIL setup: ${bin} is not executable (build with make)`);
      console.log('0 passed, 1 failed, 0 skipped');
      return 1;
    }
  }
  try {
    await startChatd();
    console.log(`# chatd at ${chatd.url} (ICE ${ICE_ADDRESS}), log ${chatd.logPath}`);
    B = new Browser('host', [NO_MDNS]);
    await B.start();
  } catch (e) {
    console.log(`FAIL setup: ${e.message}`);
    if (B) await B.stop();
    await stopChatd();
    console.log('0 passed, 1 failed, 0 skipped');
    return 1;
  }
  for (const [name, ms, fn] of tests) {
    if (only.length && !only.includes(name) && name !== 'offer_modern_dialect_and_answer_matches') continue;
    const t0 = Date.now();
    try {
      await withTimeout(fn(), ms, name);
      counts.passed++;
      console.log(`ok ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (e) {
      if (e instanceof Skip) { counts.skipped++; console.log(`skip ${name}: ${e.message}`); continue; }
      counts.failed++;
      console.log(`FAIL ${name}: ${e instanceof TestFailure ? e.message : (e.stack || e)}`);
    }
  }
  await B.screenshot('interop-chromium.png');
  await B.stop();
  const exit = await stopChatd();
  if (exit && exit.code === 0) { counts.passed++; console.log('ok chatd_exit_0_on_sigterm'); } else {
    counts.failed++;
    console.log(`FAIL chatd_exit_0_on_sigterm: ${JSON.stringify(exit)} (want code 0); see ${chatd.logPath}`);
  }
  fs.writeFileSync(path.join(LOG_DIR, 'interop-chromium-sdp.log'), sdpLog.join('\n'));
  for (const n of notes) console.log(`# ${n}`);
  console.log(`${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  return counts.failed ? 1 : 0;
}

run().then((rc) => process.exit(rc), async (e) => {
  console.log(`FAIL harness: ${e.stack || e}`);
  await stopChatd().catch(() => {});
  console.log('0 passed, 1 failed, 0 skipped');
  process.exit(1);
});
