#!/usr/bin/env bash
# Every test: the workspace on the embedded defaults, then the server's and the agent's suites
# again on real PostgreSQL and S3 servers (with the scale-out tests that need them), then the
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
# The integration suites again, on PostgreSQL and S3; --include-ignored adds the tests that
# need those servers (tests/scale_out.rs of both crates).
CAIRN_TEST_BACKENDS=shared cargo test --locked -p cairn-server -p cairn-agent -- --include-ignored

# The console in a real browser (tests/console.rs): Debian's Chromium through ChromeDriver.
if ! command -v chromedriver >/dev/null || ! [[ -x /usr/bin/chromium ]]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >&2
fi
cargo test --locked --test console -- --include-ignored
