#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-doc-examples.sh: the examples shown in README.md and docs/*.md are what the code does.
#
# A doc marks a checked example with an HTML comment on the line before it:
#
#   <!-- checked by tests/t-doc-examples.sh -->          then a ``` block: a shell session,
#       "$ COMMAND" lines, each followed by the lines it prints (stdout and stderr);
#   <!-- checked by tests/t-doc-examples.sh: $ COMMAND -->   then the lines COMMAND prints, up to
#       the next blank line (e.g. a table a bench script prints);
#   <!-- checked by tests/t-doc-examples.sh: the filters of each pipeline of COMMAND -->   then
#       a table "| `NAME` | … | f1 → f2 → … |": COMMAND prints a pipeline file, and
#       `kts-filter --config FILE --check` must list exactly these pipelines with these filters.
#
# Commands run with bash in a scratch directory that links the source tree's top-level entries
# (contrib, bench, docs …: the paths a reader types from the top of the tree), with the build
# tree's tools/ first in PATH (kts-filter) and BUILD linked to the build tree; files they
# write stay in the scratch directory. Test points: one per marked example, then
#   - every fenced example in README.md and docs/*.md that runs kts-filter ("$ kts-filter …")
#     is marked (an unmarked one would go stale unnoticed);
#   - no file of the source tree reads data from a directory beside it (the shared data dir);
#   - at least the examples known today are found (FILTERS.md's kts-filter session and
#     nab-spikes.py table, the README's demo pipelines), so a lost marker fails too.
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
[ -x "$BUILDDIR/tools/kts-filter" ] || { echo "1..0 # SKIP no $BUILDDIR/tools/kts-filter"; exit 0; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kts-doc-examples.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/run"
ln -s "$BUILDDIR/tools/kts-filter" "$tmp/bin/kts-filter"
ln -s "$BUILDDIR" "$tmp/run/BUILD"
for e in "$SRCDIR"/*; do
    case ${e##*/} in .build | BUILD) continue ;; esac
    ln -s "$e" "$tmp/run/${e##*/}"
done

python3 - "$SRCDIR" "$tmp" <<'EOF'
import glob, os, re, subprocess, sys

src, tmp = sys.argv[1], sys.argv[2]
run_dir = os.path.join(tmp, "run")
env = dict(os.environ, PATH=os.path.join(tmp, "bin") + ":" + os.environ["PATH"], LC_ALL="C")
MARK = re.compile(r"^<!-- checked by tests/t-doc-examples\.sh(?::\s*(.*?))?\s*-->\s*$")
n = 0
failed = 0


def ok(good, name, diag=()):
    global n, failed
    n += 1
    print("%s %d - %s" % ("ok" if good else "not ok", n, name))
    if not good:
        failed += 1
        for line in diag:
            print("# " + line, file=sys.stderr)


def sh(cmd):
    p = subprocess.run(["bash", "-c", cmd], cwd=run_dir, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout.splitlines()


def compare(shown, got):
    if shown == got:
        return []
    d = []
    for i in range(max(len(shown), len(got))):
        a = shown[i] if i < len(shown) else "<nothing>"
        b = got[i] if i < len(got) else "<nothing>"
        if a != b:
            d += ["line %d shown:  %s" % (i + 1, a), "line %d prints: %s" % (i + 1, b)]
    return d[:12]


def session(lines):
    """A ``` block of "$ cmd" lines, each followed by its output."""
    cmds = []
    for line in lines:
        if line.startswith("$ "):
            cmds.append((line[2:], []))
        elif cmds:
            cmds[-1][1].append(line)
    diag = []
    for cmd, shown in cmds:
        rc, got = sh(cmd)
        d = compare(shown, got)
        if rc != 0:
            d.insert(0, "exit status %d" % rc)
        if d:
            diag += ["$ " + cmd] + d
    return cmds, diag


def chain_table(cmd, lines):
    rc, conf = sh(cmd)
    if rc != 0:
        return ["$ %s: exit status %d" % (cmd, rc)] + conf[-5:]
    path = os.path.join(tmp, "pipelines.conf")
    with open(path, "w") as f:
        f.write("\n".join(conf) + "\n")
    p = subprocess.run([os.path.join(tmp, "bin", "kts-filter"), "--config", path, "--check"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    real = {}
    for line in p.stdout.splitlines():
        m = re.match(r'pipeline "([^"]*)": (.*)', line)
        if m:
            real[m.group(1)] = m.group(2).split()
    if p.returncode != 0 or not real:
        return ["kts-filter --check: exit status %d" % p.returncode] + p.stdout.splitlines()[-5:]
    shown = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= set("-: "):
            continue
        name = cells[0].strip("`")
        if name == "pipeline":  # the header
            continue
        shown[name] = [f.strip() for f in cells[-1].split("→")]
    d = []
    for name in sorted(set(real) | set(shown)):
        if real.get(name) != shown.get(name):
            d.append("pipeline %s: shown %s, %s has %s" % (
                name, " → ".join(shown.get(name, ["<missing>"])), cmd,
                " → ".join(real.get(name, ["<missing>"]))))
    return d


docs = [os.path.join(src, "README.md")] + sorted(glob.glob(os.path.join(src, "docs", "*.md")))
found = []
unmarked = []
for path in docs:
    rel = os.path.relpath(path, src)
    text = open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(text):
        m = MARK.match(text[i])
        if m:
            arg = m.group(1)
            j = i + 1
            if arg is None:  # a ``` session
                if j >= len(text) or not text[j].startswith("```"):
                    ok(False, "%s:%d: a marked example is a ``` block" % (rel, i + 1))
                    i = j
                    continue
                k = j + 1
                while k < len(text) and not text[k].startswith("```"):
                    k += 1
                cmds, diag = session(text[j + 1:k])
                ok(cmds and not diag, "%s:%d: %s" % (
                    rel, j + 2, " ; ".join(c for c, _ in cmds) or "no $ command"), diag)
                found.append((rel, cmds[0][0] if cmds else ""))
                i = k + 1
                continue
            k = j
            while k < len(text) and text[k].strip():
                k += 1
            block = text[j:k]
            cm = re.match(r"the filters of each pipeline of (.*)", arg)
            if cm:
                diag = chain_table(cm.group(1), block)
                ok(len(block) > 2 and not diag,
                   "%s:%d: the pipelines and filters shown are those of %s" % (
                       rel, j + 1, cm.group(1)), diag)
                found.append((rel, "pipelines of " + cm.group(1)))
            elif arg.startswith("$ "):
                rc, got = sh(arg[2:])
                diag = compare(block, got)
                if rc != 0:
                    diag.insert(0, "exit status %d" % rc)
                ok(block and not diag, "%s:%d: the %d lines shown are what %s prints" % (
                    rel, j + 1, len(block), arg[2:]), diag)
                found.append((rel, arg[2:]))
            else:
                ok(False, "%s:%d: unknown marker '%s'" % (rel, i + 1, arg))
            i = k
            continue
        if text[i].startswith("```"):
            k = i + 1
            while k < len(text) and not text[k].startswith("```"):
                if re.match(r"\$ .*\bkts-filter\b", text[k]):
                    unmarked.append("%s:%d: %s" % (rel, k + 1, text[k]))
                k += 1
            i = k + 1
            continue
        i += 1

ok(not unmarked, "every shown kts-filter session in README.md and docs/*.md is marked and checked",
   unmarked)
# Nothing points to data outside the source tree (the NAB series are in bench/data/nab).
outside = []
pat = re.compile(r"\.\./" + "shared|" + "shared/" + "data")
for top, dirs, files in os.walk(src):
    dirs[:] = [d for d in dirs if d not in (".git", ".build", ".cache", "demo-out", "autom4te.cache")]
    for f in files:
        fp = os.path.join(top, f)
        try:
            with open(fp, encoding="utf-8") as fh:
                for no, line in enumerate(fh, 1):
                    if pat.search(line):
                        outside.append("%s:%d: %s" % (os.path.relpath(fp, src), no, line.strip()))
        except (UnicodeDecodeError, OSError):
            pass
ok(not outside, "no file of the source tree reads data from a directory beside it", outside[:10])
want = [("docs/FILTERS.md", "kts-filter --config contrib/pipelines/spikes.conf"),
        ("docs/FILTERS.md", "bench/nab-spikes.py"),
        ("README.md", "pipelines of contrib/demo --print-pipelines")]
missing = ["%s: %s" % w for w in want if not any(r == w[0] and w[1] in c for r, c in found)]
ok(not missing, "the examples known to need checking are all marked (%d checked in all)" % len(found),
   missing)
print("1..%d" % n)
sys.exit(1 if failed else 0)
EOF
# (not exec: the EXIT trap removes the scratch directory)
exit $?
