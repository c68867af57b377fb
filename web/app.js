/*
 * chatd web client.
 *
 * Talks to chatd over one WebRTC data channel (label "chat", ordered,
 * reliable). Signalling is a single non-trickle HTTP exchange:
 *   POST /api/rtc[?room=NAME]  body: SDP offer   ->  201, body: SDP answer,
 *   Location: /api/rtc/ID (DELETEd when the page goes away).
 * The protocol over the channel is the one in SPEC.md / docs/PROTOCOL.md:
 * welcome, history, message, presence, error, pong from the server; post and
 * ping from us.
 *
 * Layout of this file: pure helpers (no DOM, no state) first, then small DOM
 * builders that turn one protocol object into one element, then the
 * connection state machine, then the UI wiring. Everything the server sends
 * is inserted with textContent, never as HTML.
 */
'use strict';

(function () {
  // ---------------------------------------------------------------- config
  var MAX_CHARS = 2000;            // SPEC: 1..2000 characters after trimming
  var PING_EVERY_MS = 20000;       // keep-alive / latency probe
  var SILENCE_LIMIT_MS = 65000;    // no byte from the server for this long: reconnect
  var GATHER_TIMEOUT_MS = 5000;    // non-trickle: wait this long at most for ICE gathering
  var OPEN_TIMEOUT_MS = 20000;     // answer applied but channel not open: retry
  var PENDING_TIMEOUT_MS = 15000;  // our post not echoed back: mark it
  var MAX_MESSAGES = 500;          // messages kept in the DOM
  var TOKEN_KEY = 'chatd.token';

  // ---------------------------------------------------------- pure helpers

  /* Number of characters (Unicode code points) in s. */
  function charCount(s) {
    var n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        var d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
      }
      n++;
    }
    return n;
  }

  /* What the composer would send: {ok, text, count, reason}. */
  function validatePost(raw) {
    var text = String(raw || '').trim();
    var count = charCount(text);
    if (count === 0) return { ok: false, text: text, count: 0, reason: 'empty' };
    if (count > MAX_CHARS) return { ok: false, text: text, count: count, reason: 'long' };
    return { ok: true, text: text, count: count, reason: '' };
  }

  /* Up to two initials from a display name: "Leanne Graham" -> "LG". */
  function initials(name) {
    var words = String(name || '').replace(/^(mrs?|ms|dr|miss)\.?\s+/i, '')
      .split(/\s+/).filter(function (w) { return /[\p{L}\p{N}]/u.test(w); });
    if (words.length === 0) return '?';
    var first = Array.from(words[0])[0] || '';
    var last = words.length > 1 ? (Array.from(words[words.length - 1])[0] || '') : '';
    return (first + last).toUpperCase();
  }

  /* A stable hue (0..359) for a user, so the same person keeps a colour. */
  function hueFor(key) {
    var s = String(key == null ? '' : key);
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return ((h >>> 0) * 137) % 360;
  }

  /* "10:04" for today, "24 Nov, 10:04" otherwise; '' for a bad timestamp. */
  function formatTime(ts, now) {
    var d = new Date(ts);
    if (isNaN(d.getTime())) return '';
    now = now || new Date();
    var hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return hm;
    var day = d.toLocaleDateString([], { day: 'numeric', month: 'short' });
    return day + ', ' + hm;
  }

  /* Order of two messages: by numeric database id when both have one. */
  function compareMessages(a, b) {
    var ia = /^\d+$/.test(String(a.id)) ? String(a.id) : null;
    var ib = /^\d+$/.test(String(b.id)) ? String(b.id) : null;
    if (ia !== null && ib !== null) {
      if (ia.length !== ib.length) return ia.length - ib.length;
      return ia < ib ? -1 : ia > ib ? 1 : 0;
    }
    var ta = String(a.ts || ''), tb = String(b.ts || '');
    return ta < tb ? -1 : ta > tb ? 1 : 0;
  }

  /* The JSON payload of a JWT, or null. Only read for `exp`; never trusted. */
  function jwtPayload(token) {
    try {
      var part = String(token).split('.')[1];
      var b64 = part.replace(/-/g, '+').replace(/_/g, '/');
      while (b64.length % 4) b64 += '=';
      var bin = atob(b64);
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      return null;
    }
  }

  /* Reconnect delay for the n-th consecutive failure: 0.5 s doubling to 30 s, +-20 %. */
  function backoffMs(attempt) {
    var base = Math.min(30000, 500 * Math.pow(2, Math.min(attempt, 10)));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  /* Parse an HTTP error answer into {code, message}. */
  function errorFromBody(status, text) {
    try {
      var j = JSON.parse(text);
      if (j && j.error && (j.error.code || j.error.message)) {
        return { code: String(j.error.code || 'HTTP_' + status), message: String(j.error.message || '') };
      }
    } catch (e) { /* not JSON */ }
    return { code: 'HTTP_' + status, message: text ? String(text).slice(0, 200) : 'The server answered ' + status + '.' };
  }

  var refSeq = 0;
  function newRef(prefix) {
    refSeq++;
    var rnd = Math.random().toString(36).slice(2, 8);
    return prefix + '-' + Date.now().toString(36) + '-' + refSeq + '-' + rnd;
  }

  function store(key, value) {
    try {
      if (value == null) localStorage.removeItem(key); else localStorage.setItem(key, value);
    } catch (e) { /* storage unavailable: identity lasts for this page only */ }
  }
  function load(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }

  // ---------------------------------------------------------- DOM builders

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text != null) e.textContent = String(text);
    return e;
  }

  function avatar(user, extraClass) {
    var a = el('span', 'avatar' + (extraClass ? ' ' + extraClass : ''), initials(user && user.name));
    a.style.setProperty('--hue', hueFor(user && (user.id != null ? user.id : user.name)));
    a.setAttribute('aria-hidden', 'true');
    return a;
  }

  /* One MESSAGE object -> one .msg element. selfId marks our own posts. */
  function renderMessage(m, selfId) {
    var user = m.user || {};
    var source = m.source === 'auto' ? 'auto' : 'manual';
    var li = el('article', 'msg msg-' + source);
    li.dataset.source = source;
    if (m.id != null) li.dataset.id = String(m.id);
    if (user.id != null) li.dataset.userId = String(user.id);
    if (selfId != null && user.id != null && String(user.id) === String(selfId)) li.classList.add('msg-own');

    li.appendChild(avatar(user));
    var body = el('div', 'msg-body');
    var head = el('header', 'msg-head');
    head.appendChild(el('span', 'msg-name', user.name || 'Unknown'));
    if (user.username) head.appendChild(el('span', 'msg-username', '@' + user.username));
    if (source === 'auto') {
      var badge = el('span', 'msg-badge', 'auto post');
      badge.title = m.post_id != null ? 'JSONPlaceholder post #' + m.post_id : 'Posted automatically';
      head.appendChild(badge);
    }
    var t = el('time', 'msg-time', formatTime(m.ts));
    if (m.ts) {
      t.dateTime = String(m.ts);
      var d = new Date(m.ts);
      if (!isNaN(d.getTime())) t.title = d.toLocaleString();
    }
    head.appendChild(t);
    body.appendChild(head);

    if (source === 'auto') {
      body.appendChild(el('h3', 'msg-title', m.title || ''));
    }
    body.appendChild(el('p', 'msg-text', m.text || ''));
    li.appendChild(body);
    return li;
  }

  /* Our own post while it travels: same look, marked pending. */
  function renderPending(text, ref, me) {
    var li = renderMessage({ source: 'manual', user: me, text: text, ts: new Date().toISOString() }, me && me.id);
    li.classList.add('pending');
    li.dataset.ref = ref;
    li.removeAttribute('data-id');
    var state = el('div', 'msg-state', 'Sending…');
    li.querySelector('.msg-body').appendChild(state);
    return li;
  }

  function renderOnlineItem(user, isSelf) {
    var li = el('li', 'person' + (isSelf ? ' person-self' : ''));
    li.dataset.userId = String(user.id);
    li.appendChild(avatar(user, 'avatar-sm'));
    var who = el('div', 'person-who');
    // The tag sits beside the name, not inside it, so a long name is
    // shortened with an ellipsis and the tag stays whole.
    var name = el('span', 'person-name');
    name.appendChild(el('span', 'person-name-text', user.name || 'Unknown'));
    if (isSelf) name.appendChild(el('span', 'you-tag', 'you'));
    who.appendChild(name);
    if (user.username) who.appendChild(el('span', 'person-username', '@' + user.username));
    li.appendChild(who);
    li.appendChild(el('span', 'presence-dot'));
    return li;
  }

  // --------------------------------------------------------------- elements

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    app: $('app'), sidebar: $('sidebar'), scrim: $('scrim'), menu: $('menu-toggle'),
    menuBadge: $('menu-badge'),
    room: $('room-name'), status: $('status'), statusText: $('status-text'),
    meAvatar: $('me-avatar'), meName: $('me-name'), meUsername: $('me-username'),
    meEmail: $('me-email'), meCompany: $('me-company'), meCity: $('me-city'),
    mePlaceholder: $('me-placeholder'),
    online: $('online-list'), onlineCount: $('online-count'),
    messages: $('messages'), empty: $('empty'), jump: $('jump'),
    banner: $('error-banner'), errCode: $('error-code'), errMessage: $('error-message'),
    errCountdown: $('error-countdown'), reconnect: $('reconnect-btn'), errClose: $('error-close'),
    form: $('composer'), compose: $('compose'), send: $('send'),
    hint: $('hint-text'), chars: $('char-count')
  };

  // ------------------------------------------------------------------ state

  var params = new URLSearchParams(location.search);
  var state = {
    room: params.get('room') || '',
    token: load(TOKEN_KEY),
    me: null,            // the user object from welcome
    session: null,
    pc: null, dc: null, location: null,
    gen: 0,              // bumps on every connect; stale callbacks compare it
    attempt: 0,          // consecutive failures, for the backoff
    online: new Map(),   // user id -> {user, n}
    msgs: new Map(),     // message id -> element
    pending: new Map(),  // ref -> {el, text, timer}
    pings: new Map(),    // ref -> sent at
    lastHeard: 0,
    timers: { reconnect: 0, reconnectTick: 0, ping: 0, open: 0, refresh: 0, countdown: 0, bannerHide: 0 },
    ended: false,        // fatal error: no automatic reconnect
    unread: 0
  };

  function clearTimer(name) {
    if (state.timers[name]) {
      clearTimeout(state.timers[name]);
      clearInterval(state.timers[name]);
      state.timers[name] = 0;
    }
  }

  // ------------------------------------------------------------- status/ui

  function setStatus(kind, text, title) {
    ui.status.dataset.state = kind;
    ui.statusText.textContent = text;
    ui.status.title = title || text;
    var online = kind === 'online';
    ui.app.classList.toggle('is-online', online);
    updateComposer();
  }

  function showRoom(room) {
    var name = room || state.room || 'lobby';
    ui.room.textContent = '#' + name;
    document.title = (state.unread ? '(' + state.unread + ') ' : '') + '#' + name + ' · chatd';
  }

  /*
   * The error banner. opts: {retryInMs, fatal, sticky}. A countdown runs
   * while retryInMs is in the future; fatal adds the reconnect button.
   */
  function showError(code, message, opts) {
    opts = opts || {};
    clearTimer('countdown');
    clearTimer('bannerHide');
    ui.banner.hidden = false;
    ui.banner.dataset.code = code || '';
    ui.banner.classList.toggle('fatal', !!opts.fatal);
    ui.banner.classList.toggle('info', !!opts.info);
    ui.errCode.textContent = opts.title || code || 'Error';
    ui.errMessage.textContent = message || '';
    ui.errCountdown.textContent = '';
    ui.reconnect.hidden = !opts.fatal;
    if (opts.fatal) {
      ui.errCountdown.textContent = 'Your session has ended.';
      return;
    }
    if (opts.retryInMs > 0) {
      var until = Date.now() + opts.retryInMs;
      var tick = function () {
        var left = until - Date.now();
        if (left <= 0) {
          ui.errCountdown.textContent = 'Retrying now…';
          clearTimer('countdown');
          return;
        }
        ui.errCountdown.textContent = 'Retrying in ' + (left / 1000).toFixed(1) + ' s';
      };
      tick();
      state.timers.countdown = setInterval(tick, 100);
    } else if (!opts.sticky) {
      state.timers.bannerHide = setTimeout(hideError, 8000);
    }
  }

  function hideError() {
    clearTimer('countdown');
    clearTimer('bannerHide');
    ui.banner.hidden = true;
    ui.banner.classList.remove('fatal', 'info');
  }

  function showMe(user) {
    ui.meName.textContent = user.name || '';
    ui.meUsername.textContent = user.username ? '@' + user.username : '';
    ui.meEmail.textContent = user.email || '';
    ui.meCompany.textContent = (user.company && user.company.name) || '';
    ui.meCity.textContent = (user.address && user.address.city) || '';
    ui.meAvatar.textContent = initials(user.name);
    ui.meAvatar.style.setProperty('--hue', hueFor(user.id));
    ui.meAvatar.classList.add('ready');
    ui.mePlaceholder.hidden = true;
    ui.sidebar.classList.add('has-me');
    ['meEmail', 'meCompany', 'meCity'].forEach(function (k) {
      var dd = ui[k];
      var empty = !dd.textContent;
      dd.hidden = empty;
      dd.previousElementSibling.hidden = empty;
    });
  }

  // ---------------------------------------------------------------- online

  function resetOnline(users) {
    state.online.clear();
    (users || []).forEach(function (u) { presenceJoin(u, true); });
    if (state.me) presenceJoin(state.me, true, true);
    renderOnline();
  }

  /* Counted, so a user with two sessions stays listed until both leave. */
  function presenceJoin(u, quiet, selfOnly) {
    if (!u || u.id == null) return;
    var key = String(u.id);
    var cur = state.online.get(key);
    if (cur) {
      if (!selfOnly) cur.n++;
      cur.user = Object.assign({}, cur.user, u);
    } else {
      state.online.set(key, { user: u, n: 1 });
    }
    if (!quiet) renderOnline();
  }

  function presenceLeave(u) {
    if (!u || u.id == null) return;
    var key = String(u.id);
    var cur = state.online.get(key);
    if (!cur) return;
    cur.n--;
    var isSelf = state.me && String(state.me.id) === key;
    if (cur.n <= 0 && !isSelf) state.online.delete(key);
    if (cur.n <= 0 && isSelf) cur.n = 1; // we are online while this page is
    renderOnline();
  }

  function renderOnline() {
    var selfId = state.me && state.me.id != null ? String(state.me.id) : null;
    var entries = Array.from(state.online.values()).map(function (e) { return e.user; });
    entries.sort(function (a, b) {
      if (String(a.id) === selfId) return -1;
      if (String(b.id) === selfId) return 1;
      return String(a.name || '').localeCompare(String(b.name || ''));
    });
    var frag = document.createDocumentFragment();
    entries.forEach(function (u) { frag.appendChild(renderOnlineItem(u, String(u.id) === selfId)); });
    ui.online.replaceChildren(frag);
    ui.onlineCount.textContent = String(entries.length);
    ui.menuBadge.textContent = String(entries.length);
    ui.menuBadge.dataset.count = String(entries.length);
  }

  // -------------------------------------------------------------- messages

  function nearBottom() {
    var m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    ui.jump.hidden = true;
  }

  function firstPending() {
    return ui.messages.querySelector('.msg.pending');
  }

  function trimMessages() {
    var all = ui.messages.querySelectorAll('.msg[data-id]');
    for (var i = 0; i < all.length - MAX_MESSAGES; i++) {
      state.msgs.delete(all[i].dataset.id);
      all[i].remove();
    }
  }

  var anonSeq = 0;
  function msgKey(m) {
    return m.id != null ? String(m.id) : 'anon-' + (++anonSeq); // no id: cannot dedupe
  }

  function addMessage(m) {
    if (!m || typeof m !== 'object') return;
    var id = msgKey(m);
    if (state.msgs.has(id)) return;
    var stick = nearBottom();
    var ownEcho = m.ref && state.pending.has(m.ref);
    if (ownEcho) dropPending(m.ref);
    var node = renderMessage(m, state.me && state.me.id);
    node._msg = m;
    state.msgs.set(id, node);
    ui.messages.insertBefore(node, firstPending());
    ui.empty.hidden = true;
    trimMessages();
    if (stick || ownEcho) scrollToBottom();
    else ui.jump.hidden = false;
    if (document.hidden) {
      state.unread++;
      showRoom(state.roomName);
    }
  }

  /* history: merge with what we already show, keep id order. */
  function addHistory(list) {
    var stick = nearBottom() || state.msgs.size === 0;
    var all = [];
    state.msgs.forEach(function (node) { all.push(node._msg); });
    (Array.isArray(list) ? list : []).forEach(function (m) {
      if (m && typeof m === 'object' && !(m.id != null && state.msgs.has(String(m.id)))) all.push(m);
    });
    all.sort(compareMessages);
    state.msgs.forEach(function (node) { node.remove(); });
    state.msgs.clear();
    var frag = document.createDocumentFragment();
    all.forEach(function (m) {
      var node = renderMessage(m, state.me && state.me.id);
      node._msg = m;
      state.msgs.set(msgKey(m), node);
      frag.appendChild(node);
    });
    ui.messages.insertBefore(frag, firstPending());
    ui.empty.hidden = state.msgs.size > 0 || state.pending.size > 0;
    trimMessages();
    if (stick) scrollToBottom();
  }

  function dropPending(ref) {
    var p = state.pending.get(ref);
    if (!p) return;
    clearTimeout(p.timer);
    p.el.remove();
    state.pending.delete(ref);
  }

  function failPending(ref, why) {
    var p = state.pending.get(ref);
    if (!p) return;
    clearTimeout(p.timer);
    p.el.classList.add('failed');
    var st = p.el.querySelector('.msg-state');
    st.replaceChildren(el('span', 'msg-state-text', why));
    var retry = el('button', 'link-btn', 'Retry');
    retry.type = 'button';
    retry.addEventListener('click', function () {
      dropPending(ref);
      sendPost(p.text);
    });
    var discard = el('button', 'link-btn', 'Discard');
    discard.type = 'button';
    discard.addEventListener('click', function () { dropPending(ref); });
    st.appendChild(retry);
    st.appendChild(discard);
  }

  // ------------------------------------------------------------ connection

  function rtcUrl() {
    return '/api/rtc' + (state.room ? '?room=' + encodeURIComponent(state.room) : '');
  }

  function waitForGathering(pc) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === 'complete') return resolve();
      var done = function () {
        if (pc.iceGatheringState === 'complete') finish();
      };
      var timer = setTimeout(finish, GATHER_TIMEOUT_MS);
      function finish() {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      }
      pc.addEventListener('icegatheringstatechange', done);
    });
  }

  /* Close the current peer (if any). Says goodbye to the server with DELETE. */
  function teardown(keepalive) {
    ['ping', 'open', 'refresh'].forEach(clearTimer);
    state.pings.clear();
    var pc = state.pc, dc = state.dc, loc = state.location;
    state.pc = state.dc = state.location = null;
    state.session = null;
    if (dc) {
      dc.onopen = dc.onclose = dc.onmessage = dc.onerror = null;
      try { dc.close(); } catch (e) { /* already closed */ }
    }
    if (pc) {
      pc.onconnectionstatechange = null;
      try { pc.close(); } catch (e) { /* already closed */ }
    }
    if (loc) {
      try {
        fetch(loc, { method: 'DELETE', keepalive: !!keepalive }).catch(function () {});
      } catch (e) { /* page going away */ }
    }
    state.pending.forEach(function (p, ref) { failPending(ref, 'Not confirmed — connection lost'); });
  }

  function scheduleReconnect(why) {
    if (state.ended) return;
    clearTimer('reconnect');
    clearTimer('reconnectTick');
    var delay = backoffMs(state.attempt);
    state.attempt++;
    var until = Date.now() + delay;
    var tick = function () {
      var left = Math.max(0, until - Date.now());
      setStatus('offline', 'Reconnecting in ' + Math.ceil(left / 1000) + ' s', why);
    };
    tick();
    state.timers.reconnectTick = setInterval(tick, 250);
    state.timers.reconnect = setTimeout(function () {
      state.timers.reconnect = 0;
      connect();
    }, delay);
  }

  /* The peer or the channel is gone (gen identifies which attempt). */
  function lost(gen, why) {
    if (gen !== state.gen) return;
    state.gen++;            // every callback of the old peer is now stale
    teardown(false);
    ui.app.classList.remove('is-online');
    if (state.ended) {
      setStatus('ended', 'Session ended', why);
      return;
    }
    scheduleReconnect(why);
  }

  async function connect() {
    clearTimer('reconnect');
    clearTimer('reconnectTick');
    state.gen++;
    var gen = state.gen;
    teardown(false);
    state.ended = false;
    setStatus('connecting', state.attempt > 0 ? 'Reconnecting…' : 'Connecting…');

    var pc, dc;
    try {
      pc = new RTCPeerConnection({ iceServers: [] });
      dc = pc.createDataChannel('chat', { ordered: true });
    } catch (e) {
      showError('NO_WEBRTC', 'This browser cannot open a WebRTC connection: ' + e.message, { sticky: true });
      setStatus('ended', 'Unsupported browser');
      return;
    }
    state.pc = pc;
    state.dc = dc;
    wireChannel(gen, pc, dc);

    var res, body;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForGathering(pc);
      if (gen !== state.gen) return;
      var headers = { 'Content-Type': 'application/sdp' };
      var sentToken = state.token;
      if (sentToken) headers.Authorization = 'Bearer ' + sentToken;
      res = await fetch(rtcUrl(), { method: 'POST', headers: headers, body: pc.localDescription.sdp });
      body = await res.text();
    } catch (e) {
      if (gen !== state.gen) return;
      return lost(gen, 'Cannot reach the server (' + (e && e.message || e) + ')');
    }
    if (gen !== state.gen) return;

    if (res.status === 201) {
      state.location = res.headers.get('Location');
      try {
        await pc.setRemoteDescription({ type: 'answer', sdp: body });
      } catch (e) {
        if (gen !== state.gen) return;
        showError('BAD_ANSWER', 'The server\'s answer could not be used: ' + e.message);
        return lost(gen, 'bad answer');
      }
      state.timers.open = setTimeout(function () {
        lost(gen, 'The data channel did not open in time');
      }, OPEN_TIMEOUT_MS);
      return;
    }

    var err = errorFromBody(res.status, body);
    if (res.status === 401 && sentToken) {
      // Our saved identity is no longer accepted: forget it and start fresh.
      state.token = null;
      store(TOKEN_KEY, null);
      showError(err.code, 'Your saved session is no longer valid, so you are joining as someone new.', { info: true, title: 'Signed out' });
      connect();
      return;
    }
    showError(err.code, err.message);
    lost(gen, err.code + ': ' + err.message);
  }

  function wireChannel(gen, pc, dc) {
    pc.onconnectionstatechange = function () {
      if (gen !== state.gen) return;
      var s = pc.connectionState;
      if (s === 'failed' || s === 'closed') lost(gen, 'Connection ' + s);
    };
    dc.onopen = function () {
      if (gen !== state.gen) return;
      clearTimer('open');
      state.lastHeard = Date.now();
      setStatus('connecting', state.me ? 'Joining…' : 'Finding you a user…');
      startPing(gen);
    };
    dc.onclose = function () { lost(gen, 'Channel closed'); };
    dc.onerror = function () { /* onclose follows */ };
    dc.onmessage = function (ev) {
      if (gen !== state.gen) return;
      state.lastHeard = Date.now();
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg && typeof msg === 'object') handle(msg, gen);
    };
  }

  function send(obj) {
    var dc = state.dc;
    if (!dc || dc.readyState !== 'open') return false;
    try { dc.send(JSON.stringify(obj)); return true; } catch (e) { return false; }
  }

  function startPing(gen) {
    clearTimer('ping');
    state.timers.ping = setInterval(function () {
      if (gen !== state.gen) return;
      if (Date.now() - state.lastHeard > SILENCE_LIMIT_MS) {
        lost(gen, 'The server stopped answering');
        return;
      }
      var ref = newRef('ping');
      state.pings.set(ref, performance.now());
      if (state.pings.size > 10) state.pings.delete(state.pings.keys().next().value);
      send({ type: 'ping', ref: ref });
    }, PING_EVERY_MS);
  }

  /* Re-join with the current token shortly before it expires, to get a fresh one. */
  function scheduleRefresh(token) {
    clearTimer('refresh');
    var p = jwtPayload(token);
    if (!p || typeof p.exp !== 'number') return;
    var lifetime = p.exp * 1000 - Date.now();
    if (lifetime < 4 * 60 * 1000) return; // too short to refresh safely; resume handles it
    var at = Math.min(lifetime - 2 * 60 * 1000, 0x7fffffff);
    var gen = state.gen;
    state.timers.refresh = setTimeout(function () {
      if (gen !== state.gen) return;
      state.attempt = 0;
      connect();
    }, at);
  }

  // ------------------------------------------------------ protocol handlers

  function handle(msg, gen) {
    switch (msg.type) {
      case 'welcome': return onWelcome(msg);
      case 'history': return addHistory(msg.messages);
      case 'message': return addMessage(msg);
      case 'presence':
        if (msg.event === 'join') presenceJoin(msg.user);
        else if (msg.event === 'leave') presenceLeave(msg.user);
        return;
      case 'error': return onError(msg, gen);
      case 'pong': return onPong(msg);
      default: return; // newer servers may add types; ignore them
    }
  }

  function onWelcome(msg) {
    state.attempt = 0;
    state.session = msg.session || null;
    if (msg.token) {
      state.token = msg.token;
      store(TOKEN_KEY, msg.token);
      scheduleRefresh(msg.token);
    }
    var prevId = state.me && state.me.id;
    state.me = msg.user || {};
    if (prevId != null && prevId !== state.me.id) {
      // A different identity: our old posts are not "ours" any more.
      ui.messages.querySelectorAll('.msg-own').forEach(function (n) { n.classList.remove('msg-own'); });
    }
    state.roomName = msg.room || state.room || 'lobby';
    showRoom(state.roomName);
    showMe(state.me);
    resetOnline(msg.online);
    if (ui.banner.dataset.code === 'USER_FETCH_FAILED' || ui.banner.dataset.code === 'UNAVAILABLE' ||
        ui.banner.dataset.code === 'AT_CAPACITY' || /^HTTP_/.test(ui.banner.dataset.code || '')) {
      hideError();
    }
    setStatus('online', 'Online', 'Connected as ' + (state.me.name || '?'));
  }

  function onError(msg, gen) {
    var code = String(msg.code || 'ERROR');
    var text = String(msg.message || '');
    var retry = Number(msg.retry_in_ms) || 0;
    if (msg.ref && state.pending.has(msg.ref)) {
      failPending(msg.ref, 'Not sent — ' + (text || code));
    }
    if (msg.fatal) {
      state.ended = true;
      showError(code, text, { fatal: true });
      setStatus('ended', 'Session ended', code + ': ' + text);
      return;
    }
    if (code === 'USER_FETCH_FAILED') {
      setStatus('connecting', 'Finding you a user…', text);
    }
    showError(code, text, { retryInMs: retry });
    if (code === 'INVALID_TOKEN' && msg.ref && gen === state.gen) {
      // The session's token stopped verifying (expired?): re-join to get a new one.
      state.attempt = 0;
      connect();
    }
  }

  function onPong(msg) {
    var sent = state.pings.get(msg.ref);
    if (sent == null) return;
    state.pings.delete(msg.ref);
    var rtt = Math.round(performance.now() - sent);
    if (ui.status.dataset.state === 'online') {
      ui.status.title = 'Online · round trip ' + rtt + ' ms';
      ui.status.dataset.rtt = String(rtt);
    }
  }

  // ---------------------------------------------------------------- posting

  function sendPost(text) {
    if (!state.token || !state.me) return false;
    var ref = newRef('post');
    if (!send({ type: 'post', token: state.token, text: text, ref: ref })) return false;
    var node = renderPending(text, ref, state.me);
    ui.messages.appendChild(node);
    ui.empty.hidden = true;
    var entry = { el: node, text: text, timer: 0 };
    entry.timer = setTimeout(function () {
      failPending(ref, 'No confirmation from the server');
    }, PENDING_TIMEOUT_MS);
    state.pending.set(ref, entry);
    scrollToBottom();
    return true;
  }

  function updateComposer() {
    var v = validatePost(ui.compose.value);
    var online = ui.status.dataset.state === 'online';
    ui.chars.textContent = v.count + ' / ' + MAX_CHARS;
    ui.chars.classList.toggle('over', v.reason === 'long');
    ui.chars.classList.toggle('near', v.count > MAX_CHARS * 0.9 && v.reason !== 'long');
    ui.form.classList.toggle('invalid', v.reason === 'long');
    if (v.reason === 'long') {
      ui.hint.textContent = 'Too long: ' + (v.count - MAX_CHARS) + ' characters over the 2000 limit';
    } else if (!online) {
      ui.hint.textContent = 'Not connected — your draft is kept';
    } else {
      ui.hint.textContent = 'Enter to send · Shift+Enter for a new line';
    }
    ui.compose.setAttribute('aria-invalid', v.reason === 'long' ? 'true' : 'false');
    ui.send.disabled = !(online && v.ok);
  }

  function autoGrow() {
    var stick = nearBottom();
    ui.compose.style.height = 'auto';
    ui.compose.style.height = Math.min(ui.compose.scrollHeight, 200) + 'px';
    if (stick) scrollToBottom(); // the list got shorter: keep the newest in view
  }

  ui.form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var v = validatePost(ui.compose.value);
    if (!v.ok) {
      if (v.reason === 'empty') ui.hint.textContent = 'Write something first (1–2000 characters)';
      ui.compose.focus();
      return;
    }
    if (sendPost(v.text)) {
      ui.compose.value = '';
      autoGrow();
      updateComposer();
    } else {
      ui.hint.textContent = 'Not connected — your draft is kept';
    }
    ui.compose.focus();
  });

  ui.compose.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      if (typeof ui.form.requestSubmit === 'function') ui.form.requestSubmit();
      else ui.form.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });
  ui.compose.addEventListener('input', function () { autoGrow(); updateComposer(); });

  // ------------------------------------------------------------- UI wiring

  function setDrawer(open) {
    ui.app.classList.toggle('drawer-open', open);
    ui.menu.setAttribute('aria-expanded', open ? 'true' : 'false');
    ui.menu.setAttribute('aria-label', open ? 'Hide people' : 'Show people');
    ui.scrim.hidden = !open;
  }
  ui.menu.addEventListener('click', function () {
    setDrawer(!ui.app.classList.contains('drawer-open'));
  });
  ui.scrim.addEventListener('click', function () { setDrawer(false); });
  $('sidebar-close').addEventListener('click', function () { setDrawer(false); ui.menu.focus(); });
  document.addEventListener('keydown', function (ev) {
    if (ev.key === 'Escape' && ui.app.classList.contains('drawer-open')) setDrawer(false);
  });

  ui.errClose.addEventListener('click', hideError);
  ui.reconnect.addEventListener('click', function () {
    hideError();
    state.ended = false;
    state.attempt = 0;
    connect();
  });

  ui.messages.addEventListener('scroll', function () {
    if (nearBottom()) ui.jump.hidden = true;
  });
  ui.jump.addEventListener('click', scrollToBottom);

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && state.unread) {
      state.unread = 0;
      showRoom(state.roomName);
    }
  });

  window.addEventListener('online', function () {
    if (!state.ended && ui.status.dataset.state === 'offline') {
      state.attempt = 0;
      connect();
    }
  });

  window.addEventListener('pagehide', function () {
    state.gen++;
    teardown(true);
  });
  window.addEventListener('pageshow', function (ev) {
    if (ev.persisted) { state.attempt = 0; connect(); } // back from the page cache
  });

  showRoom(state.room);
  updateComposer();
  connect();
})();
