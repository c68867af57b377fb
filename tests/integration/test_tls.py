#!/usr/bin/python3
"""Integration: chatd serving HTTPS (--tls-cert, --tls-key; PROTOCOL.md
section 2, "HTTPS"). A test CA and server certificates are made by each
test with openssl (tests/lib/testca.sh); every client here verifies the
server against that CA (Python's ssl, chat-client --cacert), none skips
verification. Everything on 127.0.0.1.

    /usr/bin/python3 tests/integration/test_tls.py [TEST...]
"""

import hashlib
import http.client as http_client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import (CHATD_BIN, Client, check, http, raw_http, run, start_chatd,  # noqa: E402
                     test, url_port, wait_until)

TESTCA = os.path.join(harness.ROOT, "tests", "lib", "testca.sh")
QUIET = ("--auto-post-max-ms", "600000")   # no auto post during a short test


class Certs:
    """A test CA in a temporary folder; make(NAME) adds a server certificate
    for 127.0.0.1 signed by it and returns (cert path, key path)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chatd-tls-")
        subprocess.run([TESTCA, self.dir], check=True, timeout=30)
        self.ca = os.path.join(self.dir, "ca.pem")

    def make(self, name):
        subprocess.run([TESTCA, self.dir, name], check=True, timeout=30)
        return os.path.join(self.dir, f"{name}.pem"), os.path.join(self.dir, f"{name}.key")

    def context(self):
        return ssl.create_default_context(cafile=self.ca)


def fingerprint_of_file(pem_path):
    """SHA-256 of the first certificate in a PEM file (DER)."""
    with open(pem_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def served_fingerprint(port, ctx):
    """SHA-256 of the certificate a new, verified connection is served."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def replace(src, dst):
    """Copies src over dst the way certificate renewers do: a new file
    renamed into place."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def start_tls(name, certs, cert, key, *args):
    """chatd with the live certificate and key at fixed paths (copies), so a
    test can replace them and send SIGHUP."""
    live_cert = os.path.join(certs.dir, "live.pem")
    live_key = os.path.join(certs.dir, "live.key")
    replace(cert, live_cert)
    replace(key, live_key)
    d = start_chatd(name, "--tls-cert", live_cert, "--tls-key", live_key, *QUIET, *args,
                    cafile=certs.ca)
    return d, live_cert, live_key


def run_chatd_expect_exit(*args, env=None):
    """Runs chatd expecting it to exit at once; returns (status, stderr)."""
    data = tempfile.mkdtemp(prefix="chatd-tls-data-")
    e = dict(os.environ)
    e.update(env or {})
    try:
        p = subprocess.run([CHATD_BIN, "--listen", "127.0.0.1:0", "--data-dir", data,
                            "--api-url", "http://127.0.0.1:9", *args],
                           capture_output=True, text=True, timeout=20, env=e)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return p.returncode, p.stderr.strip()


def last_line(text):
    return text.splitlines()[-1] if text else ""


# --------------------------------------------------------------------------
# tests


@test(timeout=60)
def https_health_verified_with_the_test_ca():
    certs = Certs()
    cert, key = certs.make("server-a")
    d, _, _ = start_tls("tls_health", certs, cert, key)
    check(d.url.startswith("https://127.0.0.1:"), f"listening line names {d.url}, not https")
    status, _, body = http("GET", d.url + "api/health", context=certs.context())
    check(status == 200, f"/api/health over HTTPS: {status} {body[:200]}")
    status, _, _ = http("GET", d.url + ".well-known/jwks.json", context=certs.context())
    check(status == 200, f"JWKS over HTTPS: {status}")
    status, _, page = http("GET", d.url, context=certs.context())
    check(status == 200 and b"<html" in page.lower(), f"the web client over HTTPS: {status}")
    # Verification is real: without the test CA the same request fails.
    try:
        http("GET", d.url + "api/health", context=ssl.create_default_context())
        check(False, "a client without the test CA accepted the certificate")
    except Exception as e:  # urllib wraps the SSL error in URLError
        check("CERTIFICATE_VERIFY_FAILED" in str(e), f"unexpected error without the CA: {e}")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


def s_client(port, version, ca):
    """What openssl s_client -VERSION negotiates with 127.0.0.1:port: the
    "Cipher is ..." of its new session ("(NONE)" when refused)."""
    p = subprocess.run(["openssl", "s_client", f"-{version}", "-CAfile", ca,
                        "-connect", f"127.0.0.1:{port}"],
                       input="", capture_output=True, text=True, timeout=20)
    for line in p.stdout.splitlines():
        if "Cipher is" in line:
            return line.split("Cipher is", 1)[1].strip()
    return "(NONE)"


@test(timeout=60)
def tls_1_2_and_1_3_only():
    certs = Certs()
    cert, key = certs.make("server-a")
    d, _, _ = start_tls("tls_versions", certs, cert, key)
    port = url_port(d.url)
    for version in ("tls1_2", "tls1_3"):
        got = s_client(port, version, certs.ca)
        check(got != "(NONE)", f"{version} refused")
    for version in ("tls1", "tls1_1"):
        got = s_client(port, version, certs.ca)
        check(got == "(NONE)", f"{version} accepted: {got}")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def plain_http_to_the_tls_port_fails_cleanly():
    certs = Certs()
    cert, key = certs.make("server-a")
    d, _, _ = start_tls("tls_plain", certs, cert, key)
    port = url_port(d.url)
    t0 = time.monotonic()
    got = raw_http(port, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)
    took = time.monotonic() - t0
    check(not got.startswith(b"HTTP/"), f"plain HTTP got an HTTP answer: {got[:80]!r}")
    check(took < 4, f"plain HTTP to the TLS port was not closed promptly ({took:.1f} s)")
    # many of them change nothing for TLS clients
    for _ in range(20):
        raw_http(port, b"GET / HTTP/1.0\r\n\r\n", timeout=5)
    status, _, _ = http("GET", d.url + "api/health", context=certs.context())
    check(status == 200, f"/api/health after plain HTTP attempts: {status}")
    check(d.alive(), "chatd died")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=90)
def sighup_reloads_the_certificate_and_keeps_it_on_a_bad_file():
    certs = Certs()
    cert_a, key_a = certs.make("server-a")
    cert_b, key_b = certs.make("server-b")
    cert_c, key_c = certs.make("server-c")
    d, live_cert, live_key = start_tls("tls_reload", certs, cert_a, key_a)
    port, ctx = url_port(d.url), certs.context()
    check(served_fingerprint(port, ctx) == fingerprint_of_file(cert_a), "not serving A at start")

    # A keep-alive connection opened with A outlives the reload.
    kept = http_client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    kept.request("GET", "/api/health")
    r = kept.getresponse()
    r.read()
    check(r.status == 200, f"kept connection: {r.status}")
    kept_fp = hashlib.sha256(kept.sock.getpeercert(binary_form=True)).hexdigest()

    replace(cert_b, live_cert)
    replace(key_b, live_key)
    d.proc.send_signal(1)  # SIGHUP
    want_b = fingerprint_of_file(cert_b)
    wait_until(lambda: served_fingerprint(port, ctx) == want_b, 10, "new connections serve B")
    check("SIGHUP: TLS certificate reloaded" in d.tail(10), f"no reload line: {d.tail(5)}")
    kept.request("GET", "/api/health")
    r = kept.getresponse()
    r.read()
    check(r.status == 200 and kept_fp == fingerprint_of_file(cert_a),
          f"the connection opened before the reload: {r.status}")
    kept.close()

    # A broken certificate file: logged, B still served.
    with open(live_cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    d.proc.send_signal(1)
    wait_until(lambda: "kept the previous TLS certificate" in d.tail(5), 10, "the failed reload logged")
    check(live_cert in d.tail(3), f"the failed reload does not name the file: {d.tail(3)}")
    check(served_fingerprint(port, ctx) == want_b, "a broken file changed the served certificate")

    # C's certificate with B's key (a renewal half done): refused, B kept.
    replace(cert_c, live_cert)
    d.proc.send_signal(1)
    wait_until(lambda: "is not the key of the certificate" in d.tail(5), 10,
               "the mismatched key logged")
    check(served_fingerprint(port, ctx) == want_b, "a mismatched key changed the certificate")
    # and once the key follows, C is served
    replace(key_c, live_key)
    d.proc.send_signal(1)
    want_c = fingerprint_of_file(cert_c)
    wait_until(lambda: served_fingerprint(port, ctx) == want_c, 10, "new connections serve C")
    status, _, _ = http("GET", d.url + "api/health", context=ctx)
    check(status == 200, f"/api/health after the reloads: {status}")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def sighup_without_tls_changes_nothing():
    d = start_chatd("tls_sighup_plain", *QUIET)
    d.proc.send_signal(1)
    wait_until(lambda: "nothing to reload" in d.tail(5), 10, "the SIGHUP line")
    status, _ = d.health()
    check(status == 200 and d.alive(), f"after SIGHUP: {status}")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def tls_flags_both_or_neither_and_files_must_be_usable():
    certs = Certs()
    cert, key = certs.make("server-a")
    other_cert, other_key = certs.make("server-b")
    rc, err = run_chatd_expect_exit("--tls-cert", cert)
    check(rc == 2 and "--tls-key" in last_line(err), f"--tls-cert alone: {rc} {err!r}")
    rc, err = run_chatd_expect_exit("--tls-key", key)
    check(rc == 2 and "--tls-cert" in last_line(err), f"--tls-key alone: {rc} {err!r}")
    rc, err = run_chatd_expect_exit(env={"CHATD_TLS_CERT": cert})
    check(rc == 2 and "--tls-key" in last_line(err), f"CHATD_TLS_CERT alone: {rc} {err!r}")
    missing = os.path.join(certs.dir, "nope.pem")
    rc, err = run_chatd_expect_exit("--tls-cert", missing, "--tls-key", key)
    check(rc == 1 and missing in last_line(err), f"missing certificate: {rc} {err!r}")
    rc, err = run_chatd_expect_exit("--tls-cert", cert, "--tls-key", cert)
    check(rc == 1 and "key" in last_line(err) and cert in last_line(err),
          f"a certificate as the key: {rc} {err!r}")
    rc, err = run_chatd_expect_exit("--tls-cert", key, "--tls-key", key)
    check(rc == 1 and "certificate" in last_line(err), f"a key as the certificate: {rc} {err!r}")
    rc, err = run_chatd_expect_exit("--tls-cert", cert, "--tls-key", other_key)
    check(rc == 1 and other_key in last_line(err) and cert in last_line(err),
          f"a key that is not the certificate's: {rc} {err!r}")
    del other_cert


@test(timeout=90)
def chat_client_over_https_with_cacert():
    certs = Certs()
    cert, key = certs.make("server-a")
    d, _, _ = start_tls("tls_client", certs, cert, key)
    check(d.url.startswith("https://"), f"not https: {d.url}")
    a = Client(d.url, "--cacert", certs.ca)
    b = Client(d.url, "--cacert", certs.ca)
    a.wait_connected()
    b.wait_connected()
    a.send("hello over https")
    wait_until(lambda: any(line.endswith(": hello over https") for line in b.lines), 15,
               "B prints A's message")
    a.finish()
    b.finish()
    # Without the CA, chat-client refuses the server's certificate.
    c = Client(d.url, "--no-reconnect")
    rc = c.proc.wait(30)
    errs = " ".join(c.err_lines)
    check(rc == 1 and "certificate" in errs.lower(), f"chat-client without --cacert: {rc} {errs}")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


if __name__ == "__main__":
    run(fixtures=[harness.shared_jsonplaceholder()])
