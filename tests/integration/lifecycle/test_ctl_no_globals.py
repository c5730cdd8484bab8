"""House style (STYLE.md: no hidden global state beyond the loop's context): the controllers
in host/ctl that this suite exercises (sessions, labs, workers and their registry) keep their
instances in app->controllers, never in file-scope variables. Fails on any file-scope
`static` (or exported) variable that is not const in those files."""
import glob
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
FILES = ["host/ctl/controllers.c"] + \
    [os.path.relpath(p, SRC) for pat in ("sessions*.c", "labs*.c", "workers*.c")
     for p in glob.glob(os.path.join(SRC, "host", "ctl", pat))]


def file_scope_lines(text):
    """Lines at brace depth 0 (outside functions and initialisers), comments and strings
    removed."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    depth, out, cur = 0, [], []
    for ch in text:
        if ch == "{":
            depth += 1
        if depth == 0:
            cur.append(ch)
        if ch == "}":
            depth -= 1
            if depth == 0:
                cur.append(" {} ")   # a block ended: a function body or an initialiser
        if ch == "\n":
            out.append("".join(cur))
            cur = []
    return out


def offenders(path):
    bad = []
    stmt = ""
    for ln, line in enumerate(file_scope_lines(open(os.path.join(SRC, path)).read()), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if "{}" in s:
            head, _, s = s.rpartition("{}")
            # after a function body the next declaration starts afresh; an initialiser
            # (`= {…}`) belongs to the declaration it ends
            stmt = (stmt + " " + head + " {}") if "=" in stmt + head else ""
            s = s.strip()
        stmt += " " + s
        if not stmt.rstrip().endswith(";"):
            continue
        decl, stmt = stmt.strip(), ""
        if re.match(r"^(typedef|struct\s+\w+\s*;|enum\b|extern\b)", decl) or "(" in decl.split("=")[0]:
            continue   # types, prototypes
        if re.match(r"^(static\s+)?(const\b|[\w\s\*]*\*\s*const\b)", decl) or \
                re.match(r"^static\s+const\b", decl):
            continue
        if decl in ("};", ";", "{} ;", "{};"):
            continue
        bad.append(f"{path}:{ln}: {decl}")
    return bad


def main():
    check_files = [f for f in FILES if os.path.exists(os.path.join(SRC, f))]
    assert len(check_files) >= 6, check_files
    bad = [b for f in check_files for b in offenders(f)]
    # the checker itself must catch a global (so it cannot silently pass)
    probe = "/tmp/lcm-no-globals-probe.c"
    with open(probe, "w") as fp:
        fp.write("static int x;\nstatic struct foo *g_foo = NULL;\nstatic const char *const k = \"a\";\n"
                 "static int f(void)\n{\n    static int y;\n    return y;\n}\n"
                 "static struct foo *the_ctl;   /* one per process */\n"
                 "static const struct bar tbl[] = {\n    { 1, 2 },\n};\n"
                 "static struct bar mut[] = {\n    { 1, 2 },\n};\n")
    found = offenders(os.path.relpath(probe, SRC))
    os.unlink(probe)
    if len(found) != 4:
        print(f"checker self-test failed: {found}")
        return 1
    if bad:
        print("file-scope mutable state in controllers:\n  " + "\n  ".join(bad))
        return 1
    print(f"ok: {len(check_files)} files, no file-scope mutable state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
