#!/usr/bin/env bash
# Peer benchmark: Cairn's local backup tool against restic, BorgBackup and bupstash on the same
# deterministic corpus, on the same machine, in one run.
#
#   benches/peers/run.sh [--scale S] [--tools "cairn restic borg bupstash"] [--work DIR]
#
# Defaults: scale 1.0 (~1 GiB, ~35,000 files), all four tools, work dir /tmp/cairn-peers.
# Installs what is missing: restic and borgbackup from Debian, bupstash with
# `cargo install --locked bupstash` after Debian's libsodium-dev and pkg-config.
#
# For each tool (encryption on; zstd level 3 where the tool lets us choose it):
#   first     initial backup of the corpus
#   unchanged a second backup with nothing changed
#   edit      a backup after 1 % of the files were edited (benches/peers/corpus.py edit)
#   restore   a full restore of that last snapshot into an empty folder, verified with diff -r
# and prints wall time, CPU time (user + system), peak RSS and repository size in one table
# (also written to WORK/results.tsv). Everything runs from the page cache (the corpus is read
# once before the first tool); the steps run in the same order for every tool.
set -euo pipefail

SCALE=1.0
TOOLS="cairn restic borg bupstash"
WORK=/tmp/cairn-peers
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --tools) TOOLS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: $0 [--scale S] [--tools LIST] [--work DIR]" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CORPUS="$WORK/corpus"
RESULTS="$WORK/results.tsv"
mkdir -p "$WORK"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# --- install the peers ---------------------------------------------------------------------
for tool in $TOOLS; do
    case "$tool" in
        restic) command -v restic >/dev/null || apt_install restic ;;
        borg) command -v borg >/dev/null || apt_install borgbackup ;;
        bupstash)
            if ! command -v bupstash >/dev/null; then
                apt_install libsodium-dev pkg-config
                cargo install --locked bupstash
            fi ;;
        cairn) ;;
        *) echo "unknown tool $tool" >&2; exit 2 ;;
    esac
done
[ -x /usr/bin/time ] || apt_install time
(cd "$ROOT" && cargo build --locked --release --example backup --example kernel_floor)
CAIRN="$ROOT/target/release/examples/backup"
FLOOR="$ROOT/target/release/examples/kernel_floor"

# --- the corpus ----------------------------------------------------------------------------
# Nothing is deleted while steps are measured, only at the end: on ext4 without a journal, an
# inode freed in the last minute (several, while its block is dirty) is skipped when a new one is
# allocated, after a look at its inode table block. A restore right after 35,000 deletions spent
# most of its time there (`find_get_block_common`, `recently_deleted`): 7 CPU-s instead of 2.
# Set aside, an old corpus is deleted with the restores after the table.
if [ -e "$CORPUS/.corpus-edited" ] || ! grep -qs "scale=$SCALE\$" "$CORPUS/.corpus-version"; then
    if [ -e "$CORPUS" ]; then mv "$CORPUS" "$WORK/old-corpus.$$"; fi
fi
if [ ! -e "$CORPUS/.corpus-version" ]; then
    python3 "$HERE/corpus.py" generate "$CORPUS" --scale "$SCALE"
fi
FILES=$(find "$CORPUS" -type f | wc -l)
BYTES=$(du -sb "$CORPUS" | cut -f1)
find "$CORPUS" -type f -exec cat {} + >/dev/null # warm the page cache for everyone

# --- measuring -----------------------------------------------------------------------------
printf 'tool\tstep\twall_s\tcpu_s\trss_mib\trepo_mib\n' >"$RESULTS"
repo_size() { # bytes the repository holds (caches kept elsewhere, or excluded)
    case "$1" in
        cairn) du -sb --exclude=cache.redb "$WORK/repo-cairn" | cut -f1 ;;
        *) du -sb "$WORK/repo-$1" | cut -f1 ;;
    esac
}
measure() { # measure TOOL STEP CMD...
    local tool="$1" step="$2"; shift 2
    local t="$WORK/time.$tool.$step"
    # Write back what earlier steps left dirty (repositories, the edit), so that no step pays
    # for another's writeback.
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >"$WORK/log.$tool.$step" 2>&1 || {
        echo "$tool $step failed:" >&2; tail -20 "$WORK/log.$tool.$step" >&2; exit 1; }
    read -r wall user sys rss <"$t"
    local repo; repo=$(repo_size "$tool")
    awk -v tool="$tool" -v step="$step" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v b="$repo" \
        'BEGIN { printf "%s\t%s\t%.2f\t%.2f\t%.0f\t%.0f\n", tool, step, w, u + s, r / 1024, b / 1048576 }' \
        >>"$RESULTS"
    tail -1 "$RESULTS"
}

export RESTIC_REPOSITORY="$WORK/repo-restic" RESTIC_PASSWORD=cairn-bench RESTIC_CACHE_DIR="$WORK/restic-cache"
export BORG_REPO="$WORK/repo-borg" BORG_PASSPHRASE=cairn-bench BORG_BASE_DIR="$WORK/borg-base"
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BUPSTASH_REPOSITORY="$WORK/repo-bupstash" BUPSTASH_KEY="$WORK/bupstash.key"

backup() { # backup TOOL STEP
    case "$1" in
        cairn) measure cairn "$2" "$CAIRN" backup "$WORK/repo-cairn" "$CORPUS" ;;
        restic) measure restic "$2" restic backup --quiet "$CORPUS" ;;
        borg) measure borg "$2" borg create --compression zstd,3 "::$2" "$CORPUS" ;;
        bupstash) measure bupstash "$2" bupstash put --send-log "$WORK/bupstash.sendlog" \
            --compression zstd:3 --no-default-tags name="$2" :: "$CORPUS" ;;
    esac
}
restore() { # restore TOOL: the last snapshot into an empty folder; prints the restored root
    local out="$WORK/restore-$1"
    rm -rf "$out"; mkdir -p "$out"
    case "$1" in
        cairn) rmdir "$out"; measure cairn restore "$CAIRN" restore "$WORK/repo-cairn" latest "$out"
            echo "$out" >"$WORK/root.$1" ;;
        restic) measure restic restore restic restore latest --target "$out"
            echo "$out$CORPUS" >"$WORK/root.$1" ;;
        borg) measure borg restore sh -c "cd '$out' && borg extract ::edit"
            echo "$out$CORPUS" >"$WORK/root.$1" ;;
        bupstash) measure bupstash restore sh -c "bupstash get name=edit | tar -x -C '$out'"
            echo "$out" >"$WORK/root.$1" ;;
    esac
}

# --- phase 1: first and unchanged backups, on the pristine corpus --------------------------
for tool in $TOOLS; do
    rm -rf "$WORK/repo-$tool" "$WORK/restic-cache" "$WORK/borg-base/.cache/borg" "$WORK/bupstash.sendlog"
    case "$tool" in
        cairn) "$CAIRN" init "$WORK/repo-cairn" >/dev/null ;;
        restic) restic init --quiet >/dev/null ;;
        borg) borg init --encryption=repokey-blake2 >/dev/null ;;
        bupstash) rm -f "$BUPSTASH_KEY"; bupstash new-key -o "$BUPSTASH_KEY"; bupstash init >/dev/null ;;
    esac
    backup "$tool" first
    backup "$tool" unchanged
done

# --- the floor: Cairn's kernels alone on every core, the corpus in memory ------------------------
# `kernel_floor` prints "N threads: wall W s, busy B thread-s (...)"; the row `kernels first`
# is what no first backup built on these kernels can beat on this machine today.
if [[ " $TOOLS " == *" cairn "* ]]; then
    sync
    "$FLOOR" "$CORPUS" >"$WORK/log.kernels.first" 2>&1 || {
        echo "kernel_floor failed:" >&2; tail -20 "$WORK/log.kernels.first" >&2; exit 1; }
    awk '/ threads: wall / { printf "kernels\tfirst\t%.2f\t%.2f\t0\t0\n", $4, $7 }' \
        "$WORK/log.kernels.first" >>"$RESULTS"
    grep -q '^kernels' "$RESULTS" || { echo "kernel_floor printed no 'threads: wall' line" >&2; exit 1; }
    tail -1 "$RESULTS"
fi

# --- phase 2: 1 % edits, then a verified full restore --------------------------------------
python3 "$HERE/corpus.py" edit "$CORPUS"
for tool in $TOOLS; do
    backup "$tool" edit
    restore "$tool"
    root=$(cat "$WORK/root.$tool")
    if ! diff -r --no-dereference "$CORPUS" "$root" >"$WORK/diff.$tool" 2>&1; then
        echo "$tool: the restore differs from the corpus (see $WORK/diff.$tool)" >&2
        exit 1
    fi
done

# --- the table -----------------------------------------------------------------------------
echo
echo "corpus: $FILES files, $((BYTES / 1048576)) MiB (scale $SCALE); $(nproc) cores; $(date -u +%F)"
python3 - "$RESULTS" "$BYTES" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
corpus = int(sys.argv[2]) / 1048576
steps = ["first", "unchanged", "edit", "restore"]
tools = list(dict.fromkeys(r["tool"] for r in rows))
if "kernels" in tools and "cairn" in tools:  # the floor beside the tool it bounds
    tools.remove("kernels")
    tools.insert(tools.index("cairn") + 1, "kernels")
get = {(r["tool"], r["step"]): r for r in rows}
print(f"{'tool':9} {'step':9} {'wall s':>8} {'cpu s':>8} {'rss MiB':>8} {'repo MiB':>9} {'repo/in':>8} {'wall vs restic':>15}")
for t in tools:
    for s in steps:
        r = get.get((t, s))
        if not r:
            continue
        base = get.get(("restic", s))
        ratio = f"{float(r['wall_s']) / float(base['wall_s']):.2f}x" if base and float(base["wall_s"]) > 0 else "-"
        if t == "kernels":  # no process of its own to measure: wall and busy thread-seconds
            print(f"{t:9} {s:9} {float(r['wall_s']):8.2f} {float(r['cpu_s']):8.2f} {'-':>8} {'-':>9} {'-':>8} {ratio:>15}")
            continue
        print(f"{t:9} {s:9} {float(r['wall_s']):8.2f} {float(r['cpu_s']):8.2f} {float(r['rss_mib']):8.0f} "
              f"{float(r['repo_mib']):9.0f} {float(r['repo_mib']) / corpus:8.2f} {ratio:>15}")
EOF
echo "(kernels: Cairn's chunk, id, zstd-3 and seal alone on every core, the corpus in memory, no I/O)"
echo "(all restores verified with diff -r; raw numbers in $RESULTS)"
rm -rf "$WORK"/restore-* "$WORK"/old-corpus.*
