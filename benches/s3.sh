#!/usr/bin/env bash
# Block upload through the S3 store (moto) with PostgreSQL metadata against the local store, and
# event ingest into PostgreSQL against SQLite, in the same run: starts the servers of
# scripts/services.sh, runs the server bench (ingest and upload on both servers, then the latency
# phase), stops them. CAIRN_BENCH_SECS=N per phase (default 5); CAIRN_BENCH_ONLY=upload|ingest
# runs one phase.
set -euo pipefail
cd "$(dirname "$0")/.."
svc="$PWD/target/services/bench"
mkdir -p "$svc"
trap 'bash scripts/services.sh stop "$svc"' EXIT
eval "$(bash scripts/services.sh start "$svc")"
CAIRN_BENCH_S3=1 CAIRN_BENCH_ONLY="${CAIRN_BENCH_ONLY:-}" cargo bench --locked --bench server
