#!/usr/bin/env python3
"""The largest Rust files and functions of some source folders, at a git revision.

    python3 scripts/sizes.py [--rev REV] [--top N] FOLDER...

Lines are physical lines. A function runs from its `fn` line to its closing brace; a file's
`#[cfg(test)]` module (from that line at column 0 to the end) is left out of the function list
but counted in the file's size. Prints two Markdown tables. Used for issue notes on structure
work (before/after: run once with the old revision, once with HEAD).
"""

import argparse
import re
import subprocess
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?((const|async|unsafe|extern \"C\")\s+)*fn\s+(\w+)")


def git(*args):
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def strip(line, state):
    """The line without string contents and comments; `state` carries a block comment or a
    string across lines."""
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if state["block"]:
            if line.startswith("*/", i):
                state["block"] = False
                i += 2
                continue
            i += 1
            continue
        if state["string"]:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                state["string"] = False
            i += 1
            continue
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        if c == '"':
            state["string"] = True
            i += 1
            continue
        if c == "'":
            # A char literal ('{', '\n') or a lifetime ('a): skip a literal only.
            m = re.match(r"'(\\.|[^\\'])'", line[i:])
            if m:
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path, text):
    lines = text.split("\n")
    found = []
    state = {"block": False, "string": False}
    open_fns = []  # (name, start line, depth before its body)
    depth = 0
    for n, raw in enumerate(lines, 1):
        if raw.startswith("#[cfg(test)]"):
            break
        m = FN.match(raw) if not state["block"] and not state["string"] else None
        code = strip(raw, state)
        if m:
            open_fns.append([m.group(5), n, depth, False])
        for c in code:
            if c == "{":
                depth += 1
                if open_fns and not open_fns[-1][3] and depth == open_fns[-1][2] + 1:
                    open_fns[-1][3] = True
            elif c == "}":
                depth -= 1
                if open_fns and open_fns[-1][3] and depth == open_fns[-1][2]:
                    name, start, _, _ = open_fns.pop()
                    found.append((n - start + 1, path, name, start))
            elif c == ";" and open_fns and not open_fns[-1][3] and depth == open_fns[-1][2]:
                open_fns.pop()  # a declaration without a body (a trait's)
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rev", default="HEAD")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("folders", nargs="+")
    a = p.parse_args()
    files = [
        f for f in git("ls-tree", "-r", "--name-only", a.rev, "--", *a.folders).split("\n")
        if f.endswith(".rs")
    ]
    sizes, fns = [], []
    for f in files:
        text = git("show", f"{a.rev}:{f}")
        sizes.append((text.count("\n"), f))
        fns.extend(functions(f, text))
    sizes.sort(reverse=True)
    fns.sort(reverse=True)
    rev = git("rev-parse", "--short", a.rev).strip()
    print(f"At {rev}, {len(files)} files, {sum(s for s, _ in sizes)} lines.\n")
    print("| file | lines |\n| --- | --- |")
    for s, f in sizes[: a.top]:
        print(f"| `{f}` | {s} |")
    print("\n| function | lines |\n| --- | --- |")
    for s, f, name, start in fns[: a.top]:
        print(f"| `{name}` (`{f}:{start}`) | {s} |")


if __name__ == "__main__":
    sys.exit(main())
