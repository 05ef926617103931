#!/usr/bin/env bash
# Prune benchmark (issue 28, item 5): 30 versions of a changing tree backed up by a real agent
# to a real server, then pruned to keep the last 10, next to `restic forget --keep-last 10
# --prune` on the same 30 versions, in the same run.
#
#   benches/peers/prune.sh [--scale S] [--versions N] [--keep K] [--live-threshold PCT] [--work DIR]
#
# Defaults: scale 1.0 (the peer corpus, ~1.2 GiB, ~35,000 files), 30 versions, keep 10, work
# dir /tmp/cairn-prune. Each version is `corpus.py edit-round` (another 1 % of the files
# edited), backed up by the Cairn agent (examples/agent.rs, to examples/server.rs on 127.0.0.1,
# the embedded defaults) and by restic. Then:
#   cairn   the operator sets the policy (keep-last K, nothing else) and prune settings (grace
#           0 h, so that one prune marks and sweeps; the live threshold at its default, 80 %,
#           unless --live-threshold), then
#           an admin calls POST /v1/tenants/acme/users/ana/prune: its wall time is the call's,
#           its peak RSS the server process's high-water mark during the call (reset first
#           through /proc/PID/clear_refs), and the repository is the server's segments and
#           staging.
#   restic  `restic forget --keep-last K --prune` under GNU time.
# Prints one table (also WORK/prune.tsv): repository size before and after, prune wall time,
# peak RSS, and the ratios.
set -euo pipefail

SCALE=1.0
VERSIONS=30
KEEP=10
THRESHOLD=""
WORK=/tmp/cairn-prune
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --versions) VERSIONS="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        --live-threshold) THRESHOLD="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: $0 [--scale S] [--versions N] [--keep K] [--live-threshold PCT] [--work DIR]" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
command -v restic >/dev/null || apt_install restic
command -v curl >/dev/null || apt_install curl
[ -x /usr/bin/time ] || apt_install time
(cd "$ROOT" && cargo build --locked --release --example server --example agent)
SERVER="$ROOT/target/release/examples/server"
AGENT="$ROOT/target/release/examples/agent"

rm -rf "$WORK"
mkdir -p "$WORK"
CORPUS="$WORK/corpus"
python3 "$HERE/corpus.py" generate "$CORPUS" --scale "$SCALE" >/dev/null

# --- the server, a tenant, a user, an enrolled agent ---------------------------------------
DATA="$WORK/server"
PORT=$((20000 + RANDOM % 20000))
"$SERVER" init "$DATA" --host localhost >/dev/null
"$SERVER" tenant add "$DATA" --tenant acme --quota $((1 << 40)) >/dev/null
"$SERVER" user add "$DATA" --tenant acme --user root --role admin >/dev/null
"$SERVER" user add "$DATA" --tenant acme --user ana >/dev/null
ADMIN=$("$SERVER" token "$DATA" --tenant acme --user root --role admin --cap admin --lifetime 36000)
"$SERVER" serve "$DATA" --listen "127.0.0.1:$PORT" --host localhost >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
CA="$DATA/pki/ca.pem"
URL="https://localhost:$PORT"
api() { curl -sS --fail-with-body --cacert "$CA" --resolve "localhost:$PORT:127.0.0.1" \
    -H "authorization: Bearer $ADMIN" "$@"; }
for _ in $(seq 100); do
    if api "$URL/healthz" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
DEVICE_JSON=$(api -X POST "$URL/v1/tenants/acme/devices" -d '{"user":"ana","name":"bench"}')
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
DEVICE=$(field device <<<"$DEVICE_JSON")
ENROLL=$(field token <<<"$DEVICE_JSON")
"$AGENT" -q enroll --dir "$WORK/agent" --server "$URL" --ca "$CA" --tenant acme \
    --device "$DEVICE" --token "$ENROLL" >/dev/null

export RESTIC_REPOSITORY="$WORK/restic" RESTIC_PASSWORD=bench
restic init -q

# --- 30 versions, each backed up by both -----------------------------------------------------
for v in $(seq 1 "$VERSIONS"); do
    if [ "$v" -gt 1 ]; then python3 "$HERE/corpus.py" edit-round "$CORPUS" "$v" >/dev/null; fi
    "$AGENT" -q backup --dir "$WORK/agent" "$CORPUS" >/dev/null
    restic backup -q "$CORPUS" >/dev/null
done

size() { du -sb "$@" | awk '{s += $1} END {print s}'; }
cairn_size() { size "$DATA/segments" "$DATA/staging"; }
CAIRN_BEFORE=$(cairn_size)
RESTIC_BEFORE=$(size "$RESTIC_REPOSITORY")

# --- prune --------------------------------------------------------------------------------
"$SERVER" retention floor "$DATA" --keep-last 1 --keep-within-days 0 >/dev/null 2>&1
"$SERVER" retention set "$DATA" --tenant acme --user ana --keep-last "$KEEP" --keep-hourly 0 \
    --keep-daily 0 --keep-weekly 0 --keep-monthly 0 --keep-yearly 0 --keep-within-days 0 >/dev/null
"$SERVER" retention prune-settings "$DATA" --grace-hours 0 \
    ${THRESHOLD:+--live-threshold "$THRESHOLD"} >/dev/null 2>&1
sync
echo 5 | as_root tee "/proc/$SERVER_PID/clear_refs" >/dev/null
CAIRN_RSS_BEFORE_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
T0=$(date +%s.%N)
REPORT=$(api -X POST "$URL/v1/tenants/acme/users/ana/prune")
T1=$(date +%s.%N)
CAIRN_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
CAIRN_WALL=$(python3 -c "print(f'{$T1 - $T0:.2f}')")
CAIRN_AFTER=$(cairn_size)
echo "cairn prune report: $REPORT" >&2

sync
/usr/bin/time -f "%e %M" -o "$WORK/restic.time" \
    restic forget -q --keep-last "$KEEP" --prune >/dev/null
read -r RESTIC_WALL RESTIC_RSS_KB <"$WORK/restic.time"
RESTIC_AFTER=$(size "$RESTIC_REPOSITORY")

# --- the table ----------------------------------------------------------------------------
python3 - "$WORK/prune.tsv" <<EOF
import sys
mib = lambda b: f"{int(b) / (1 << 20):.1f} MiB"
rows = [
    ("repository before", mib($CAIRN_BEFORE), mib($RESTIC_BEFORE), f"{$CAIRN_BEFORE / $RESTIC_BEFORE:.3f}"),
    ("repository after", mib($CAIRN_AFTER), mib($RESTIC_AFTER), f"{$CAIRN_AFTER / $RESTIC_AFTER:.3f}"),
    ("prune wall", "$CAIRN_WALL s", "$RESTIC_WALL s", f"{$CAIRN_WALL / max($RESTIC_WALL, 0.01):.3f}"),
    ("prune peak RSS", f"{$CAIRN_RSS_KB / 1024:.0f} MiB (server process)", f"{$RESTIC_RSS_KB / 1024:.0f} MiB", f"{$CAIRN_RSS_KB / $RESTIC_RSS_KB:.3f}"),
    ("server RSS before", f"{$CAIRN_RSS_BEFORE_KB / 1024:.0f} MiB", "", ""),
]
print(f"$VERSIONS versions (scale $SCALE), keep the last $KEEP, live threshold ${THRESHOLD:-80} %")
print(f"{'':20} {'cairn':>32} {'restic':>14} {'cairn / restic':>15}")
with open(sys.argv[1], "w") as out:
    for r in rows:
        print(f"{r[0]:20} {r[1]:>32} {r[2]:>14} {r[3]:>15}")
        out.write("\t".join(r) + "\n")
EOF
