/*
 * chatd web client.
 *
 * Talks to chatd over one WebRTC data channel (label "chat", ordered,
 * reliable). Signalling is a single non-trickle HTTP exchange:
 *   POST /api/rtc[?room=NAME]  body: SDP offer   ->  201, body: SDP answer,
 *   Location: /api/rtc/ID (DELETEd when the page goes away).
 * The protocol over the channel is the one in SPEC.md / docs/PROTOCOL.md:
 * welcome, history, message, presence, error, pong, and (section 10)
 * announcement, kicked, room_closed from the server; post, whisper and ping
 * from us. Rooms are managed over plain HTTP (GET/POST /api/rooms, kick,
 * announce, search); switching rooms closes the peer connection and opens a
 * new one with the same bearer token, so the user stays the same.
 *
 * Reconnecting: when the channel drops without the server saying why, the
 * client retries after 1 s, doubling to 30 s, with its last token and
 * since=<the last message id it saw>; everything is keyed by message id, so
 * a message already shown is never shown twice. After kicked, room_closed or
 * a fatal error it does not reconnect by itself.
 *
 * What this browser remembers: the token (localStorage, the identity); per
 * tab (sessionStorage) the pins it joined with and the owner secrets it
 * created or was given, so a reload keeps them and closing the tab forgets.
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
  var OWNER_KEY = 'chatd.owner.';  // + room: {"secret":…} or {"admin_key":…} (sessionStorage)
  var PIN_KEY = 'chatd.pin.';      // + room: the pin this tab joined with (sessionStorage)
  var ADMIN_KEY = 'chatd.adminKey';// an admin key typed in this tab (sessionStorage)
  var ROOMS_EVERY_MS = 10000;      // room list refresh
  var RECONNECT_FIRST_MS = 1000;   // first retry after a drop, doubling...
  var RECONNECT_MAX_MS = 30000;    // ...up to this
  var RECONNECTED_SHOW_MS = 4000;  // how long "Reconnected" stays up
  var CATCHUP_PAGES = 5;           // GETs to fill a catch-up gap ("more":true)
  var ROOM_RE = /^[A-Za-z0-9._-]{1,63}$/;

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

  /* Reconnect delay before attempt n+1 (n = 0, 1, …): 1 s doubling to 30 s. */
  function backoffMs(attempt) {
    return Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * Math.pow(2, Math.min(attempt, 10)));
  }

  /* True when message id a is later than b (ids are decimal strings). */
  function idAfter(a, b) {
    a = String(a); b = String(b);
    if (!/^\d+$/.test(a)) return false;
    if (!/^\d+$/.test(b)) return true;
    a = a.replace(/^0+(?=\d)/, ''); b = b.replace(/^0+(?=\d)/, '');
    return a.length !== b.length ? a.length > b.length : a > b;
  }

  /* The words of a search, lower-cased, for highlighting. */
  function searchWords(q) {
    return String(q || '').toLowerCase().split(/[^\p{L}\p{N}_]+/u).filter(Boolean);
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
  function tabStore(key, value) {
    try {
      if (value == null) sessionStorage.removeItem(key); else sessionStorage.setItem(key, value);
    } catch (e) { /* storage unavailable: kept in memory only */ }
  }
  function tabLoad(key) {
    try { return sessionStorage.getItem(key); } catch (e) { return null; }
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

  /* A small inline icon (paths are ours, never from the server). */
  var ICONS = {
    lock: ['M8 11V8a4 4 0 0 1 8 0v3', 'M6 11h12v9H6z'],
    megaphone: ['M3 10v4h3l7 4V6L6 10H3z', 'M16 9a4 4 0 0 1 0 6', 'M18.5 6.5a7.5 7.5 0 0 1 0 11']
  };
  function icon(name, size) {
    var NS = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', String(size || 14));
    svg.setAttribute('height', String(size || 14));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('fill', 'none');
    svg.setAttribute('stroke', 'currentColor');
    svg.setAttribute('stroke-width', '2');
    svg.setAttribute('stroke-linejoin', 'round');
    svg.setAttribute('stroke-linecap', 'round');
    svg.setAttribute('class', 'icon icon-' + name);
    ICONS[name].forEach(function (d) {
      var path = document.createElementNS(NS, 'path');
      path.setAttribute('d', d);
      svg.appendChild(path);
    });
    return svg;
  }

  function timeEl(ts) {
    var t = el('time', 'msg-time', formatTime(ts));
    if (ts) {
      t.dateTime = String(ts);
      var d = new Date(ts);
      if (!isNaN(d.getTime())) t.title = d.toLocaleString();
    }
    return t;
  }

  /* "you", or the names of the whisper's recipients. */
  function recipientsText(to, selfId) {
    var names = (Array.isArray(to) ? to : []).map(function (u) {
      if (!u || typeof u !== 'object') return String(u);
      if (selfId != null && u.id != null && String(u.id) === String(selfId)) return 'you';
      return String(u.name || u.username || ('user ' + u.id));
    });
    return names.length ? names.join(', ') : 'nobody';
  }

  /* An announcement (room or global) -> a banner-style line. */
  function renderAnnouncement(m) {
    var li = el('article', 'msg msg-announcement');
    li.dataset.source = 'announcement';
    if (m.id != null) li.dataset.id = String(m.id);
    li.dataset.scope = m.room == null ? 'global' : 'room';
    li.setAttribute('aria-label', 'Announcement');
    var mark = el('span', 'announce-mark');
    mark.appendChild(icon('megaphone', 18));
    li.appendChild(mark);
    var body = el('div', 'msg-body');
    var head = el('header', 'msg-head');
    head.appendChild(el('span', 'msg-name', 'Announcement'));
    head.appendChild(el('span', 'msg-badge msg-badge-announce', m.room == null ? 'every room' : '#' + m.room));
    head.appendChild(timeEl(m.ts));
    body.appendChild(head);
    body.appendChild(el('p', 'msg-text', m.text || ''));
    li.appendChild(body);
    return li;
  }

  /* One MESSAGE object -> one .msg element. selfId marks our own posts. */
  function renderMessage(m, selfId) {
    if (m.type === 'announcement') return renderAnnouncement(m);
    var user = m.user || {};
    var source = m.source === 'auto' ? 'auto' : m.source === 'whisper' ? 'whisper' : 'manual';
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
    if (source === 'whisper') {
      var priv = el('span', 'msg-badge msg-badge-private');
      priv.appendChild(icon('lock', 12));
      priv.appendChild(document.createTextNode('private'));
      priv.title = 'Only the sender and the recipients see this';
      head.appendChild(priv);
      li.dataset.to = (Array.isArray(m.to) ? m.to : []).map(function (u) {
        return u && typeof u === 'object' ? u.id : u;
      }).join(',');
    }
    head.appendChild(timeEl(m.ts));
    body.appendChild(head);
    if (source === 'whisper') {
      body.appendChild(el('div', 'msg-whisper-to', 'Whisper to ' + recipientsText(m.to, selfId)));
    }

    if (source === 'auto') {
      body.appendChild(el('h3', 'msg-title', m.title || ''));
    }
    body.appendChild(el('p', 'msg-text', m.text || ''));
    li.appendChild(body);
    return li;
  }

  /* Our own post (or whisper, to: [USER…]) while it travels: same look, marked pending. */
  function renderPending(text, ref, me, to) {
    var m = { source: to && to.length ? 'whisper' : 'manual', user: me, text: text, ts: new Date().toISOString() };
    if (to && to.length) m.to = to;
    var li = renderMessage(m, me && me.id);
    li.classList.add('pending');
    li.dataset.ref = ref;
    li.removeAttribute('data-id');
    var state = el('div', 'msg-state', 'Sending…');
    li.querySelector('.msg-body').appendChild(state);
    return li;
  }

  /*
   * One online user. Others are buttons (pick them to whisper); opts:
   * {picked: in the whisper's recipients, canKick: show the owner's kick}.
   */
  function renderOnlineItem(user, isSelf, opts) {
    opts = opts || {};
    var li = el('li', 'person' + (isSelf ? ' person-self' : ''));
    li.dataset.userId = String(user.id);
    var main;
    if (isSelf) {
      main = el('div', 'person-main');
    } else {
      main = el('button', 'person-main');
      main.type = 'button';
      main.dataset.action = 'whisper';
      main.setAttribute('aria-pressed', opts.picked ? 'true' : 'false');
      main.setAttribute('aria-label', (opts.picked ? 'Stop whispering to ' : 'Whisper to ') + (user.name || 'this user'));
      main.title = opts.picked ? 'Picked for the whisper' : 'Whisper to ' + (user.name || 'this user');
      if (opts.picked) li.classList.add('person-picked');
    }
    li.appendChild(main);
    main.appendChild(avatar(user, 'avatar-sm'));
    var who = el('div', 'person-who');
    // The tag sits beside the name, not inside it, so a long name is
    // shortened with an ellipsis and the tag stays whole.
    var name = el('span', 'person-name');
    name.appendChild(el('span', 'person-name-text', user.name || 'Unknown'));
    if (isSelf) name.appendChild(el('span', 'you-tag', 'you'));
    who.appendChild(name);
    if (user.username) who.appendChild(el('span', 'person-username', '@' + user.username));
    main.appendChild(who);
    if (opts.picked) {
      var lk = el('span', 'person-lock');
      lk.appendChild(icon('lock', 13));
      main.appendChild(lk);
    }
    main.appendChild(el('span', 'presence-dot'));
    if (opts.canKick && !isSelf) {
      var kick = el('button', 'btn btn-small btn-danger-ghost kick-btn', 'Kick');
      kick.type = 'button';
      kick.dataset.action = 'kick';
      kick.setAttribute('aria-label', 'Remove ' + (user.name || 'this user') + ' from the room');
      li.appendChild(kick);
    }
    return li;
  }

  /* One ROOM of GET /api/rooms -> one list item with a button. */
  function renderRoomItem(room, current) {
    var li = el('li', 'room' + (current ? ' room-current' : ''));
    li.dataset.room = String(room.name);
    var b = el('button', 'room-btn');
    b.type = 'button';
    if (current) b.setAttribute('aria-current', 'true');
    var label = '#' + room.name + (room.pin ? ', needs a pin' : '') +
      (room.online != null ? ', ' + room.online + ' online' : '') + (current ? ', current room' : '');
    b.setAttribute('aria-label', label);
    var top = el('span', 'room-top');
    top.appendChild(el('span', 'room-hash', '#'));
    top.appendChild(el('span', 'room-title', room.name));
    if (room.pin) {
      var lk = el('span', 'room-lock');
      lk.title = 'Needs a pin';
      lk.appendChild(icon('lock', 13));
      top.appendChild(lk);
    }
    if (room.private) top.appendChild(el('span', 'room-tag', 'private'));
    if (room.online != null) {
      var c = el('span', 'room-online', String(room.online));
      c.title = room.online + ' online';
      c.dataset.testid = 'room-online';
      top.appendChild(c);
    }
    b.appendChild(top);
    if (room.description) b.appendChild(el('span', 'room-desc-line', room.description));
    li.appendChild(b);
    return li;
  }

  /* The text of one message with the searched words wrapped in <mark>. */
  function highlight(node, words) {
    if (!words.length) return;
    var re = new RegExp('(^|[^\\p{L}\\p{N}_])(' + words.map(function (w) {
      return w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }).join('|') + ')(?=$|[^\\p{L}\\p{N}_])', 'giu');
    node.querySelectorAll('.msg-text, .msg-title').forEach(function (t) {
      var text = t.textContent;
      var out = document.createDocumentFragment();
      var last = 0, mm;
      re.lastIndex = 0;
      while ((mm = re.exec(text)) !== null) {
        var start = mm.index + mm[1].length;
        out.appendChild(document.createTextNode(text.slice(last, start)));
        out.appendChild(el('mark', null, mm[2]));
        last = start + mm[2].length;
        re.lastIndex = last;
      }
      out.appendChild(document.createTextNode(text.slice(last)));
      t.replaceChildren(out);
    });
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
    hint: $('hint-text'), chars: $('char-count'),
    lobbyBtn: null,
    conn: $('conn-banner'), connText: $('conn-text'), connRetry: $('conn-retry'),
    roomList: $('room-list'), roomListNote: $('room-list-note'), newRoom: $('new-room'),
    gotoForm: $('goto-room'), gotoName: $('goto-room-name'),
    roomDesc: $('room-desc'), claimOwner: $('claim-owner'), announceBtn: $('announce-btn'),
    manageBtn: $('manage-btn'),
    whisperBar: $('whisper-bar'), whisperLabel: $('whisper-label'), whisperChips: $('whisper-chips'),
    whisperCancel: $('whisper-cancel'),
    searchToggle: $('search-toggle'), searchPanel: $('search-panel'), searchForm: $('search-form'),
    searchInput: $('search-input'), searchStatus: $('search-status'), searchResults: $('search-results'),
    searchClose: $('search-close'),
    createDialog: $('create-dialog'), createForm: $('create-form'), createError: $('create-error'),
    createSubmit: $('create-submit'),
    pinDialog: $('pin-dialog'), pinForm: $('pin-form'), pinText: $('pin-text'), pinError: $('pin-error'),
    ownerDialog: $('owner-dialog'), ownerForm: $('owner-form'), ownerText: $('owner-text'),
    ownerClaim: $('owner-claim'), ownerKnown: $('owner-known'), ownerError: $('owner-error'),
    ownerSubmit: $('owner-submit'), ownerForget: $('owner-forget'), ownerDelete: $('owner-delete'),
    announceDialog: $('announce-dialog'), announceForm: $('announce-form'),
    announceError: $('announce-error'), announceGlobalRow: $('announce-global-row')
  };
  // "Go to the lobby" sits beside Reconnect/Rejoin in the error banner.
  ui.lobbyBtn = el('button', 'btn btn-small btn-ghost', 'Go to the lobby');
  ui.lobbyBtn.type = 'button';
  ui.lobbyBtn.id = 'lobby-btn';
  ui.lobbyBtn.dataset.testid = 'lobby-btn';
  ui.lobbyBtn.hidden = true;
  ui.reconnect.after(ui.lobbyBtn);

  // ------------------------------------------------------------------ state

  var params = new URLSearchParams(location.search);
  var startRoom = params.get('room') || '';
  var state = {
    room: ROOM_RE.test(startRoom) ? startRoom : '',
    roomName: '',        // the room the server says we are in (welcome)
    pin: null,           // X-Room-Pin for this room, if it has one
    lastId: null,        // the latest message id seen in this room: since= on reconnect
    sinceSent: null,     // the since= of the connection being made
    rooms: new Map(),    // name -> ROOM from GET /api/rooms
    roomsOk: null,       // did the last GET /api/rooms work
    whisperTo: new Map(),// user id -> USER: the composer whispers to them
    reconnecting: false, // a drop is being repaired: show "Reconnected" at the welcome
    endedText: '',       // the status after a session that will not reconnect
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
    timers: { reconnect: 0, reconnectTick: 0, ping: 0, open: 0, refresh: 0, countdown: 0, bannerHide: 0,
              rooms: 0, connHide: 0 },
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
   * The error banner. opts: {retryInMs, fatal, sticky, info, title, action,
   * ended, lobby}. A countdown runs while retryInMs is in the future; fatal
   * adds the reconnect button (labelled opts.action, e.g. "Rejoin"), with
   * opts.ended as the line under it; lobby adds "Go to the lobby".
   */
  function showError(code, message, opts) {
    opts = opts || {};
    clearTimer('countdown');
    clearTimer('bannerHide');
    ui.banner.hidden = false;
    ui.banner.dataset.code = code || '';
    ui.banner.classList.toggle('fatal', !!opts.fatal);
    ui.banner.classList.toggle('info', !!opts.info);
    ui.banner.classList.toggle('titled', !!opts.title);
    ui.errCode.textContent = opts.title || code || 'Error';
    ui.errMessage.textContent = message || '';
    ui.errCountdown.textContent = '';
    ui.reconnect.hidden = !opts.fatal;
    ui.reconnect.textContent = opts.action || 'Reconnect';
    ui.lobbyBtn.hidden = !opts.lobby;
    if (opts.fatal) {
      ui.errCountdown.textContent = opts.ended || 'Your session has ended.';
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
    ui.banner.classList.remove('fatal', 'info', 'titled');
    ui.banner.dataset.code = '';
  }

  /* A short confirmation ("Announcement sent") in the banner's info style. */
  function notice(title, message) {
    showError('OK', message, { info: true, title: title });
  }

  /*
   * The connection strip over the messages: "Reconnecting… (attempt k, next
   * in N s)" while a drop is repaired, "Reconnected" for a moment after.
   */
  function showConn(kind, text) {
    clearTimer('connHide');
    ui.conn.hidden = !kind;
    ui.conn.dataset.state = kind || '';
    ui.connText.textContent = text || '';
    ui.connRetry.hidden = kind !== 'reconnecting';
    if (kind === 'reconnected') {
      state.timers.connHide = setTimeout(function () { showConn('', ''); }, RECONNECTED_SHOW_MS);
    }
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
    var canKick = !!ownerCred(state.roomName);
    var frag = document.createDocumentFragment();
    entries.forEach(function (u) {
      frag.appendChild(renderOnlineItem(u, String(u.id) === selfId, {
        picked: state.whisperTo.has(String(u.id)), canKick: canKick
      }));
    });
    // Keep keyboard focus on the same user's button across the re-render.
    var focused = document.activeElement && ui.online.contains(document.activeElement) ? {
      id: document.activeElement.closest('.person') && document.activeElement.closest('.person').dataset.userId,
      action: document.activeElement.dataset.action
    } : null;
    ui.online.replaceChildren(frag);
    if (focused && focused.id) {
      var again = ui.online.querySelector('.person[data-user-id="' + CSS.escape(focused.id) + '"] [data-action="' +
        (focused.action || 'whisper') + '"]');
      if (again) again.focus();
    }
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

  /* Remember the latest id seen in this room, for since= on reconnect. */
  function noteId(m) {
    if (m && m.id != null && (state.lastId == null || idAfter(m.id, state.lastId))) state.lastId = String(m.id);
  }

  function addMessage(m) {
    if (!m || typeof m !== 'object') return;
    noteId(m);
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
      if (m && typeof m === 'object') noteId(m);
      if (m && typeof m === 'object' && !(m.id != null && state.msgs.has(String(m.id)))) all.push(m);
    });
    all.sort(compareMessages);
    state.msgs.forEach(function (node) { node.remove(); });
    state.msgs.clear();
    var frag = document.createDocumentFragment();
    all.forEach(function (m) {
      var key = msgKey(m);
      if (state.msgs.has(key)) return; // the same id twice in one history
      var node = renderMessage(m, state.me && state.me.id);
      node._msg = m;
      state.msgs.set(key, node);
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
      sendPost(p.text, p.to);
    });
    var discard = el('button', 'link-btn', 'Discard');
    discard.type = 'button';
    discard.addEventListener('click', function () { dropPending(ref); });
    st.appendChild(retry);
    st.appendChild(discard);
  }

  // ------------------------------------------------------------ connection

  /* POST /api/rtc[?room=NAME][&since=ID]: since= whenever this room was seen before. */
  function rtcUrl() {
    var q = [];
    if (state.room) q.push('room=' + encodeURIComponent(state.room));
    if (state.lastId != null) q.push('since=' + encodeURIComponent(state.lastId));
    return '/api/rtc' + (q.length ? '?' + q.join('&') : '');
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
    state.reconnecting = true;
    var k = state.attempt;
    var until = Date.now() + delay;
    var tick = function () {
      var left = Math.max(0, until - Date.now());
      var text = 'Reconnecting… (attempt ' + k + ', next in ' + Math.ceil(left / 1000) + ' s)';
      setStatus('offline', 'Reconnecting…', text + ' — ' + why);
      showConn('reconnecting', text);
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
      setStatus('ended', state.endedText || 'Session ended', why);
      showConn('', '');
      return;
    }
    scheduleReconnect(why);
  }

  /* Stops for good (kicked, wrong pin, fatal…) until the user acts. */
  function endSession(statusText, why) {
    state.ended = true;
    state.endedText = statusText;
    state.reconnecting = false;
    clearTimer('reconnect');
    clearTimer('reconnectTick');
    showConn('', '');
    setStatus('ended', statusText, why || statusText);
  }

  async function connect() {
    clearTimer('reconnect');
    clearTimer('reconnectTick');
    state.gen++;
    var gen = state.gen;
    teardown(false);
    state.ended = false;
    state.endedText = '';
    setStatus('connecting', state.attempt > 0 ? 'Reconnecting…' : 'Connecting…');
    if (state.reconnecting) showConn('reconnecting', 'Reconnecting… (attempt ' + state.attempt + ', connecting now)');

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
      var sentPin = state.pin;
      if (sentToken) headers.Authorization = 'Bearer ' + sentToken;
      if (sentPin) headers['X-Room-Pin'] = sentPin;
      state.sinceSent = state.lastId;
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
    if (res.status === 403) {
      // The room has a pin, and ours is missing or wrong: ask, do not retry.
      var room = state.room || 'lobby';
      tabStore(PIN_KEY + room, null);
      state.pin = null;
      state.gen++;
      teardown(false);
      endSession(sentPin ? 'Wrong pin' : 'Pin needed', err.message);
      askPin(room, sentPin ? 'wrong pin' : '');
      return;
    }
    if (res.status === 401 && sentToken) {
      // Our saved identity is no longer accepted: forget it and start fresh.
      state.token = null;
      store(TOKEN_KEY, null);
      showError(err.code, 'Your saved session is no longer valid, so you are joining as someone new.', { info: true, title: 'Signed out' });
      connect();
      return;
    }
    showError(err.code, err.message);
    if (res.status === 400 || res.status === 404) {
      // Retrying the same request cannot help (a bad room name, say).
      state.gen++;
      teardown(false);
      endSession('Cannot join', err.code + ': ' + err.message);
      return;
    }
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
      case 'history':
        addHistory(msg.messages);
        if (msg.more && state.sinceSent != null) fillGap(gen, state.sinceSent, msg.messages);
        return;
      case 'message': return addMessage(msg);
      case 'presence':
        if (msg.event === 'join') presenceJoin(msg.user);
        else if (msg.event === 'leave') presenceLeave(msg.user);
        return;
      case 'announcement': return addMessage(msg);
      case 'kicked': return onKicked(msg);
      case 'room_closed': return onRoomClosed(msg);
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
        ui.banner.dataset.code === 'AT_CAPACITY' || ui.banner.dataset.code === 'KICKED' ||
        ui.banner.dataset.code === 'FORBIDDEN' || /^HTTP_/.test(ui.banner.dataset.code || '')) {
      hideError();
    }
    setStatus('online', 'Online', 'Connected as ' + (state.me.name || '?'));
    if (state.reconnecting) {
      state.reconnecting = false;
      showConn('reconnected', 'Reconnected');
    } else {
      showConn('', '');
    }
    if (state.pin) tabStore(PIN_KEY + state.roomName, state.pin);
    rememberRoomInUrl();
    updateRoomTools();
    refreshRooms();
  }

  /* The room's owner removed us: say so, stay disconnected, offer to rejoin. */
  function onKicked(msg) {
    var room = String(msg.room || state.roomName || 'lobby');
    var reason = String(msg.reason || 'removed by the room\'s owner');
    endSession('Removed from the room', reason);
    showError('KICKED', 'You were removed from #' + room + ': ' + reason + '.', {
      fatal: true, title: 'Removed from #' + room, action: 'Rejoin',
      ended: 'You are not in the room now.', lobby: room !== 'lobby'
    });
  }

  /* The room was deleted: say why and go back to the lobby. */
  function onRoomClosed(msg) {
    var room = String(msg.room || state.roomName || 'lobby');
    var reason = String(msg.reason || 'the room was closed');
    state.ended = true;  // the channel's close that follows must not reconnect here
    tabStore(OWNER_KEY + room, null);
    tabStore(PIN_KEY + room, null);
    showError('ROOM_CLOSED', '#' + room + ' was closed: ' + reason + '. You are back in the lobby.', {
      info: true, sticky: true, title: 'Room closed'
    });
    enterRoom('lobby', null);
  }

  function onError(msg, gen) {
    var code = String(msg.code || 'ERROR');
    var text = String(msg.message || '');
    var retry = Number(msg.retry_in_ms) || 0;
    if (msg.ref && state.pending.has(msg.ref)) {
      failPending(msg.ref, 'Not sent — ' + (text || code));
    }
    if (msg.fatal) {
      endSession('Session ended', code + ': ' + text);
      showError(code, text, { fatal: true });
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

  /*
   * A catch-up said "more": older messages after since= did not fit. Fetch
   * the public ones (whispers cannot be paged) back to since, a few pages at most.
   */
  async function fillGap(gen, since, got) {
    var oldest = null;
    (Array.isArray(got) ? got : []).forEach(function (m) {
      if (m && m.id != null && (oldest == null || idAfter(oldest, m.id))) oldest = String(m.id);
    });
    var room = currentRoom();
    for (var page = 0; oldest != null && page < CATCHUP_PAGES; page++) {
      var r = await api('GET', roomPath(room) + '/messages?limit=1000&before=' + encodeURIComponent(oldest),
        undefined, { pin: state.pin });
      if (gen !== state.gen || r.status !== 200 || !r.data || !Array.isArray(r.data.messages)) return;
      var list = r.data.messages.filter(function (m) { return m && m.id != null && idAfter(m.id, since); });
      if (list.length) addHistory(list);
      if (list.length < r.data.messages.length || r.data.messages.length === 0) return; // reached since
      oldest = String(r.data.messages[0].id);
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

  /* Posts text to the room, or whispers it when to (a list of USER) is not empty. */
  function sendPost(text, to) {
    if (!state.token || !state.me) return false;
    to = (to || []).filter(function (u) { return u && u.id != null; });
    var ref = newRef(to.length ? 'whisper' : 'post');
    var frame = to.length
      ? { type: 'whisper', token: state.token, to: to.map(function (u) { return Number(u.id); }), text: text, ref: ref }
      : { type: 'post', token: state.token, text: text, ref: ref };
    if (!send(frame)) return false;
    var node = renderPending(text, ref, state.me, to);
    ui.messages.appendChild(node);
    ui.empty.hidden = true;
    var entry = { el: node, text: text, to: to, timer: 0 };
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
    } else if (state.whisperTo.size) {
      ui.hint.textContent = 'Enter to whisper · Escape to write to the room';
    } else {
      ui.hint.textContent = 'Enter to send · Shift+Enter for a new line';
    }
    ui.compose.setAttribute('aria-invalid', v.reason === 'long' ? 'true' : 'false');
    ui.send.disabled = !(online && v.ok);
    ui.send.setAttribute('aria-label', state.whisperTo.size ? 'Send whisper' : 'Send message');
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
    if (sendPost(v.text, Array.from(state.whisperTo.values()))) {
      ui.compose.value = '';
      autoGrow();
      updateComposer();
    } else {
      ui.hint.textContent = 'Not connected — your draft is kept';
    }
    ui.compose.focus();
  });

  ui.compose.addEventListener('keydown', function (ev) {
    if (ev.key === 'Escape' && state.whisperTo.size && !ui.app.classList.contains('drawer-open')) {
      ev.preventDefault();
      ev.stopPropagation();
      clearWhisper();
      return;
    }
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      if (typeof ui.form.requestSubmit === 'function') ui.form.requestSubmit();
      else ui.form.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });
  ui.compose.addEventListener('input', function () { autoGrow(); updateComposer(); });

  // ------------------------------------------------------------- whispers

  function renderWhisperBar() {
    var users = Array.from(state.whisperTo.values());
    ui.whisperBar.hidden = users.length === 0;
    ui.form.classList.toggle('whispering', users.length > 0);
    ui.whisperLabel.textContent = 'Whisper to';
    var frag = document.createDocumentFragment();
    users.forEach(function (u) {
      var chip = el('span', 'chip');
      chip.appendChild(el('span', 'chip-name', u.name || u.username || ('user ' + u.id)));
      var x = el('button', 'chip-x', '×');
      x.type = 'button';
      x.setAttribute('aria-label', 'Stop whispering to ' + (u.name || 'this user'));
      x.addEventListener('click', function () { toggleWhisper(u); });
      chip.appendChild(x);
      frag.appendChild(chip);
    });
    ui.whisperChips.replaceChildren(frag);
    ui.compose.placeholder = users.length
      ? 'Whisper to ' + users.map(function (u) { return u.name || u.username; }).join(', ') + '…'
      : 'Write a message…';
    ui.compose.setAttribute('aria-label', users.length ? ui.compose.placeholder : 'Message');
    updateComposer();
  }

  /* Adds or removes one recipient (up to 20, the protocol's limit). */
  function toggleWhisper(u) {
    var key = String(u.id);
    if (state.whisperTo.has(key)) state.whisperTo.delete(key);
    else if (state.whisperTo.size < 20) state.whisperTo.set(key, { id: u.id, name: u.name, username: u.username });
    renderWhisperBar();
    renderOnline();
  }

  function clearWhisper() {
    if (!state.whisperTo.size) return;
    state.whisperTo.clear();
    renderWhisperBar();
    renderOnline();
  }

  // ---------------------------------------------------------- HTTP helpers

  /*
   * One JSON request to chatd. Resolves {status, data, error: {code, message}};
   * never rejects (a network failure is status 0).
   */
  async function api(method, path, body, opts) {
    opts = opts || {};
    var headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (opts.auth && state.token) headers.Authorization = 'Bearer ' + state.token;
    if (opts.pin) headers['X-Room-Pin'] = opts.pin; // a pin guards a room's messages and search too
    var res, text;
    try {
      res = await fetch(path, {
        method: method, headers: headers, cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body)
      });
      text = await res.text();
    } catch (e) {
      return { status: 0, data: null, error: { code: 'NETWORK', message: 'Cannot reach the server.' } };
    }
    var data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    var out = { status: res.status, data: data, error: null };
    if (res.status >= 400) out.error = errorFromBody(res.status, text);
    return out;
  }

  function roomPath(name) {
    return '/api/rooms/' + encodeURIComponent(name);
  }

  // ----------------------------------------------------------------- rooms

  function currentRoom() {
    return state.roomName || state.room || 'lobby';
  }

  /* What proves ownership of a room in this tab: {secret} or {admin_key}, or null. */
  function ownerCred(room) {
    if (!room) return null;
    try {
      var c = JSON.parse(tabLoad(OWNER_KEY + room) || 'null');
      if (c && typeof c.secret === 'string') return { secret: c.secret };
      if (c && typeof c.admin_key === 'string') return { admin_key: c.admin_key };
    } catch (e) { /* a bad entry: as if none */ }
    return null;
  }
  function setOwnerCred(room, cred) {
    tabStore(OWNER_KEY + room, cred ? JSON.stringify(cred) : null);
  }

  async function refreshRooms() {
    clearTimer('rooms');
    state.timers.rooms = setTimeout(refreshRooms, ROOMS_EVERY_MS);
    var r = await api('GET', '/api/rooms');
    if (r.status === 200 && r.data && Array.isArray(r.data.rooms)) {
      state.rooms.clear();
      r.data.rooms.forEach(function (room) {
        if (room && typeof room.name === 'string') state.rooms.set(room.name, room);
      });
      state.roomsOk = true;
    } else {
      state.roomsOk = false;
    }
    renderRooms();
    updateRoomTools();
  }

  function renderRooms() {
    var cur = currentRoom();
    var list = Array.from(state.rooms.values());
    if (!state.rooms.has(cur)) {
      // A private room, or an open one the list has not caught up with.
      list.unshift({ name: cur, description: '', online: null, pin: !!state.pin, private: state.roomsOk === true });
    }
    var focusedRoom = document.activeElement && ui.roomList.contains(document.activeElement)
      ? document.activeElement.closest('.room').dataset.room : null;
    var frag = document.createDocumentFragment();
    list.forEach(function (room) { frag.appendChild(renderRoomItem(room, room.name === cur)); });
    ui.roomList.replaceChildren(frag);
    if (focusedRoom) {
      var again = ui.roomList.querySelector('.room[data-room="' + CSS.escape(focusedRoom) + '"] .room-btn');
      if (again) again.focus();
    }
    ui.roomListNote.hidden = state.roomsOk !== false;
    ui.roomListNote.textContent = state.roomsOk === false ? 'The room list is not available right now.' : '';
  }

  /* The current room's description and the owner's buttons. */
  function updateRoomTools() {
    var cur = currentRoom();
    var info = state.rooms.get(cur);
    var desc = info && info.description ? String(info.description) : '';
    // A listed room shows its description in the list (whole, for the current one).
    ui.roomDesc.textContent = desc;
    ui.roomDesc.hidden = !desc || state.rooms.has(cur);
    var owner = !!ownerCred(cur);
    ui.claimOwner.hidden = owner;
    ui.announceBtn.hidden = !owner;
    ui.manageBtn.hidden = !owner;
    ui.app.classList.toggle('is-owner', owner);
  }

  /* ?room=NAME in the address bar, so a reload comes back to this room. */
  function rememberRoomInUrl() {
    try {
      var u = new URL(location.href);
      if (u.searchParams.get('room') === currentRoom()) return;
      u.searchParams.set('room', currentRoom());
      history.replaceState(null, '', u.pathname + u.search + u.hash);
    } catch (e) { /* not fatal */ }
  }

  /*
   * Go to another room: ask for its pin first when the list says it has one
   * and this tab does not know it.
   */
  function switchRoom(name) {
    if (!ROOM_RE.test(name)) {
      showError('BAD_REQUEST', 'Room names are 1–63 characters: letters, digits, -, _ and .');
      return;
    }
    setDrawer(false);
    if (name === currentRoom() && !state.ended && ui.status.dataset.state !== 'ended') return;
    var info = state.rooms.get(name);
    var pin = tabLoad(PIN_KEY + name);
    if (info && info.pin && !pin) {
      askPin(name, '');
      return;
    }
    enterRoom(name, pin);
  }

  /* Leave this room (closing the peer connection) and join NAME with the same token. */
  function enterRoom(name, pin) {
    state.gen++;
    teardown(false);
    clearTimer('reconnect');
    clearTimer('reconnectTick');
    state.room = name;
    state.roomName = name;
    state.pin = pin || null;
    state.lastId = null;
    state.attempt = 0;
    state.reconnecting = false;
    state.ended = false;
    state.endedText = '';
    if (ui.banner.dataset.code === 'KICKED' || ui.banner.dataset.code === 'FORBIDDEN') hideError();
    // A new room: nothing of the old one's conversation stays.
    state.msgs.forEach(function (node) { node.remove(); });
    state.msgs.clear();
    state.pending.forEach(function (p) { clearTimeout(p.timer); p.el.remove(); });
    state.pending.clear();
    ui.empty.hidden = false;
    state.whisperTo.clear();
    renderWhisperBar();
    state.online.clear();
    renderOnline();
    closeSearch(false);
    ui.searchResults.replaceChildren();
    ui.searchStatus.textContent = '';
    showConn('', '');
    showRoom(name);
    rememberRoomInUrl();
    renderRooms();
    updateRoomTools();
    connect();
  }

  // --------------------------------------------------------------- dialogs

  function openDialog(d) {
    if (d.open) return;
    setDrawer(false);
    d.querySelectorAll('.dialog-error').forEach(function (e) { e.hidden = true; e.textContent = ''; });
    d.returnValue = ''; // Escape keeps the last value: start each opening afresh
    d.showModal();
  }
  function dialogError(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }
  document.querySelectorAll('dialog [data-close]').forEach(function (b) {
    b.addEventListener('click', function () { b.closest('dialog').close('cancel'); });
  });
  /* While a request runs, its form's submit buttons wait. */
  function busy(form, on) {
    form.querySelectorAll('button[type="submit"]').forEach(function (b) { b.disabled = on; });
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  // The pin dialog: asked before joining a room with a pin, or after a 403.
  var pinFor = null;
  function askPin(room, why) {
    pinFor = room;
    ui.pinForm.reset();
    ui.pinText.textContent = 'To join #' + room + ', enter its pin.';
    openDialog(ui.pinDialog);
    if (why) dialogError(ui.pinError, why === 'wrong pin' ? 'Wrong pin. Try again.' : why);
  }
  ui.pinForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var pin = ui.pinForm.elements.pin.value;
    if (!pin) { dialogError(ui.pinError, 'Enter the pin.'); return; }
    ui.pinDialog.close('ok');
    enterRoom(pinFor, pin);
  });
  ui.pinDialog.addEventListener('close', function () {
    // Cancelled while not in any room (the pin was refused): back to the lobby.
    if (ui.pinDialog.returnValue !== 'ok' && state.ended && pinFor === currentRoom() && pinFor !== 'lobby' &&
        (state.endedText === 'Wrong pin' || state.endedText === 'Pin needed')) {
      enterRoom('lobby', null);
    }
  });

  // Create a room.
  ui.newRoom.addEventListener('click', function () {
    ui.createForm.reset();
    var key = tabLoad(ADMIN_KEY);
    if (key) ui.createForm.elements.admin_key.value = key;
    openDialog(ui.createDialog);
  });
  ui.createForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var f = ui.createForm.elements;
    var name = f.name.value.trim();
    if (!ROOM_RE.test(name)) {
      dialogError(ui.createError, 'Room names are 1–63 characters: letters, digits, -, _ and .');
      f.name.focus();
      return;
    }
    if (!state.token) {
      dialogError(ui.createError, 'Wait until you are connected: creating a room needs your sign-in.');
      return;
    }
    var body = { name: name, private: f.private.checked };
    var description = f.description.value.trim();
    if (description) body.description = description;
    if (f.secret.value) body.secret = f.secret.value;
    if (f.pin.value) body.pin = f.pin.value;
    if (f.admin_key.value) body.admin_key = f.admin_key.value;
    dialogError(ui.createError, '');
    busy(ui.createForm, true);
    var r = await api('POST', '/api/rooms', body, { auth: true });
    busy(ui.createForm, false);
    if (r.status === 201) {
      if (body.secret) setOwnerCred(name, { secret: body.secret });
      if (body.admin_key) tabStore(ADMIN_KEY, body.admin_key);
      if (body.pin) tabStore(PIN_KEY + name, body.pin);
      var created = r.data && r.data.room;
      if (created && created.name === name && !created.private) state.rooms.set(name, created);
      ui.createDialog.close('ok');
      notice('Room created', '#' + name + (body.secret ? ' — you are its owner in this tab.' : '.'));
      enterRoom(name, body.pin || null);
      return;
    }
    var msg = r.error ? r.error.message : 'The server answered ' + r.status + '.';
    if (r.status === 409) msg = 'A room named “' + name + '” already exists.';
    else if (r.status === 403) msg = 'Not allowed: ' + (msg || 'this server needs its admin key to create rooms.');
    else if (r.status === 401) msg = 'Your sign-in was refused (' + msg + '). Reload to get a new one.';
    dialogError(ui.createError, msg);
  });

  // "I own this room" / Manage.
  var deleteArmed = false;
  function openOwnerDialog() {
    var room = currentRoom();
    var cred = ownerCred(room);
    ui.ownerForm.reset();
    deleteArmed = false;
    ui.ownerDelete.textContent = 'Delete the room…';
    ui.ownerText.textContent = cred
      ? 'You manage #' + room + ': kick people from the online list, or make an announcement.'
      : 'Enter the owner secret of #' + room + ' to kick people and make announcements from this tab.';
    ui.ownerClaim.hidden = !!cred;
    ui.ownerKnown.hidden = !cred;
    ui.ownerSubmit.hidden = !!cred;
    var key = tabLoad(ADMIN_KEY);
    if (key && !cred) ui.ownerForm.elements.admin_key.value = key;
    openDialog(ui.ownerDialog);
  }
  ui.claimOwner.addEventListener('click', openOwnerDialog);
  ui.manageBtn.addEventListener('click', openOwnerDialog);
  ui.ownerForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var room = currentRoom();
    var f = ui.ownerForm.elements;
    var cred = f.secret.value ? { secret: f.secret.value } : f.admin_key.value ? { admin_key: f.admin_key.value } : null;
    if (!cred) { dialogError(ui.ownerError, 'Enter the owner secret (or the admin key).'); return; }
    // A PATCH that changes nothing checks the secret without side effects.
    busy(ui.ownerForm, true);
    var r = await api('PATCH', roomPath(room), cred);
    busy(ui.ownerForm, false);
    if (r.status === 200) {
      setOwnerCred(room, cred);
      if (cred.admin_key) tabStore(ADMIN_KEY, cred.admin_key);
      ui.ownerDialog.close('ok');
      updateRoomTools();
      renderOnline();
      notice('Owner tools on', 'You can now kick people from #' + room + ' and make announcements.');
      return;
    }
    var msg = r.error ? r.error.message : 'The server answered ' + r.status + '.';
    if (r.status === 403) msg = 'That secret is not right for #' + room + '.';
    else if (r.status === 404) msg = '#' + room + ' has no owner: it is an open room. Create it to claim it.';
    dialogError(ui.ownerError, msg);
  });
  ui.ownerForget.addEventListener('click', function () {
    setOwnerCred(currentRoom(), null);
    ui.ownerDialog.close('ok');
    updateRoomTools();
    renderOnline();
  });
  ui.ownerDelete.addEventListener('click', async function () {
    var room = currentRoom();
    if (!deleteArmed) {
      deleteArmed = true;
      ui.ownerDelete.textContent = 'Delete #' + room + ' for everyone';
      dialogError(ui.ownerError, 'Everyone in #' + room + ' is sent back to the lobby. Click again to delete.');
      return;
    }
    var cred = ownerCred(room);
    if (!cred) return;
    ui.ownerDelete.disabled = true;
    var r = await api('DELETE', roomPath(room), cred);
    ui.ownerDelete.disabled = false;
    if (r.status === 204) {
      ui.ownerDialog.close('ok');
      setOwnerCred(room, null);
      refreshRooms(); // our own room_closed brings us to the lobby
      return;
    }
    dialogError(ui.ownerError, (r.error && r.error.message) || 'The server answered ' + r.status + '.');
  });

  // Announce.
  ui.announceBtn.addEventListener('click', function () {
    ui.announceForm.reset();
    ui.announceGlobalRow.hidden = !tabLoad(ADMIN_KEY);
    openDialog(ui.announceDialog);
  });
  ui.announceForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var room = currentRoom();
    var f = ui.announceForm.elements;
    var v = validatePost(f.text.value);
    if (!v.ok) {
      dialogError(ui.announceError, v.reason === 'long' ? 'At most 2000 characters.' : 'Write the announcement first.');
      return;
    }
    var global = f.global.checked && !ui.announceGlobalRow.hidden;
    var r;
    busy(ui.announceForm, true);
    if (global) r = await api('POST', '/api/announce', { admin_key: tabLoad(ADMIN_KEY), text: v.text });
    else r = await api('POST', roomPath(room) + '/announce', Object.assign({}, ownerCred(room), { text: v.text }));
    busy(ui.announceForm, false);
    if (r.status === 202) {
      ui.announceDialog.close('ok');
      return; // it comes back over the channel like any message
    }
    var msg = r.error ? r.error.message : 'The server answered ' + r.status + '.';
    if (r.status === 403) msg = global ? 'The admin key was refused.' : 'The owner secret was refused.';
    dialogError(ui.announceError, msg);
  });

  async function kick(userId) {
    var room = currentRoom();
    var cred = ownerCred(room);
    var entry = state.online.get(String(userId));
    var name = entry && entry.user.name ? entry.user.name : 'user ' + userId;
    if (!cred) return;
    var r = await api('POST', roomPath(room) + '/kick', Object.assign({}, cred, { user_id: Number(userId) }));
    if (r.status === 204) {
      notice('Removed', name + ' was removed from #' + room + '.');
      refreshRooms();
      return;
    }
    var msg = r.error ? r.error.message : 'The server answered ' + r.status + '.';
    if (r.status === 404) msg = name + ' is not in #' + room + ' any more.';
    if (r.status === 403) {
      msg = 'The owner secret for #' + room + ' was refused; enter it again.';
      setOwnerCred(room, null);
      updateRoomTools();
      renderOnline();
    }
    showError(r.error ? r.error.code : 'ERROR', msg);
  }

  ui.online.addEventListener('click', function (ev) {
    var b = ev.target.closest('button[data-action]');
    if (!b || !ui.online.contains(b)) return;
    var li = b.closest('.person');
    var entry = li && state.online.get(li.dataset.userId);
    if (!entry) return;
    if (b.dataset.action === 'kick') {
      kick(li.dataset.userId);
    } else if (b.dataset.action === 'whisper') {
      toggleWhisper(entry.user);
      if (state.whisperTo.size && ui.app.classList.contains('drawer-open')) {
        setDrawer(false);
        ui.compose.focus();
      }
    }
  });
  ui.whisperCancel.addEventListener('click', function () { clearWhisper(); ui.compose.focus(); });

  ui.roomList.addEventListener('click', function (ev) {
    var b = ev.target.closest('.room-btn');
    if (!b) return;
    switchRoom(b.closest('.room').dataset.room);
  });
  ui.gotoForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var name = ui.gotoName.value.trim();
    if (!name) return;
    ui.gotoName.value = '';
    switchRoom(name);
  });

  // ---------------------------------------------------------------- search

  function openSearch() {
    ui.searchPanel.hidden = false;
    ui.searchToggle.setAttribute('aria-expanded', 'true');
    ui.searchInput.placeholder = 'Search #' + currentRoom() + '…';
    ui.searchInput.focus();
    ui.searchInput.select();
  }
  function closeSearch(refocus) {
    if (ui.searchPanel.hidden) return;
    ui.searchPanel.hidden = true;
    ui.searchToggle.setAttribute('aria-expanded', 'false');
    if (refocus) ui.searchToggle.focus();
  }
  ui.searchToggle.addEventListener('click', function () {
    if (ui.searchPanel.hidden) openSearch(); else closeSearch(true);
  });
  ui.searchClose.addEventListener('click', function () { closeSearch(true); });
  var searchSeq = 0;
  ui.searchForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var q = ui.searchInput.value.trim();
    var room = currentRoom();
    if (!q) {
      ui.searchStatus.textContent = 'Type one or more words.';
      return;
    }
    var seq = ++searchSeq;
    ui.searchStatus.textContent = 'Searching #' + room + '…';
    ui.searchPanel.setAttribute('aria-busy', 'true');
    var r = await api('GET', roomPath(room) + '/messages?limit=50&q=' + encodeURIComponent(q), undefined,
      { pin: state.pin });
    if (seq !== searchSeq) return;
    ui.searchPanel.setAttribute('aria-busy', 'false');
    if (r.status !== 200 || !r.data || !Array.isArray(r.data.messages)) {
      ui.searchResults.replaceChildren();
      ui.searchStatus.textContent = 'Search failed: ' + (r.error ? r.error.message : 'the server answered ' + r.status);
      return;
    }
    var list = r.data.messages.slice().reverse(); // newest first reads best in a result list
    var words = searchWords(q);
    var frag = document.createDocumentFragment();
    list.forEach(function (m) {
      if (!m || typeof m !== 'object') return;
      var node = renderMessage(m, state.me && state.me.id);
      highlight(node, words);
      frag.appendChild(node);
    });
    ui.searchResults.replaceChildren(frag);
    ui.searchStatus.textContent = list.length === 0
      ? 'No message in #' + room + ' holds every word of “' + q + '”.'
      : list.length + (list.length === 1 ? ' message' : ' messages') + ' in #' + room + ' with “' + q + '”' +
        (r.data.more || list.length >= 50 ? ' (the newest ' + list.length + ')' : '') + '.';
  });

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
    if (ev.key !== 'Escape' || ev.defaultPrevented) return;
    if (document.querySelector('dialog[open]')) return; // the dialog closes itself
    if (ui.app.classList.contains('drawer-open')) { setDrawer(false); ui.menu.focus(); return; }
    if (!ui.searchPanel.hidden) closeSearch(true);
  });

  ui.errClose.addEventListener('click', hideError);
  ui.reconnect.addEventListener('click', function () {
    // Reconnect after a fatal error, or Rejoin after a kick: same room, same
    // token, and since= so the conversation continues where it stopped.
    hideError();
    state.ended = false;
    state.attempt = 0;
    state.reconnecting = false;
    connect();
  });
  ui.lobbyBtn.addEventListener('click', function () {
    hideError();
    enterRoom('lobby', null);
  });
  ui.connRetry.addEventListener('click', function () {
    if (state.ended || !state.timers.reconnect) return;
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

  if (state.room) {
    state.roomName = state.room;
    state.pin = tabLoad(PIN_KEY + state.room);
  }
  showRoom(state.room);
  updateComposer();
  renderRooms();
  updateRoomTools();
  refreshRooms();
  connect();
})();
