#!/usr/bin/env bash
# A million files: Cairn's local backup tool (examples/backup.rs) against restic on a tree of
# many small files, in one run, reporting wall time, CPU time and peak RSS of a first and an
# unchanged backup. What it shows: the backup's memory follows the tree's depth and widest
# directories, not its number of files (the walk streams into the backup a batch of files at a
# time; crates/backup/src/engine/walk.rs).
#
#   benches/walk.sh [--files N] [--per-dir M] [--tools "cairn restic"] [--work DIR] [NAME=BINARY...]
#
# Defaults: 1,000,000 files in directories of 1,000 (two levels: 1,000 directories of 1,000
# files), both tools, work dir /tmp/cairn-walk. Each file holds 16 to 271 bytes (its path and
# padding), so the tree is about 140 MiB of contents and 1 M inodes. NAME=BINARY adds another
# build of examples/backup under NAME (an older commit's, for before and after).
# Installs restic (Debian) and GNU time if missing. Every step starts after a `sync`.
set -euo pipefail

FILES=1000000
PER_DIR=1000
TOOLS="cairn restic"
WORK=/tmp/cairn-walk
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --files) FILES="$2"; shift 2 ;;
        --per-dir) PER_DIR="$2"; shift 2 ;;
        --tools) TOOLS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *=*) EXTRA+=("$1"); shift ;;
        *) echo "usage: $0 [--files N] [--per-dir M] [--tools LIST] [--work DIR] [NAME=BINARY...]" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TREE="$WORK/tree"
RESULTS="$WORK/results.tsv"
mkdir -p "$WORK"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
[[ " $TOOLS " != *" restic "* ]] || command -v restic >/dev/null || apt_install restic
[ -x /usr/bin/time ] || apt_install time
(cd "$ROOT" && cargo build --locked --release --example backup)
declare -A BIN=([cairn]="$ROOT/target/release/examples/backup")
for e in "${EXTRA[@]}"; do BIN[${e%%=*}]="${e#*=}"; TOOLS="$TOOLS ${e%%=*}"; done

# --- the tree ------------------------------------------------------------------------------
if ! grep -qs "^$FILES $PER_DIR\$" "$TREE/.tree-version"; then
    rm -rf "$TREE"
    python3 - "$TREE" "$FILES" "$PER_DIR" <<'PY'
import os, sys
root, files, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root)
for n in range(files):
    d = os.path.join(root, f"{n // (per * per):03}", f"{n // per % per:03}")
    if n % per == 0:
        os.makedirs(d, exist_ok=True)
    name = os.path.join(d, f"f{n % per:04}.txt")
    with open(name, "w") as f:
        f.write(name + "\n" + "x" * (n * 7919 % 256))
open(os.path.join(root, ".tree-version"), "w").write(f"{files} {per}\n")
PY
fi
COUNT=$(find "$TREE" -type f | wc -l)

# --- measuring -----------------------------------------------------------------------------
printf 'tool\tstep\twall_s\tcpu_s\trss_mib\n' >"$RESULTS"
measure() { # measure TOOL STEP CMD...
    local tool="$1" step="$2"; shift 2
    local t="$WORK/time.$tool.$step"
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >"$WORK/log.$tool.$step" 2>&1 || {
        echo "$tool $step failed:" >&2; tail -20 "$WORK/log.$tool.$step" >&2; exit 1; }
    read -r wall user sys rss <"$t"
    awk -v tool="$tool" -v step="$step" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" \
        'BEGIN { printf "%s\t%s\t%.2f\t%.2f\t%.0f\n", tool, step, w, u + s, r / 1024 }' >>"$RESULTS"
    tail -1 "$RESULTS"
}
export RESTIC_REPOSITORY="$WORK/repo-restic" RESTIC_PASSWORD=cairn-bench RESTIC_CACHE_DIR="$WORK/restic-cache"
for tool in $TOOLS; do
    rm -rf "$WORK/repo-$tool" "$WORK/restic-cache"
    case "$tool" in
        restic)
            restic init --quiet >/dev/null
            measure restic first restic backup --quiet "$TREE"
            measure restic unchanged restic backup --quiet "$TREE" ;;
        *)
            "${BIN[$tool]}" init "$WORK/repo-$tool" >/dev/null
            measure "$tool" first "${BIN[$tool]}" backup "$WORK/repo-$tool" "$TREE"
            measure "$tool" unchanged "${BIN[$tool]}" backup "$WORK/repo-$tool" "$TREE" ;;
    esac
done

# --- the table -----------------------------------------------------------------------------
echo
echo "tree: $COUNT files in directories of $PER_DIR; $(nproc) cores; $(date -u +%F)"
python3 - "$RESULTS" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
get = {(r["tool"], r["step"]): r for r in rows}
print(f"{'tool':10} {'step':10} {'wall s':>8} {'cpu s':>8} {'rss MiB':>8} {'rss vs restic':>14} {'wall vs restic':>15}")
for r in rows:
    base = get.get(("restic", r["step"]))
    ratio = lambda k: f"{float(r[k]) / float(base[k]):.2f}x" if base and float(base[k]) > 0 else "-"
    print(f"{r['tool']:10} {r['step']:10} {float(r['wall_s']):8.2f} {float(r['cpu_s']):8.2f} "
          f"{float(r['rss_mib']):8.0f} {ratio('rss_mib'):>14} {ratio('wall_s'):>15}")
PY
echo "(raw numbers in $RESULTS)"
