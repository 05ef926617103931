#!/usr/bin/env bash
# Every test: the workspace on the embedded defaults, then again with the server's and the agent's
# backends on real PostgreSQL and S3 servers, adding the scale-out tests that need them and the
# console in headless Chromium. Starts those servers on 127.0.0.1 (scripts/services.sh installs
# them if missing) and stops them at the end; installs Debian's chromium and chromium-driver if
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
svc="$PWD/target/services/run"
mkdir -p "$svc"
trap 'bash scripts/services.sh stop "$svc"' EXIT
eval "$(bash scripts/services.sh start "$svc")"

# Every package of the lock file, for every platform: tests/architecture.rs reads the whole
# dependency graph with `cargo metadata --offline` (a build fetches only this platform's).
cargo fetch --locked
cargo test --workspace --locked

# Every suite again with the server's and the agent's backends on PostgreSQL and S3, and with the
# ignored tests: the scale-out tests that need those servers (tests/scale_out.rs of both crates)
# and the console in a real browser (tests/console.rs: Debian's Chromium through ChromeDriver).
# The whole workspace rather than `-p cairn-server -p cairn-agent`: the same selection reuses the
# build above, where the two-package one rebuilt the workspace's crates and, in CI, about 80 of
# their dependencies (2.5 minutes there). `write_upload_seed` is not a test but a tool that
# rewrites a committed fuzz seed; `server_process` and `instance_process` are the child processes
# of the crash and scale-out tests (they fail when run on their own).
if ! command -v chromedriver >/dev/null || ! [[ -x /usr/bin/chromium ]]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >&2
fi
CAIRN_TEST_BACKENDS=shared cargo test --workspace --locked --lib --tests -- \
    --include-ignored --skip write_upload_seed --skip server_process --skip instance_process
