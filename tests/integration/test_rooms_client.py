#!/usr/bin/python3
"""Integration: chat-client against chatd's version-2 rooms (docs/PROTOCOL.md
section 10, and 9.4 for the client): it reconnects by itself after a drop,
as the same user and with ?since= the last message id it saw, and prints
every message once; --no-reconnect and --max-reconnects; whispers typed as
/w reach their recipients and nobody else; announcements, kicked and
room_closed; --pin. Real chatd, real chat-client processes, the real
JSONPlaceholder; everything on 127.0.0.1.

    /usr/bin/python3 tests/integration/test_rooms_client.py [TEST...]
"""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import (SCALE, Client, Failure, JsonClient, check, distinct_clients, http,  # noqa: E402
                     run, start_chatd, test, wait_until)

QUIET = ("--auto-post-max-ms", "600000")   # no auto post during a short test
ADMIN_KEY = "rooms-client-admin-key"


# --------------------------------------------------------------------------
# helpers


def api(method, url, body=None, token=None):
    """(status, JSON body or None) of a JSON request to chatd."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    status, _, raw = http(method, url, data, headers)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def welcomes(c):
    return [m for m in c.msgs() if m.get("type") == "welcome"]


def printed_ids(c):
    """The message ids a --json chat-client printed, in order: message and
    announcement frames, and the items of each history."""
    out = []
    for m in c.msgs():
        if m.get("type") in ("message", "announcement"):
            out.append(int(m["id"]))
        elif m.get("type") == "history":
            out += [int(x["id"]) for x in m.get("messages", [])]
    return out


def wait_err(c, pattern, timeout, what):
    """The first stderr line of chat-client C matching PATTERN."""
    rx = re.compile(pattern)

    def found():
        with c.cond:
            return next((ln for ln in c.err_lines if rx.search(ln)), None)
    try:
        return wait_until(found, timeout * SCALE, what)
    except Failure:
        raise Failure(f"{what}: not within {timeout} s; stderr {c.err_lines[-8:]}")


def wait_line(c, want, timeout=15):
    """Waits until text-mode chat-client C printed the line WANT."""
    def found():
        with c.cond:
            return want in c.lines
    try:
        wait_until(found, timeout * SCALE, repr(want))
    except Failure:
        raise Failure(f"chat-client did not print {want!r}; it printed {c.lines[-8:]}, "
                      f"stderr {c.err_lines[-5:]}")


def is_text(m, text, source=None):
    return (m.get("type") == "message" and m.get("text") == text
            and (source is None or m.get("source") == source))


def created_room(d, name, token, **fields):
    """POST /api/rooms (PROTOCOL.md 10.2) with the admin key."""
    status, body = api("POST", d.url + "api/rooms", dict(name=name, admin_key=ADMIN_KEY,
                                                         **fields), token)
    check(status == 201, f"POST /api/rooms {name}: {status} {body}")
    return body["room"]


# --------------------------------------------------------------------------
# reconnect


@test(timeout=120)
def reconnect_after_drop_prints_each_message_once():
    """A's session is ended by DELETE /api/rtc/ID while every session
    auto-posts: A says it lost the connection, reconnects after 1 s as the
    same user with ?since=, and prints exactly the message ids that B, which
    never dropped, printed from the moment both were in: none twice, none
    missing. A line A typed while down is sent after the new welcome."""
    d = start_chatd("rooms_client_reconnect", "--auto-post-max-ms", "700")
    a = JsonClient(d.url)
    wa = a.welcome()
    b = JsonClient(d.url)
    b.welcome()
    # the first id both must have: the first live message B got after its
    # history (A was in before B)
    first = b.wait_msg(lambda m: m.get("type") == "message", 15, "a live message at B")
    start = int(first["id"])
    time.sleep(1.5)
    before_drop = max(printed_ids(a))
    status, _, _ = http("DELETE", d.url + "api/rtc/" + wa["session"])
    check(status == 204, f"DELETE of A's session answered {status}")
    lost = wait_err(a, r"connection lost \(", 10, "A's connection-lost line")
    check(re.search(r"reconnecting in 1 s \(attempt 1\)$", lost), f"first retry: {lost!r}")
    a.send("typed while reconnecting")
    back = wait_err(a, r"reconnected as ", 20, "A's reconnected line")
    check(back.startswith(f"chat-client: reconnected as {wa['user']['name']}; "),
          f"reconnected line {back!r}, want the same user {wa['user']['name']!r}")
    wait_until(lambda: len(welcomes(a)) == 2, 5, "A's second welcome")
    w2 = welcomes(a)[1]
    check(w2["user"]["id"] == wa["user"]["id"], f"A came back as user {w2['user']['id']}, "
          f"was {wa['user']['id']}")
    check(w2["session"] != wa["session"], "the same session id after a reconnect")
    # it asked for what came after the last id it had seen (?since=), and
    # printed the catch-up that followed the welcome
    m = re.search(r"; (\d+) messages? caught up since message (\d+)$", back)
    check(m, f"reconnected line {back!r} names no since")
    n, since = int(m.group(1)), int(m.group(2))
    check(since >= before_drop and since in printed_ids(a),
          f"since={since}, but A had printed up to {before_drop}")
    msgs = a.msgs()
    catchup = next((x for x in msgs[msgs.index(w2):] if x.get("type") == "history"), None)
    check(catchup is not None, "no history after the second welcome")
    ids = [int(x["id"]) for x in catchup["messages"]]
    check(all(x > since for x in ids), f"the catch-up after since={since} holds {ids}")
    check(n == len(ids), f"A says {n} caught up, its catch-up history has {len(ids)}")
    # the line typed while down went out with the fresh token
    mine = b.wait_msg(lambda m: is_text(m, "typed while reconnecting"), 15,
                      "the line A typed while reconnecting, at B")
    check(mine["user"]["id"] == wa["user"]["id"], f"posted as {mine['user']}")
    time.sleep(2)   # more live traffic after the reconnect
    b.send("last one")
    last = b.wait_msg(lambda m: is_text(m, "last one"), 15, "B's last post")
    a.wait_msg(lambda m: is_text(m, "last one"), 15, "B's last post at A")
    end = int(last["id"])
    got_a = [x for x in printed_ids(a) if start <= x <= end]
    got_b = [x for x in printed_ids(b) if start <= x <= end]
    twice = sorted({x for x in got_a if got_a.count(x) > 1})
    check(not twice, f"A printed ids twice: {twice}")
    check(set(got_a) == set(got_b),
          f"A lacks {sorted(set(got_b) - set(got_a))}, has more {sorted(set(got_a) - set(got_b))}")
    check(got_a == got_b, f"A printed them in another order: {got_a} vs B {got_b}")
    print(f"    {len(got_a)} messages, {n} of them caught up after the drop", flush=True)
    check(a.finish() == 0, f"A's exit status; stderr {a.err_lines[-5:]}")
    check(b.finish() == 0, "B's exit status")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def no_reconnect_exits_1_on_drop():
    d = start_chatd("rooms_client_noreconnect", *QUIET)
    a = JsonClient(d.url, "--no-reconnect")
    w = a.welcome()
    status, _, _ = http("DELETE", d.url + "api/rtc/" + w["session"])
    check(status == 204, f"DELETE answered {status}")
    check(a.exit_status(10) == 1, "exit status after a drop with --no-reconnect")
    check(any(ln.startswith("chat-client: connection lost: ") for ln in a.err_lines),
          f"stderr {a.err_lines}")
    check(not any("reconnect" in ln for ln in a.err_lines), f"stderr {a.err_lines}")
    check(len(welcomes(a)) == 1, "a second welcome")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def max_reconnects_gives_up():
    """chatd goes away: with --max-reconnects 2 the client tries after 1 s
    and 2 s, then exits 1 saying so."""
    d = start_chatd("rooms_client_maxreconnects", *QUIET)
    a = JsonClient(d.url, "--max-reconnects", "2")
    a.welcome()
    check(d.stop() == 0, "chatd exit status after SIGTERM")
    t0 = time.monotonic()
    check(a.exit_status(30) == 1, "exit status after the reconnects ran out")
    took = time.monotonic() - t0
    err = a.err_lines
    check(any(re.search(r"connection lost \(.*\); reconnecting in 1 s \(attempt 1\)$", ln)
              for ln in err), f"stderr {err}")
    check(any(re.search(r"reconnect failed \(.*\); reconnecting in 2 s \(attempt 2\)$", ln)
              for ln in err), f"stderr {err}")
    check(re.search(r"giving up after 2 reconnect attempts$", err[-1]), f"last line {err[-1]!r}")
    check(2.5 <= took <= 20 * SCALE, f"gave up {took:.1f} s after chatd stopped")


# --------------------------------------------------------------------------
# whispers and typed commands


@test(timeout=90)
def whisper_reaches_only_its_recipients():
    """A types /w B_ID text: A and B get the private message, C (in the same
    room) does not; a text-mode client of B's user shows it as
    NAME -> TO (private): text. // posts a line starting with /, an unknown
    command is refused, /quit ends input."""
    d = start_chatd("rooms_client_whisper", *QUIET)
    a, b, c = distinct_clients(d.url, 3)
    ua, ub = a.welcome()["user"], b.welcome()["user"]
    bt = Client(d.url, "--token", b.welcome()["token"])   # B's user, text mode
    wait_err(bt, r"you are ", 20, "the text client's welcome")
    a.send(f"/w {ub['id']} just between us")
    wa = a.wait_msg(lambda m: is_text(m, "just between us"), 15, "the whisper at A")
    wb = b.wait_msg(lambda m: is_text(m, "just between us"), 15, "the whisper at B")
    for m in (wa, wb):
        check(m.get("source") == "whisper", f"source {m.get('source')!r}")
        check([u["id"] for u in m.get("to", [])] == [ub["id"]], f"to {m.get('to')}")
        check(m["user"]["id"] == ua["id"], f"from {m['user']}")
    check(wa["id"] == wb["id"], f"ids differ: {wa['id']} {wb['id']}")
    wait_line(bt, f"{ua['name']} -> {ub['name']} (private): just between us")
    # typed commands: // and an unknown one
    a.send("//slashed")
    a.send("/shout nope")
    a.send("/w notanid hello")
    a.send("public after the whisper")
    c.wait_msg(lambda m: is_text(m, "public after the whisper"), 15, "A's public post at C")
    c.wait_msg(lambda m: is_text(m, "/slashed"), 1, "A's // post at C")
    check(not any(m.get("source") == "whisper" or m.get("text") == "just between us"
                  for m in c.msgs()), f"C saw the whisper: {c.msgs()}")
    check(not any("nope" in (m.get("text") or "") or "notanid" in (m.get("text") or "")
                  for m in c.msgs()), "a refused command was posted")
    wait_err(a, r"not sent: unknown command .*/shout nope", 5, "the unknown command refused")
    wait_err(a, r"not sent: not a whisper .*/w notanid hello", 5, "the bad whisper refused")
    # /quit ends input while stdin stays open
    a.send("/quit")
    check(a.exit_status(15) == 0, f"A's exit status after /quit: {a.err_lines[-3:]}")
    for x in (b, c, bt):
        check(x.finish() == 0, "exit status after end of input")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=90)
def whisper_to_nobody_here_is_refused():
    """A whisper to a user who is not in the room: NOT_FOUND, with its ref,
    on stderr; nothing printed."""
    d = start_chatd("rooms_client_whisper_nobody", *QUIET)
    a = JsonClient(d.url)
    ua = a.welcome()["user"]
    nobody = 1 if ua["id"] != 1 else 2
    a.send(f"/w {nobody} anyone there?")
    # (a draw may miss first by design: USER_FETCH_FAILED before the welcome)
    e = a.wait_msg(lambda m: m.get("type") == "error" and m.get("code") != "USER_FETCH_FAILED",
                   15, "the NOT_FOUND error")
    check(e.get("code") == "NOT_FOUND" and e.get("ref"), f"error {e}")
    wait_err(a, r"error NOT_FOUND: ", 5, "the error on stderr")
    check(not any(m.get("type") == "message" for m in a.msgs()), "a message after all")
    check(a.finish() == 0, "exit status")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


# --------------------------------------------------------------------------
# announcements, kicked, room_closed, pins


@test(timeout=90)
def announcement_kick_and_room_closed():
    """In a created room: an announcement prints as *** ANNOUNCEMENT
    (ROOM): text and a global one as (everyone); a kicked client says why
    and exits 1 without reconnecting; room_closed likewise."""
    d = start_chatd("rooms_client_owner", "--admin-key", ADMIN_KEY, *QUIET)
    first = JsonClient(d.url)
    token = first.welcome()["token"]
    created_room(d, "rc-club", token, secret="owner-pass")
    url = d.url + "?room=rc-club"
    k = JsonClient(url)
    uk = k.welcome()["user"]
    # the text client must be someone else, or the kick below ends it too
    # (the draw gives one of 10 users)
    for _ in range(30):
        t = Client(url)
        you = wait_err(t, r"you are ", 20, "the text client's welcome")
        if f"you are {uk['name']} " not in you:
            break
        t.finish()
    else:
        raise Failure("30 draws gave the text client the JSON client's user")
    status, body = api("POST", d.url + "api/rooms/rc-club/announce",
                       {"secret": "owner-pass", "text": "we meet at 8"})
    check(status == 202, f"announce: {status} {body}")
    wait_line(t, "*** ANNOUNCEMENT (rc-club): we meet at 8")
    an = k.wait_msg(lambda m: m.get("type") == "announcement", 10, "the announcement")
    check(an.get("room") == "rc-club" and an.get("text") == "we meet at 8", f"{an}")
    status, body = api("POST", d.url + "api/announce",
                       {"admin_key": ADMIN_KEY, "text": "restart at 22:00"})
    check(status == 202, f"global announce: {status} {body}")
    wait_line(t, "*** ANNOUNCEMENT (everyone): restart at 22:00")
    # kicked: status line, exit 1, no reconnect
    status, body = api("POST", d.url + "api/rooms/rc-club/kick",
                       {"secret": "owner-pass", "user_id": uk["id"]})
    check(status == 204, f"kick: {status} {body}")
    check(k.exit_status(15) == 1, "exit status after kicked")
    check(any(m.get("type") == "kicked" for m in k.msgs()), "no kicked frame printed")
    check(any(ln.startswith("chat-client: kicked from rc-club: ") for ln in k.err_lines),
          f"stderr {k.err_lines}")
    check(not any("reconnect" in ln for ln in k.err_lines), f"reconnected: {k.err_lines}")
    # room_closed
    status, body = api("DELETE", d.url + "api/rooms/rc-club", {"secret": "owner-pass"})
    check(status == 204, f"DELETE room: {status} {body}")
    check(t.proc.wait(15 * SCALE) == 1, "exit status after room_closed")
    check(any(ln.startswith("chat-client: room rc-club closed: ") for ln in t.err_lines),
          f"stderr {t.err_lines}")
    check(not any("reconnect" in ln for ln in t.err_lines), f"reconnected: {t.err_lines}")
    check(first.finish() == 0, "exit status")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=90)
def pin_sent_with_every_offer():
    """A room with a pin: without --pin the offer is refused (403, exit 1);
    with it chat-client joins, and after a drop it joins again (the pin
    goes with the reconnect's offer too)."""
    d = start_chatd("rooms_client_pin", "--admin-key", ADMIN_KEY, *QUIET)
    first = JsonClient(d.url)
    created_room(d, "rc-pinned", first.welcome()["token"], pin="1234")
    url = d.url + "?room=rc-pinned"
    no = JsonClient(url)
    check(no.exit_status(15) == 1, "exit status without the pin")
    check(any("HTTP 403" in ln for ln in no.err_lines), f"stderr {no.err_lines}")
    wrong = JsonClient(url, "--pin", "4321")
    check(wrong.exit_status(15) == 1, "exit status with a wrong pin")
    c = JsonClient(url, "--pin", "1234")
    w = c.welcome()
    check(w.get("room") == "rc-pinned", f"welcome room {w.get('room')}")
    status, _, _ = http("DELETE", d.url + "api/rtc/" + w["session"])
    check(status == 204, f"DELETE answered {status}")
    wait_err(c, r"reconnected as ", 20, "the reconnect into the pinned room")
    check(c.finish() == 0, "exit status")
    check(first.finish() == 0, "exit status")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=30)
def bad_options_exit_2():
    for args in (["--max-reconnects", "-1"], ["--max-reconnects", "x"], ["--pin", ""],
                 ["--pin", "a\nb"], ["--pin", "x" * 257]):
        c = Client("http://127.0.0.1:9/", *args)
        check(c.finish(10) == 2, f"exit status of chat-client {args}")


if __name__ == "__main__":
    run(fixtures=[harness.shared_jsonplaceholder()])
