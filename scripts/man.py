#!/usr/bin/python3
"""man.py — builds a man page from a hand-written roff template and the
program's own --help, so the page's OPTIONS (and chatd's ENVIRONMENT and
EXIT STATUS) can never drift from what the program accepts.

    scripts/man.py PROGRAM TEMPLATE OUTPUT [NAME=VALUE ...]

PROGRAM is run with --help (exit 0 expected). TEMPLATE (man/NAME.SECTION.in)
is roff with these placeholders, each alone on its line:

  @OPTIONS@           every entry of --help whose term starts with '-', as
                      .TP paragraphs; chatd's "env VAR, default D" lines
                      become "Environment: VAR; default: D"
  @ENVIRONMENT@       every "env VAR" of those entries, with its option
  @LIST:Title@        the two-column list that --help heads with "Title:"
  @PARAGRAPH:Start@   the paragraph of --help that begins with Start (a
                      trailing ':' in Start is dropped from the text)

and these words anywhere: @VERSION@ (PROGRAM --version when it answers,
else the VERSION file, else debian/changelog's), @DATE@ (SOURCE_DATE_EPOCH
when set, as dpkg-buildpackage sets it, else today) and each NAME given as
NAME=VALUE on the command line (the Makefile passes the install paths).

A --help entry is a line indented by exactly two spaces, then the term,
two or more spaces and the text; lines indented deeper continue it.
"""

import datetime
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def esc(text):
    """Plain text as roff: backslashes, and minus signs that are options."""
    text = text.replace("\\", "\\e")
    # --flag and -h are options: real minus signs in roff
    text = re.sub(r"(?<![\w-])(--?)(?=[A-Za-z])", lambda m: "\\-" * len(m.group(1)), text)
    return text


def line_safe(text):
    """A text line may not start with a roff control character."""
    return "\\&" + text if text.startswith((".", "'")) else text


def term_roff(term):
    """'-h, --help' / '--listen HOST:PORT' -> bold option, italic argument."""
    parts = []
    for alt in term.split(", "):
        word, _, arg = alt.partition(" ")
        if word.startswith("-"):
            s = "\\fB" + word.replace("-", "\\-") + "\\fR"
            if arg:
                s += " \\fI" + esc(arg) + "\\fR"
        else:
            s = "\\fB" + esc(alt) + "\\fR"
        parts.append(s)
    return ", ".join(parts)


def paragraphs(help_text):
    paras, cur = [], []
    for line in help_text.splitlines():
        if line.strip():
            cur.append(line.rstrip())
        elif cur:
            paras.append(cur)
            cur = []
    if cur:
        paras.append(cur)
    return paras


ENTRY_RE = re.compile(r"^  (\S.*?)(?:\s{2,}(\S.*))?$")


def entries(lines):
    """Two-column lines -> [(term, [text lines])]."""
    out = []
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        m = ENTRY_RE.match(line)
        if indent == 2 and m:
            out.append((m.group(1), [m.group(2)] if m.group(2) else []))
        elif indent > 2 and out:
            out[-1][1].append(line.strip())
        else:
            return None
    return out


def parse_help(text):
    options, lists, paras = [], {}, []
    for p in paragraphs(text):
        title = None
        body = p
        if not p[0].startswith(" ") and p[0].endswith(":") and len(p) > 1:
            title, body = p[0][:-1], p[1:]
        e = entries(body) if body[0].startswith("  ") else None
        if e is None:
            paras.append(p)
            continue
        if title:
            lists[title] = e
        for term, texts in e:
            if term.startswith("-"):
                options.append((term, texts))
    return options, lists, paras


ENV_RE = re.compile(r"^env (\S+), default (.*)$")


def option_roff(term, texts):
    out = [".TP", term_roff(term)]
    desc, env = [], []
    for t in texts:
        m = ENV_RE.match(t)
        if m:
            env.append(m.groups())
        else:
            desc.append(t)
    if desc:
        out.append(line_safe(esc(" ".join(desc))))
    for var, default in env:
        if desc:
            out.append(".br")
        out.append(line_safe(f"Environment: \\fB{esc(var)}\\fR; default: {esc(default)}"))
    return out


def env_roff(options):
    out = []
    for term, texts in options:
        for t in texts:
            m = ENV_RE.match(t)
            if m:
                flag = term.split(" ")[0]
                out += [".TP", f".B {m.group(1)}",
                        line_safe(f"As {term_roff(flag)} (default: {esc(m.group(2))}).")]
    return out


def list_roff(items):
    out = []
    for term, texts in items:
        out += [".TP", "\\fB" + esc(term) + "\\fR"]
        if texts:
            out.append(line_safe(esc(" ".join(texts))))
    return out


def version(program):
    try:
        p = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10)
        m = re.search(r"\b\d+\.\d+(?:\.\d+)?(?:[-+~][0-9A-Za-z.+~-]*)?", p.stdout)
        if p.returncode == 0 and m:
            return m.group(0)
    except OSError:
        pass
    try:
        with open(os.path.join(ROOT, "VERSION")) as f:
            return f.read().strip()
    except OSError:
        pass
    try:
        with open(os.path.join(ROOT, "debian", "changelog")) as f:
            m = re.match(r"\S+ \(([^)]+)\)", f.readline())
            return m.group(1) if m else ""
    except OSError:
        return ""


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    program, template, output = argv[1:4]
    defs = dict(a.split("=", 1) for a in argv[4:])
    p = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=10)
    if p.returncode != 0 or not p.stdout:
        print(f"man.py: {program} --help exited {p.returncode}", file=sys.stderr)
        return 1
    options, lists, paras = parse_help(p.stdout)
    if not options:
        print(f"man.py: no options found in {program} --help", file=sys.stderr)
        return 1
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
           else datetime.datetime.now(datetime.timezone.utc))
    defs.setdefault("VERSION", version(program))
    defs.setdefault("DATE", day.strftime("%Y-%m-%d"))
    out = []
    with open(template) as f:
        for line in f.read().splitlines():
            s = line.strip()
            if s == "@OPTIONS@":
                for term, texts in options:
                    out += option_roff(term, texts)
            elif s == "@ENVIRONMENT@":
                out += env_roff(options)
            elif s.startswith("@LIST:") and s.endswith("@"):
                title = s[6:-1]
                if title not in lists:
                    print(f"man.py: no list '{title}:' in {program} --help", file=sys.stderr)
                    return 1
                out += list_roff(lists[title])
            elif s.startswith("@PARAGRAPH:") and s.endswith("@"):
                start = s[11:-1]
                para = next((q for q in paras if q[0].startswith(start)), None)
                if para is None:
                    print(f"man.py: no paragraph '{start}' in {program} --help",
                          file=sys.stderr)
                    return 1
                text = " ".join(x.strip() for x in para)
                if start.endswith(":"):
                    text = text[len(start):].strip()
                out.append(line_safe(esc(text)))
            else:
                out.append(re.sub(r"@([A-Z_]+)@",
                                  lambda m: defs.get(m.group(1), m.group(0)), line))
    left = [w for w in re.findall(r"@[A-Z_]+@", "\n".join(out))]
    if left:
        print(f"man.py: {template}: unknown placeholder {left[0]}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
