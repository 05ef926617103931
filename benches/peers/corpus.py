#!/usr/bin/env python3
"""Deterministic mixed corpus for the peer benchmark, and the 1 % edit step.

    corpus.py generate DIR [--scale S]   # ~1 GiB and ~35,000 files at S = 1.0
    corpus.py edit DIR                   # edits 1 % of the files, deterministically
    corpus.py edit-round DIR N           # round N of a series of edits (benches/peers/prune.sh)

The same version of this script always writes the same bytes (Python's `random.Random` with a
fixed seed: Mersenne Twister, stable across Python 3 versions for `random()`, `randrange()` and
`randbytes()`). Contents:

- source-like and text files (about 33,000, lognormal sizes around 6 KiB): lines of identifiers,
  keywords and punctuation drawn from a fixed vocabulary, so they compress about 4-5x and share
  many repeated lines across files, as real source trees do;
- already-compressed files (about 1,500 of 20-400 KiB, random bytes: what JPEG/ZIP look like to
  a compressor);
- random binaries of 1-50 MiB (12);
- a few large files (3 of 96 MiB): a disk-image-like file (runs of zeros between random and text
  extents), a log-like text file, and a random file.

`edit` picks 1 % of the files (every 100th in sorted order): appends a few lines to text files,
rewrites 4 KiB at three places inside the large files and 1 KiB inside binaries. A stamp file
records what was done, so running it twice is an error rather than a silent second edit.

`edit-round N` is the same kind of edit for a series of versions (the prune benchmark backs up
30): round N picks another 1 % (every 100th file from the N-th), with its own seed, and may be
run once per round on the same tree.
"""

import os
import random
import sys

VERSION = "cairn-peer-corpus-1"
MIB = 1 << 20

WORDS = (
    "fn let mut pub struct impl enum match if else for while loop return self Self use mod "
    "crate super where trait type const static unsafe async await move ref Some None Ok Err "
    "Vec String Option Result Box Arc Mutex HashMap BTreeMap usize u8 u16 u32 u64 i64 bool "
    "len push pop insert remove get iter map filter collect into from new default clone "
    "unwrap expect error config buffer reader writer index offset block chunk segment record "
    "header footer tree entry snapshot archive key nonce tag hash id size count total path "
    "name value data state cache store batch queue worker thread channel sender receiver"
).split()
PUNCT = ["(", ")", "{", "}", ";", ",", ".", "::", "->", "=>", "=", "+", "&", "*", "<", ">"]


def text_block(rng, size):
    """Source-like text of exactly `size` bytes."""
    lines = []
    total = 0
    indent = 0
    while total < size:
        if rng.random() < 0.15:
            # Repeated boilerplate lines, as in real code (license headers, imports, braces).
            line = rng.choice(
                [
                    "use std::collections::HashMap;",
                    "// SPDX-License-Identifier: MIT OR Apache-2.0",
                    "}",
                    "#[derive(Debug, Clone, PartialEq, Eq)]",
                    "    Ok(())",
                    "#[cfg(test)]",
                    "mod tests {",
                ]
            )
        else:
            n = rng.randrange(3, 12)
            parts = []
            for _ in range(n):
                if rng.random() < 0.3:
                    parts.append(rng.choice(PUNCT))
                else:
                    parts.append(rng.choice(WORDS))
            if rng.random() < 0.1:
                parts.append(str(rng.randrange(0, 1 << 16)))
            line = " " * (4 * indent) + " ".join(parts)
            indent = max(0, min(6, indent + rng.choice([-1, 0, 0, 1])))
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:size]


def lognormal_size(rng, median, sigma, lo, hi):
    import math

    return int(max(lo, min(hi, math.exp(rng.gauss(math.log(median), sigma)))))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def generate(root, scale):
    rng = random.Random(VERSION)
    stamp = os.path.join(root, ".corpus-version")
    if os.path.exists(stamp):
        sys.exit(f"{root} already holds a corpus; remove it first")
    os.makedirs(root, exist_ok=True)
    n_text = int(33000 * scale)
    n_comp = int(1500 * scale)
    n_bin = max(1, int(12 * scale))
    big = max(1, int(96 * scale)) * MIB
    files = 0
    total = 0

    # Text and source files in a tree of projects / modules.
    for i in range(n_text):
        project = i // 3000
        module = (i // 60) % 50
        ext = rng.choice(["rs", "py", "c", "h", "md", "txt", "json", "toml"])
        path = os.path.join(root, f"src/project{project:02d}/mod{module:02d}/file{i:05d}.{ext}")
        size = lognormal_size(rng, 6 * 1024, 1.0, 64, 512 * 1024)
        write(path, text_block(rng, size))
        files += 1
        total += size

    # Already-compressed media and archives.
    for i in range(n_comp):
        ext = rng.choice(["jpg", "png", "zip", "gz", "mp3"])
        path = os.path.join(root, f"media/album{i // 100:02d}/item{i:04d}.{ext}")
        size = rng.randrange(20 * 1024, 400 * 1024)
        write(path, rng.randbytes(size))
        files += 1
        total += size

    # Random binaries of 1-50 MiB.
    for i in range(n_bin):
        size = rng.randrange(1 * MIB, 50 * MIB)
        write(os.path.join(root, f"bin/tool{i:02d}.bin"), rng.randbytes(size))
        files += 1
        total += size

    # A few large files.
    image = bytearray()
    while len(image) < big:
        kind = rng.random()
        extent = rng.randrange(64 * 1024, 4 * MIB)
        if kind < 0.4:
            image += bytes(extent)
        elif kind < 0.7:
            image += rng.randbytes(extent)
        else:
            image += text_block(rng, extent)
    write(os.path.join(root, "large/disk.img"), bytes(image[:big]))
    write(os.path.join(root, "large/server.log"), text_block(rng, big))
    write(os.path.join(root, "large/random.dat"), rng.randbytes(big))
    files += 3
    total += 3 * big

    # Empty files and an empty directory, which every tool must also restore.
    write(os.path.join(root, "misc/empty.txt"), b"")
    os.makedirs(os.path.join(root, "misc/empty-dir"), exist_ok=True)
    files += 1
    with open(stamp, "w") as f:
        f.write(f"{VERSION} scale={scale}\n")
    print(f"{root}: {files} files, {total / MIB:.0f} MiB")


def edit(root, round_=None):
    stamp = os.path.join(root, ".corpus-edited")
    if round_ is None and os.path.exists(stamp):
        sys.exit(f"{root} was already edited")
    rng = random.Random(VERSION + (" edit" if round_ is None else f" edit round {round_}"))
    paths = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not name.startswith(".corpus"):
                paths.append(os.path.join(dirpath, name))
    paths.sort()
    chosen = paths[(round_ or 0) % 100::100]
    changed = 0
    for path in chosen:
        size = os.path.getsize(path)
        if path.endswith((".rs", ".py", ".c", ".h", ".md", ".txt", ".json", ".toml", ".log")):
            with open(path, "ab") as f:
                f.write(text_block(rng, rng.randrange(40, 2000)))
        else:
            width = 4096 if size >= 64 * MIB else 1024
            with open(path, "r+b") as f:
                for _ in range(3 if size >= 64 * MIB else 1):
                    if size > width:
                        f.seek(rng.randrange(0, size - width))
                        f.write(rng.randbytes(width))
        changed += 1
    # The large files are edited inside, whatever the sampling picked.
    for name in ["disk.img", "random.dat"]:
        path = os.path.join(root, "large", name)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            for _ in range(3):
                f.seek(rng.randrange(0, size - 4096))
                f.write(rng.randbytes(4096))
    with open(stamp, "a" if round_ is not None else "w") as f:
        what = "" if round_ is None else f" (round {round_})"
        f.write(f"{VERSION} edited {changed} files{what}\n")
    print(f"{root}: edited {changed} of {len(paths)} files")


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "generate":
        scale = 1.0
        if "--scale" in args:
            scale = float(args[args.index("--scale") + 1])
        generate(args[1], scale)
    elif len(args) == 2 and args[0] == "edit":
        edit(args[1])
    elif len(args) == 3 and args[0] == "edit-round":
        edit(args[1], int(args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
