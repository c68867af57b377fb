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
  hang        reads the request and never answers (until killed)
  oneuser     a valid API with a single user: /users is [user 1], /users/1
              answers it, /users/2 (and every other id) 404, /posts 3 posts

A refused connection needs no server: use an unused port.

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

MODES = ("500", "truncated", "wrongshape", "badjson", "huge", "hang", "oneuser")

count_lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultapi"
    mode = "500"

    def log_message(self, fmt, *args):  # quiet: tests read stdout
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        global count
        if self.path == "/__count":
            with count_lock:
                n = count
            self.send_json(200, {"count": n})
            return
        with count_lock:
            count += 1
        mode = self.mode
        path = self.path.split("?", 1)[0].rstrip("/")
        if mode == "500":
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
            while not self.server.stopping:
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
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--parent", type=int, default=0)
    args = ap.parse_args()

    Handler.mode = args.mode
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
