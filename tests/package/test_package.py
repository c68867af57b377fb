#!/usr/bin/python3
"""The install and the Debian package (issue 13, items 4 and 5).

    /usr/bin/python3 tests/package/test_package.py [TEST...]

man_pages_list_every_option   each man page (make man: man/*.in and the
                              program's --help) has an OPTIONS entry for
                              every option its program's --help lists, and
                              an ENVIRONMENT entry for every variable;
                              groff and man find nothing to warn about
make_install_and_uninstall    make install DESTDIR=... (PREFIX /usr/local)
                              puts exactly the expected files there, with
                              the unit's paths adjusted; the installed chatd
                              runs; make uninstall removes them all but an
                              environment file that was changed
deb_builds_lintian_clean      make deb (scripts/deb.sh: dpkg-buildpackage,
                              then lintian with errors fatal) gives
                              chatd_VERSION_ARCH.deb with the libraries in
                              Depends, the files in place (dpkg -x into a
                              scratch root), /etc/default/chatd a 0600
                              conffile
deb_installs_runs_and_purges  (root, no systemd running: the postinst would
                              start the service) dpkg -i on this machine: the chatd
                              system user, /var/lib/chatd; the installed unit
                              passes systemd-analyze verify; the unit's
                              ExecStart run as systemd would run it (no
                              systemd here: its User, Environment=,
                              EnvironmentFile=, WorkingDirectory, UMask,
                              StateDirectory, LimitNOFILE, under setpriv
                              with no new privileges and no capabilities),
                              under strace: /api/health 200 and a message
                              from the installed chat-client comes back;
                              every system call it made is allowed by the
                              unit's SystemCallFilter, every socket family
                              by RestrictAddressFamilies, every file it
                              wrote is in its StateDirectory (the rest is
                              read-only under ProtectSystem=strict); SIGTERM
                              exits 0; dpkg -P leaves no file of it (the
                              chatd user stays, as Debian policy has it; the
                              test then removes it if it made it)

The environment file is the packaged one; the test adds two settings, as a
drop-in would: CHATD_LISTEN on a free port (8080 may be taken) and
JSONPLACEHOLDER_URL, the run's local JSONPlaceholder.
"""

import glob
import grp
import os
import pwd
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from harness import (LOG_DIR, Failure, Skip, check, free_port, http,  # noqa: E402
                     jsonplaceholder, run, shared_jsonplaceholder, test, wait_until)

BUILD = os.path.join(ROOT, "build")
PROGRAMS = {"chatd": "8", "chat-client": "1", "chat-bench": "1"}


def sh(cmd, timeout=120, check_rc=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
    if check_rc and p.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {p.returncode}: "
                      f"{(p.stdout + p.stderr).strip()[-800:]}")
    return p


def help_options(binary):
    """Option terms (each alternative) and env variables of BINARY --help."""
    text = sh([binary, "--help"]).stdout
    flags, env = [], []
    for line in text.splitlines():
        m = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if m:
            flags += [alt.split(" ")[0] for alt in m.group(1).split(", ")]
        m = re.match(r"^\s+env (\S+), default", line)
        if m:
            env.append(m.group(1))
    return flags, env


def rendered(page):
    p = sh(["man", "--warnings", "-l", page], env=dict(os.environ, MANWIDTH="300"))
    check(not p.stderr.strip(), f"man --warnings {page}: {p.stderr.strip()[:300]}")
    return p.stdout


def section(text, name):
    m = re.search(rf"^{name}\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)", text, re.M | re.S)
    check(m, f"no {name} section")
    return m.group(1)


@test(timeout=120)
def man_pages_list_every_option():
    sh(["make", "--no-print-directory", "man"], timeout=110)
    for prog, sec in PROGRAMS.items():
        page = os.path.join(BUILD, "man", f"{prog}.{sec}")
        g = sh(["groff", "-man", "-ww", "-z", page])
        check(not g.stderr.strip(), f"groff warns on {prog}.{sec}: {g.stderr.strip()[:300]}")
        with open(page) as f:
            src = f.read()
        check(not re.search(r"@[A-Z_]+(:[^@\n]*)?@", src), f"{prog}.{sec}: a placeholder is left")
        text = rendered(page)
        check(f"{prog.upper()}({sec})" in text, f"{prog}.{sec}: no {prog.upper()}({sec}) title")
        opts = section(text, "OPTIONS")
        terms = set()
        for line in opts.splitlines():
            m = re.match(r"^ {7}(-\S.*?)(?:\s{2,}|$)", line)
            if m:
                terms.update(alt.split(" ")[0] for alt in m.group(1).split(", "))
        flags, env = help_options(os.path.join(BUILD, prog))
        check(flags, f"{prog} --help lists no option")
        missing = [f for f in flags if f not in terms]
        check(not missing, f"{prog}.{sec} OPTIONS lacks {missing}")
        extra = sorted(terms - set(flags))
        check(not extra, f"{prog}.{sec} OPTIONS has {extra}, which --help does not")
        if env:
            envs = section(text, "ENVIRONMENT")
            missing = [v for v in env if not re.search(rf"^ {{7}}{v}$", envs, re.M)]
            check(not missing, f"{prog}.{sec} ENVIRONMENT lacks {missing}")
        for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "SEE ALSO"):
            section(text, name)
        print(f"    {prog}.{sec}: {len(flags)} options"
              + (f", {len(env)} variables" if env else ""), flush=True)
    chatd = rendered(os.path.join(BUILD, "man", "chatd.8"))
    for name in ("FILES", "SIGNALS"):
        section(chatd, name)


EXPECTED_INSTALL = {
    "usr/local/sbin/chatd": 0o755,
    "usr/local/bin/chat-client": 0o755,
    "usr/local/bin/chat-bench": 0o755,
    "usr/local/share/man/man8/chatd.8": 0o644,
    "usr/local/share/man/man1/chat-client.1": 0o644,
    "usr/local/share/man/man1/chat-bench.1": 0o644,
    "usr/local/lib/systemd/system/chatd.service": 0o644,
    "usr/local/lib/sysusers.d/chatd.conf": 0o644,
    "etc/default/chatd": 0o600,
}


def files_under(d):
    return sorted(os.path.relpath(os.path.join(dp, f), d)
                  for dp, _, fs in os.walk(d) for f in fs)


@test(timeout=180)
def make_install_and_uninstall():
    dest = tempfile.mkdtemp(prefix="chatd-install-")
    try:
        sh(["make", "--no-print-directory", "install", f"DESTDIR={dest}"], timeout=170)
        got = files_under(dest)
        check(got == sorted(EXPECTED_INSTALL),
              f"installed {got}, expected {sorted(EXPECTED_INSTALL)}")
        for rel, mode in EXPECTED_INSTALL.items():
            m = stat.S_IMODE(os.stat(os.path.join(dest, rel)).st_mode)
            check(m == mode, f"{rel} has mode {m:o}, not {mode:o}")
        with open(os.path.join(dest, "usr/local/lib/systemd/system/chatd.service")) as f:
            unit = f.read()
        check("\nExecStart=/usr/local/sbin/chatd\n" in unit, "unit's ExecStart is not PREFIX's")
        check("\nEnvironmentFile=-/etc/default/chatd\n" in unit, "unit's EnvironmentFile")
        with open(os.path.join(dest, "usr/local/share/man/man8/chatd.8")) as f:
            check("/usr/local/sbin/chatd" in f.read(), "chatd(8) does not name PREFIX's path")
        p = sh([os.path.join(dest, "usr/local/sbin/chatd"), "--help"])
        check("--listen" in p.stdout, "the installed chatd --help")
        # an administrator's settings survive a reinstall and the uninstall
        env_file = os.path.join(dest, "etc/default/chatd")
        with open(env_file, "a") as f:
            f.write("CHATD_ADMIN_KEY=mine\n")
        p = sh(["make", "--no-print-directory", "install", f"DESTDIR={dest}"], timeout=60)
        check("keeping" in p.stdout, "make install over a changed env file did not keep it")
        sh(["make", "--no-print-directory", "uninstall", f"DESTDIR={dest}"], timeout=60)
        check(files_under(dest) == ["etc/default/chatd"],
              f"after make uninstall: {files_under(dest)}")
        with open(env_file) as f:
            check("CHATD_ADMIN_KEY=mine" in f.read(), "the changed env file was lost")
        os.remove(env_file)
        sh(["make", "--no-print-directory", "install", f"DESTDIR={dest}"], timeout=60)
        sh(["make", "--no-print-directory", "uninstall", f"DESTDIR={dest}"], timeout=60)
        check(files_under(dest) == [], f"after make uninstall: {files_under(dest)}")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def deb_version():
    return sh(["dpkg-parsechangelog", "-S", "Version"]).stdout.strip()


def deb_file():
    arch = sh(["dpkg-architecture", "-qDEB_HOST_ARCH"]).stdout.strip()
    return os.path.join(BUILD, "deb", f"chatd_{deb_version()}_{arch}.deb")


def build_deb():
    """make deb; returns its output."""
    start = time.monotonic()
    p = sh(["make", "--no-print-directory", "deb"], timeout=400)
    print(f"    make deb: {time.monotonic() - start:.0f} s", flush=True)
    return p.stdout


def built_deb():
    """The .deb of this tree: the one the previous test made, else made now."""
    path = deb_file()
    if not os.path.exists(path):
        build_deb()
    return path


@test(timeout=420)
def deb_builds_lintian_clean():
    if not shutil.which("dpkg-buildpackage") or not shutil.which("lintian"):
        if os.geteuid() != 0:
            raise Skip("dpkg-dev and lintian missing, and not root to install them")
    out = build_deb()
    path = deb_file()
    check(out.strip().splitlines()[-1] == os.path.relpath(path, ROOT),
          f"make deb did not end with the package's path: {out.strip()[-300:]}")
    check(os.path.exists(path), f"no {path}")
    for line in out.splitlines():
        if line.startswith(("deb: lintian", "    W:", "deb: built")):
            print("    " + line, flush=True)
    with open(os.path.join(BUILD, "deb", "lintian.log")) as f:
        errors = [line for line in f if line.startswith("E:")]
    check(not errors, f"lintian errors: {errors}")
    fields = {k: sh(["dpkg-deb", "-f", path, k]).stdout.strip()
              for k in ("Package", "Version", "Architecture", "Depends")}
    check(fields["Package"] == "chatd" and fields["Version"] == deb_version(), f"{fields}")
    for lib in ("adduser", "libc6", "libnice10", "libusrsctp2", "libssl3", "libmicrohttpd12",
                "libjansson4", "libcurl4", "libpq5", "libsqlite3-0", "libglib2.0-0",
                "libnats3.4"):
        check(re.search(rf"(^|, ){re.escape(lib)}( |,|$)", fields["Depends"]),
              f"Depends lacks {lib}: {fields['Depends']}")
    ctl = tempfile.mkdtemp(prefix="chatd-deb-ctl-")
    root = tempfile.mkdtemp(prefix="chatd-deb-root-")
    try:
        sh(["dpkg-deb", "-e", path, ctl])
        with open(os.path.join(ctl, "conffiles")) as f:
            check(f.read().split() == ["/etc/default/chatd"], "conffiles is not the env file")
        for script in ("postinst", "postrm", "prerm"):
            check(os.path.exists(os.path.join(ctl, script)), f"no {script}")
        with open(os.path.join(ctl, "postinst")) as f:
            post = f.read()
        check("adduser --system" in post and "deb-systemd-helper" in post,
              "postinst lacks the user or the unit's enable")
        sh(["dpkg", "-x", path, root])
        want = {"usr/sbin/chatd": 0o755, "usr/bin/chat-client": 0o755,
                "usr/bin/chat-bench": 0o755, "usr/share/man/man8/chatd.8.gz": 0o644,
                "usr/share/man/man1/chat-client.1.gz": 0o644,
                "usr/share/man/man1/chat-bench.1.gz": 0o644,
                "lib/systemd/system/chatd.service": 0o644, "etc/default/chatd": 0o600,
                "usr/lib/sysusers.d/chatd.conf": 0o644,
                "usr/share/doc/chatd/copyright": 0o644}
        for rel, mode in want.items():
            full = os.path.join(root, rel)
            check(os.path.exists(full), f"the package has no /{rel}")
            m = stat.S_IMODE(os.stat(full).st_mode)
            check(m == mode, f"/{rel} has mode {m:o}, not {mode:o}")
        with open(os.path.join(root, "lib/systemd/system/chatd.service")) as f:
            check("\nExecStart=/usr/sbin/chatd\n" in f.read(), "the unit's ExecStart")
        packaged = help_options(os.path.join(root, "usr/sbin/chatd"))
        check(packaged == help_options(os.path.join(BUILD, "chatd")),
              "the packaged chatd's options differ from build/chatd's")
    finally:
        shutil.rmtree(ctl, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


# --- the unit, as systemd would run it -------------------------------------

def unit_service(path):
    """[Service] of a unit file: {key: [values]} (in order)."""
    out, in_service = {}, False
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                in_service = line == "[Service]"
                continue
            if in_service:
                k, _, v = line.partition("=")
                out.setdefault(k, []).append(v)
    return out


def env_assignments(text):
    """KEY=VALUE words of an Environment= line (no quoting used in ours)."""
    return dict(w.split("=", 1) for w in text.split())


def env_file(path):
    """As systemd reads an EnvironmentFile: comments, blank lines, quotes."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            k, _, v = line.partition("=")
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            env[k.strip()] = v
    return env


def syscall_set(*groups):
    """The system calls of systemd's named sets, expanded."""
    names, todo, seen = set(), list(groups), set()
    while todo:
        g = todo.pop()
        if g in seen:
            continue
        seen.add(g)
        p = sh(["systemd-analyze", "syscall-filter", g])
        for line in p.stdout.splitlines()[1:]:
            w = line.strip()
            if not w or w.startswith("#"):
                continue
            if w.startswith("@"):
                todo.append(w)
            else:
                names.add(w)
    return names


def allowed_syscalls(filters):
    allow = set()
    for f in filters:
        deny = f.startswith("~")
        words = f.lstrip("~").split()
        calls = set()
        for w in words:
            calls |= syscall_set(w) if w.startswith("@") else {w}
        allow = allow - calls if deny else allow | calls
    return allow


def installed_version(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", pkg],
                       capture_output=True, text=True)
    return p.stdout if p.returncode == 0 and "install ok installed" in p.stdout else None


TRACE_DIRS = ("/etc", "/var/lib", "/lib/systemd", "/usr/sbin", "/usr/bin", "/usr/lib",
              "/usr/share/man", "/usr/share/doc", "/run")


def chatd_paths():
    """Every path named like the package under the places it installs to."""
    out = set()
    for d in TRACE_DIRS:
        for dp, dns, fns in os.walk(d):
            for n in dns + fns:
                if "chatd" in n or "chat-client" in n or "chat-bench" in n:
                    out.add(os.path.join(dp, n))
    return out


def dpkg(*args, timeout=180):
    """dpkg, retried while another dpkg holds the lock (up to a minute)."""
    deadline = time.monotonic() + 60
    while True:
        p = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        locked = "lock" in p.stderr and ("dpkg frontend" in p.stderr or "locked" in p.stderr)
        if p.returncode == 0 or not locked or time.monotonic() > deadline:
            return p
        time.sleep(2)


@test(timeout=420)
def deb_installs_runs_and_purges():
    if os.geteuid() != 0:
        raise Skip("dpkg -i needs root")
    if os.path.isdir("/run/systemd/system"):
        # the postinst would start the real service (it does on any install);
        # this test runs the unit's ExecStart itself, for machines without
        # systemd (this project's and CI's)
        raise Skip("systemd runs here: dpkg -i would start chatd.service")
    if installed_version("chatd"):
        raise Skip(f"a chatd package is installed here already ({installed_version('chatd')})")
    path = built_deb()
    user_before = _getpw("chatd")
    group_before = _getgr("chatd")
    before = chatd_paths()
    try:
        try:
            p = dpkg("-i", path)
            check(p.returncode == 0, f"dpkg -i: {(p.stdout + p.stderr).strip()[-800:]}")
            _check_installed()
            _run_as_the_unit()
        finally:
            p = dpkg("-P", "chatd")
            purge_out = (p.stdout + p.stderr).strip()
            user_kept = _getpw("chatd") is not None
        check(p.returncode == 0, f"dpkg -P: {purge_out[-800:]}")
        check(not installed_version("chatd"), "chatd still installed after dpkg -P")
        # Debian keeps system users on purge; the package does too.
        check(user_kept, "dpkg -P removed the chatd user (policy: keep it)")
    finally:
        # the machine as it was: the user goes if this test made it
        if user_before is None and _getpw("chatd") is not None:
            subprocess.run(["deluser", "--system", "--quiet", "chatd"], capture_output=True)
        if group_before is None and _getgr("chatd") is not None:
            subprocess.run(["delgroup", "--system", "--quiet", "chatd"], capture_output=True)
    left = sorted(chatd_paths() - before)
    check(not left, f"left after dpkg -P: {left}")
    check(_getpw("chatd") == user_before and _getgr("chatd") == group_before,
          "the chatd user or group is not as before the test")


def _getpw(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _getgr(name):
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def _check_installed():
    pw = _getpw("chatd")
    check(pw is not None, "no chatd user after dpkg -i")
    check(pw.pw_uid < 1000, f"chatd is not a system user (uid {pw.pw_uid})")
    check(pw.pw_dir == "/var/lib/chatd", f"chatd's home is {pw.pw_dir}")
    check(pw.pw_shell.endswith("nologin") or pw.pw_shell == "/bin/false",
          f"chatd's shell is {pw.pw_shell}")
    st = os.stat("/var/lib/chatd")
    check(st.st_uid == pw.pw_uid and stat.S_IMODE(st.st_mode) == 0o750,
          f"/var/lib/chatd: uid {st.st_uid} mode {stat.S_IMODE(st.st_mode):o}")
    st = os.stat("/etc/default/chatd")
    check(st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600,
          f"/etc/default/chatd: uid {st.st_uid} mode {stat.S_IMODE(st.st_mode):o}")
    p = sh(["man", "-w", "chatd"])
    check(p.stdout.strip().endswith("man8/chatd.8.gz"), f"man -w chatd: {p.stdout}")
    if shutil.which("systemd-analyze"):
        p = sh(["systemd-analyze", "verify", "/lib/systemd/system/chatd.service"],
               check_rc=False)
        check(p.returncode == 0 and not (p.stdout + p.stderr).strip(),
              f"systemd-analyze verify: {(p.stdout + p.stderr).strip()[:600]}")
        p = sh(["systemd-analyze", "security", "--offline=yes",
                "/lib/systemd/system/chatd.service"], check_rc=False)
        m = re.search(r"Overall exposure level for \S+: (\S+ \S+)", p.stdout + p.stderr)
        print(f"    systemd-analyze verify: clean; security exposure "
              f"{m.group(1) if m else '?'}", flush=True)
    else:
        print("    systemd-analyze missing: unit not verified", flush=True)


def _run_as_the_unit():
    unit = unit_service("/lib/systemd/system/chatd.service")
    check(unit.get("Type") == ["simple"], f"Type={unit.get('Type')}")
    user = unit["User"][0]
    group = unit["Group"][0]
    pw = _getpw(user)
    check(pw is not None, f"no user {user}")
    # StateDirectory: systemd makes /var/lib/NAME, owned by User, with its mode
    state = "/var/lib/" + unit["StateDirectory"][0]
    os.makedirs(state, exist_ok=True)
    os.chown(state, pw.pw_uid, _getgr(group).gr_gid)
    os.chmod(state, int(unit.get("StateDirectoryMode", ["0755"])[0], 8))
    # the environment: Environment=, then EnvironmentFile= (its values win)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "HOME": pw.pw_dir, "USER": user, "LOGNAME": user,
           "SHELL": pw.pw_shell}
    for line in unit.get("Environment", []):
        env.update(env_assignments(line))
    for f in unit.get("EnvironmentFile", []):
        optional = f.startswith("-")
        f = f.lstrip("-")
        if os.path.exists(f):
            env.update(env_file(f))
        else:
            check(optional, f"EnvironmentFile {f} missing")
    check(env.get("CHATD_DATA_DIR") == state, f"CHATD_DATA_DIR={env.get('CHATD_DATA_DIR')}")
    # the test's two settings (a drop-in's worth)
    port = free_port()
    env["CHATD_LISTEN"] = f"127.0.0.1:{port}"
    env["JSONPLACEHOLDER_URL"] = jsonplaceholder()
    exec_start = unit["ExecStart"][0].split()
    nofile = int(unit["LimitNOFILE"][0])
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < nofile:
        # systemd (PID 1) may raise it; this container's root may not
        print(f"    LimitNOFILE={nofile}: this machine's hard limit is {hard}, using that",
              flush=True)
        nofile = hard
    umask = unit.get("UMask", ["0022"])[0]
    cwd = unit.get("WorkingDirectory", [state])[0]
    os.makedirs(LOG_DIR, exist_ok=True)
    log_path = os.path.join(LOG_DIR, "package-chatd.log")
    trace = os.path.join(tempfile.mkdtemp(prefix="chatd-strace-"), "trace")
    os.chown(os.path.dirname(trace), pw.pw_uid, -1)  # strace runs as the user too
    tracer = ["strace", "-f", "-qq", "-o", trace] if shutil.which("strace") else []
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups",
               "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    # prlimit and umask as systemd sets them; setpriv drops to the user
    cmd = ["prlimit", f"--nofile={nofile}:{nofile}", "--", "sh", "-c",
           f'umask {umask} && exec "$@"', "sh", *setpriv, *tracer, *exec_start]
    print(f"    ExecStart as {user}: {' '.join(exec_start)} (listen {env['CHATD_LISTEN']},"
          f" data {env['CHATD_DATA_DIR']}{', under strace' if tracer else ''})", flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            if proc.poll() is not None:
                raise Failure(f"chatd exited {proc.returncode}: {_tail(log_path)}")
            try:
                return http("GET", base + "/api/health", timeout=2)[0] == 200
            except OSError:
                return False
        wait_until(healthy, 30, "/api/health 200 from the installed chatd")
        status, _, body = http("GET", base + "/api/health")
        print(f"    /api/health: {status} {body.decode().strip()}", flush=True)
        # a real session with the installed client: welcome, a post comes back
        c = subprocess.run(["/usr/bin/chat-client", "--url", base + "/", "--quiet"],
                           input="hello from the package\n", capture_output=True, text=True,
                           timeout=60)
        check(c.returncode == 0, f"chat-client exited {c.returncode}: {c.stderr[-300:]}")
        check("hello from the package" in c.stdout,
              f"chat-client did not see its post: {c.stdout[-300:]}")
        for name, mode in (("jwt-es256.pem", 0o600), ("chat.db", 0o600)):
            st = os.stat(os.path.join(state, name))
            check(st.st_uid == pw.pw_uid and stat.S_IMODE(st.st_mode) == mode,
                  f"{name}: uid {st.st_uid} mode {stat.S_IMODE(st.st_mode):o}")
        chatd_pid = _chatd_pid(proc.pid, exec_start[0])
        os.kill(chatd_pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=float(unit.get("TimeoutStopSec", ["30"])[0]))
        except subprocess.TimeoutExpired:
            raise Failure("chatd did not stop within TimeoutStopSec after SIGTERM")
        check(rc == 0, f"chatd exited {rc} after SIGTERM: {_tail(log_path)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if tracer:
        _check_trace(trace, unit, state)
        shutil.rmtree(os.path.dirname(trace), ignore_errors=True)


def _tail(path, n=15):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def _chatd_pid(top, exe):
    """The chatd process below TOP (prlimit -> sh -> setpriv -> strace -> chatd)."""
    def find():
        for d in glob.glob("/proc/[0-9]*"):
            try:
                if os.readlink(d + "/exe") != exe:
                    continue
                pid = int(d[6:])
                p = pid
                while p > 1:
                    with open(f"/proc/{p}/stat") as f:
                        p = int(f.read().rsplit(")", 1)[1].split()[1])
                    if p == top:
                        return pid
            except (OSError, ValueError):
                continue
        return None
    return wait_until(find, 5, "the chatd process")


SYSCALL_RE = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)")


def _check_trace(trace, unit, state):
    allowed = allowed_syscalls(unit.get("SystemCallFilter", []))
    check({"read", "sendmmsg", "recvmmsg"} <= allowed and "setuid" not in allowed
          and "reboot" not in allowed, "the unit's SystemCallFilter, as read here, is odd")
    families = set(" ".join(unit.get("RestrictAddressFamilies", [])).split())
    with open(trace, errors="replace") as f:
        lines = f.read().splitlines()
    # only what chatd did: from its execve on
    start = next((i for i, line in enumerate(lines)
                  if re.match(r"^\d+\s+execve\(\"/usr/sbin/chatd\"", line)), None)
    check(start is not None, "strace saw no execve of /usr/sbin/chatd")
    used, socket_families, written, proc_other, wx = set(), set(), set(), set(), []
    for line in lines[start + 1:]:
        m = SYSCALL_RE.match(line)
        if not m:
            continue
        used.add(m.group(1))
        m2 = re.search(r"\bsocket\((AF_[A-Z0-9]+)", line)
        if m2:
            socket_families.add(m2.group(1))
        m3 = re.search(r"\bopenat\([^,]+, \"([^\"]+)\", ([A-Z_|]+)", line)
        if m3 and re.search(r"O_WRONLY|O_RDWR|O_CREAT", m3.group(2)) and "= -1" not in line:
            written.add(m3.group(1))
        if (re.search(r"\b(pkey_)?mprotect\([^)]*PROT_EXEC", line)
                or re.search(r"\bmmap\([^)]*PROT_WRITE\|PROT_EXEC", line)
                or re.search(r"\bmmap\([^)]*PROT_EXEC\|PROT_WRITE", line)):
            wx.append(line.strip())
        if m3 and re.match(r"/proc/(?!(self|thread-self|\d+)(/|$))", m3.group(1)):
            proc_other.add(m3.group(1))
    denied = sorted(used - allowed)
    check(not denied, f"chatd made system calls the unit's SystemCallFilter refuses: {denied}")
    bad = sorted(socket_families - families)
    check(not bad, f"chatd opened sockets of families RestrictAddressFamilies refuses: {bad}")
    outside = sorted(w for w in written
                     if not w.startswith((state + "/", "/dev/", "/tmp/", "/proc/self/")))
    check(not outside, f"chatd wrote outside its StateDirectory (read-only under "
                       f"ProtectSystem=strict): {outside}")
    check(not wx, f"MemoryDenyWriteExecute would refuse: {wx[:3]}")
    # ProcSubset=pid leaves processes only in /proc. Two probes do without
    # what it hides: libselinux (loaded with GLib) reads /proc/filesystems,
    # glibc's malloc /proc/sys/vm/overcommit_memory (unread, it takes the
    # default, as for any setting but 2)
    proc_other -= {"/proc/filesystems", "/proc/sys/vm/overcommit_memory"}
    check(not proc_other, f"chatd read {sorted(proc_other)}, hidden by ProcSubset=pid")
    with open(os.path.join(LOG_DIR, "package-chatd.syscalls"), "w") as f:
        f.write(" ".join(sorted(used)) + "\n")
    print(f"    strace: {len(used)} system calls, all in SystemCallFilter; socket families "
          f"{' '.join(sorted(socket_families))}; writes only under {state}", flush=True)


if __name__ == "__main__":
    run(fixtures=[shared_jsonplaceholder()])
