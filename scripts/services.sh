#!/usr/bin/env bash
# Real PostgreSQL and S3 servers on 127.0.0.1 for the scale-out tests, installed if missing.
#
#   eval "$(bash scripts/services.sh start DIR)"   # prints the exports the tests read
#   bash scripts/services.sh stop DIR              # stops both by their process ids
#
# PostgreSQL: Debian's package, a cluster made by initdb in a new folder under $TMPDIR (run as
# the `postgres` user when started as root), listening on 127.0.0.1 only. S3: the moto server from PyPI at a pinned
# version, in a virtual environment under DIR/../moto-venv (kept between runs), in memory.
set -euo pipefail
MOTO_VERSION="5.2.5"
cmd="${1:-}"; dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [[ "$cmd" == stop ]]; then
    [[ -f "$dir/moto.pid" ]] && kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
    pg=$(cat "$dir/pgdir" 2>/dev/null || true)
    if [[ -n "$pg" && -f "$pg/postmaster.pid" ]]; then
        pid=$(head -n 1 "$pg/postmaster.pid")
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    [[ -n "$pg" && "$pg" == */cairn-pg.* ]] && rm -rf "$pg"
    exit 0
fi
[[ "$cmd" == start ]] || { echo "unknown command $cmd" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# ---- PostgreSQL ----------------------------------------------------------------------------------
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$pgbin" ]]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
as_pg=()
# The cluster lives in a folder of its own under the temporary directory (which every user can
# reach), owned by the user that runs PostgreSQL: as root that is `postgres`, and DIR may sit
# below a folder only root can enter.
pg=$(mktemp -d "${TMPDIR:-/tmp}/cairn-pg.XXXXXX")
echo "$pg" > "$dir/pgdir"
if [[ $(id -u) == 0 ]]; then
    as_pg=(runuser -u postgres --)
    chown postgres "$pg"
fi
"${as_pg[@]}" "$pgbin/initdb" -D "$pg" -U cairn --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
pg_port=$(free_port)
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pg" -l "$pg/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg -c fsync=on -c max_connections=200" start >&2
"${as_pg[@]}" "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U cairn cairn_test >&2

# ---- S3 (moto) -----------------------------------------------------------------------------------
venv="$(dirname "$dir")/moto-venv"
if ! "$venv/bin/moto_server" --help >/dev/null 2>&1; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
fi
s3_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$dir/moto.log" 2>&1 &
echo $! > "$dir/moto.pid"
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$s3_port/moto-api/" >/dev/null 2>&1 && break
    sleep 0.1
done

# The test bucket (moto takes unsigned requests).
curl -fs -X PUT "http://127.0.0.1:$s3_port/cairn-test" >/dev/null

echo "export AWS_ACCESS_KEY_ID=cairn-test AWS_SECRET_ACCESS_KEY=cairn-test AWS_REGION=us-east-1"
echo "export CAIRN_TEST_S3_BUCKET=cairn-test"
echo "export CAIRN_TEST_POSTGRES_URL=postgres://cairn@127.0.0.1:$pg_port/cairn_test"
echo "export CAIRN_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
