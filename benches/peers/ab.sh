#!/usr/bin/env bash
# A/B of Cairn's first backup: two (or more) builds of examples/backup, alternating, each run an
# `init` plus a first backup of the same corpus into a fresh repository after a `sync`. Prints
# per build the median wall time, CPU time (user + system), utilisation (CPU / (cores x wall))
# and peak RSS, and every run's wall time. Alternating spreads this VM's slow minutes over all
# builds; compare builds within one invocation only.
#
#   benches/peers/ab.sh ROUNDS CORPUS NAME=BINARY [NAME=BINARY ...]
#
# For example, after copying target/release/examples/backup to /tmp/backup-before and
# rebuilding:
#   benches/peers/ab.sh 8 /tmp/cairn-peers/corpus before=/tmp/backup-before \
#       after=target/release/examples/backup
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ROUNDS CORPUS NAME=BINARY..." >&2; exit 2; }
ROUNDS=$1 CORPUS=$2; shift 2
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time; Debian package time)" >&2; exit 2; }
REPO=$(mktemp -d)
trap 'rm -rf "$REPO"' EXIT
CORES=$(nproc)
for _ in $(seq "$ROUNDS"); do
    for spec in "$@"; do
        name=${spec%%=*} bin=${spec#*=}
        rm -rf "$REPO/r"
        "$bin" init "$REPO/r" >/dev/null
        sync
        /usr/bin/time -f "$name %e %U %S %M" "$bin" backup "$REPO/r" "$CORPUS" 2>&1 >/dev/null | tail -1
    done
done | python3 -c '
import statistics as st, sys
cores = int(sys.argv[1])
runs = {}
for line in sys.stdin:
    name, wall, user, system, rss = line.split()
    runs.setdefault(name, []).append((float(wall), float(user) + float(system), int(rss)))
print("build\twall_s\tcpu_s\tutilisation\trss_mib\truns (wall)")
for name, rs in runs.items():
    wall = st.median(r[0] for r in rs)
    cpu = st.median(r[1] for r in rs)
    util = st.median(r[1] / (cores * r[0]) for r in rs)
    rss = st.median(r[2] for r in rs) / 1024
    print(f"{name}\t{wall:.2f}\t{cpu:.2f}\t{util:.2f}\t{rss:.0f}\t" + " ".join(f"{r[0]:.2f}" for r in rs))
' "$CORES"
