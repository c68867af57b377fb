#!/usr/bin/python3
"""faultapi — a stand-in for JSONPlaceholder that misbehaves on purpose.

Only for the faults the real server (npm `jsonplaceholder`) cannot produce
on demand; everything else is tested against the real one. One fault per
process, chosen with --mode:

  500         every request answers 500 with a JSON error body
  truncated   200 with a Content-Length larger than what is sent, then close
  wrongshape  200 with valid JSON of the wrong shape (/users an object,
              /users/N an array, /posts a list of posts missing fields)
  badjson     200 with a body that is not JSON
  huge        200 with a body of 2 MiB (over the client's 1 MiB cap)
  hang        reads the request and never answers (until killed, or until
              /__fault changes the mode)
  oneuser     a valid API with a single user: /users is [user 1], /users/1
              answers it, /users/2 (and every other id) 404, /posts 3 posts
  404         every request answers 404 with body {}
  none        no fault (only with --upstream: every request is passed on)

A refused connection needs no server: use an unused port (or stop this one
and start it again on the same port).

Proxy mode (--upstream URL, the real JSONPlaceholder of
scripts/jsonplaceholder.sh): requests outside the fault's scope, and every
request in mode `none`, are passed on to the real server and its answer is
relayed unchanged, so the data is the real data and only the fault is
injected. --scope chooses which requests the fault hits: `all` (default),
`load` (the lists /users and /posts chatd loads at start) or `user` (the
single-user fetches /users/{id} of a draw). In `oneuser` mode (whatever
the scope) /users is the real first user alone, /users/1 and /posts are
passed on and every other /users/{id} answers 404 {}. Without --upstream
every request is in scope and the built-in data above is used.

Control (for tests that switch faults mid-run):
  GET /__fault?mode=M&scope=S  sets the fault (either part may be left out)
                               and answers {"mode": M, "scope": S}
  GET /__log                   answers the requests since start (or since
                               the last /__log?clear=1) as [[path, faulted]]
A request hanging in `hang` mode ends (the connection closes, no answer)
once the mode changes.

Listens on 127.0.0.1 only. --port 0 picks a free port; the port is printed
as the first line on stdout, after the socket listens, so a test can read it
and connect at once. --parent PID makes the server exit when that process is
gone, so a crashed test leaves nothing behind. Every request is counted;
GET /__count answers the number (not counting itself).

Python 3 standard library only: run with /usr/bin/python3.
"""

import argparse
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER1 = {
    "id": 1,
    "name": "Leanne Graham",
    "username": "Bret",
    "email": "Sincere@april.biz",
    "address": {"street": "Kulas Light", "city": "Gwenborough"},
}
POSTS = [
    {"userId": 1, "id": i, "title": "title %d" % i, "body": "body %d" % i}
    for i in (1, 2, 3)
]

MODES = ("500", "truncated", "wrongshape", "badjson", "huge", "hang", "oneuser", "404", "none")
SCOPES = ("all", "load", "user")

count_lock = threading.Lock()
count = 0
requests_seen = []  # [path, faulted], under count_lock


def in_scope(scope, path):
    if scope == "load":
        return path in ("/users", "/posts")
    if scope == "user":
        return re.fullmatch(r"/users/[^/]+", path) is not None
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultapi"
    mode = "500"
    scope = "all"
    upstream = None  # base URL of the real server (proxy mode)

    def log_message(self, fmt, *args):  # quiet: tests read stdout
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_raw(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def control(self, path, query):
        args = dict(urllib.parse.parse_qsl(query))
        if path == "/__fault":
            mode, scope = args.get("mode", Handler.mode), args.get("scope", Handler.scope)
            if mode not in MODES or scope not in SCOPES or (mode == "none" and not self.upstream):
                self.send_json(400, {"error": "bad mode or scope"})
                return
            Handler.mode, Handler.scope = mode, scope
            self.send_json(200, {"mode": mode, "scope": scope})
        else:  # /__log
            with count_lock:
                seen = list(requests_seen)
                if args.get("clear"):
                    requests_seen.clear()
            self.send_json(200, seen)

    def pass_on(self):
        """Relays the request to the real server and its answer back."""
        try:
            with urllib.request.urlopen(self.upstream + self.path, timeout=10) as r:
                status, ctype, body = r.status, r.headers.get("Content-Type"), r.read()
        except urllib.error.HTTPError as e:
            status, ctype, body = e.code, e.headers.get("Content-Type"), e.read()
        except OSError as e:
            self.send_json(502, {"error": f"upstream: {e}"})
            return
        self.send_raw(status, ctype or "application/json", body)

    def do_GET(self):
        global count
        path, _, query = self.path.partition("?")
        if self.path == "/__count":
            with count_lock:
                n = count
            self.send_json(200, {"count": n})
            return
        if path in ("/__fault", "/__log"):
            self.control(path, query)
            return
        mode = self.mode
        path = path.rstrip("/")
        # oneuser is one consistent directory: it ignores the scope.
        faulted = mode != "none" and (self.upstream is None or mode == "oneuser"
                                      or in_scope(self.scope, path))
        with count_lock:
            count += 1
            requests_seen.append([path, faulted])
        if not faulted:
            self.pass_on()
            return
        if mode == "oneuser" and self.upstream:
            self.one_user(path)
        elif mode == "404":
            self.send_json(404, {})
        elif mode == "500":
            self.send_json(500, {"error": "injected failure"})
        elif mode == "truncated":
            body = json.dumps([USER1]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + 1000))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif mode == "wrongshape":
            if path == "/users":
                self.send_json(200, {"users": [USER1]})
            elif path.startswith("/users/"):
                self.send_json(200, [USER1])
            else:
                self.send_json(200, [{"id": 1, "userId": "one", "title": 7}])
        elif mode == "badjson":
            body = b"<html>not json</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif mode == "huge":
            body = b"[" + b"1," * (1 << 20) + b"1]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass  # the client hung up at its cap, as it should
        elif mode == "hang":
            # Never answer; the client's timeout must end the request.
            while not self.server.stopping and Handler.mode == "hang":
                time.sleep(0.05)
            self.close_connection = True
        elif mode == "oneuser":
            if path == "/users":
                self.send_json(200, [USER1])
            elif path == "/users/1":
                self.send_json(200, USER1)
            elif path == "/posts":
                self.send_json(200, POSTS)
            elif re.fullmatch(r"/users/\d+", path):
                self.send_json(404, {})
            else:
                self.send_json(404, {})


    def one_user(self, path):
        """Proxy mode: the real first user is the only one."""
        if path == "/users":
            with urllib.request.urlopen(self.upstream + "/users", timeout=10) as r:
                users = json.loads(r.read())
            self.send_json(200, users[:1])
        elif path == "/users/1" or not re.fullmatch(r"/users/[^/]+", path):
            self.pass_on()
        else:
            self.send_json(404, {})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    stopping = False

    def handle_error(self, request, client_address):
        pass  # a client hanging up mid-reply is the point of some modes


def watch_parent(pid, server):
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            server.stopping = True
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description="misbehaving JSONPlaceholder stand-in")
    ap.add_argument("--mode", choices=MODES, default=None)
    ap.add_argument("--scope", choices=SCOPES, default="all")
    ap.add_argument("--upstream", default=None, help="the real server's base URL (proxy mode)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--parent", type=int, default=0)
    args = ap.parse_args()
    if args.mode is None:
        args.mode = "none" if args.upstream else "500"
    if args.mode == "none" and not args.upstream:
        ap.error("--mode none needs --upstream")

    Handler.mode = args.mode
    Handler.scope = args.scope
    Handler.upstream = args.upstream.rstrip("/") if args.upstream else None
    server = Server(("127.0.0.1", args.port), Handler)
    if args.parent:
        threading.Thread(target=watch_parent, args=(args.parent, server), daemon=True).start()
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping = True


if __name__ == "__main__":
    sys.exit(main())
