//! Unix test helpers shared by the backup engine's and the agent's tests (the agent's include
//! this file): running a test without root's rights, and making a FIFO.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Runs `body` without the rights that let root read any file: as root, this test binary runs
/// itself (copied where any user can execute it) as `nobody` (65534) with only the test `name`
/// selected, and this passes when that run passed exactly one test. Not as root (or in that
/// run), `body` runs here.
pub fn unprivileged(name: &str, body: impl FnOnce()) {
    const MARK: &str = "CAIRN_TEST_UNPRIVILEGED";
    if std::env::var_os(MARK).is_some() || !rustix::process::geteuid().is_root() {
        body();
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.path().join("unprivileged-test");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(MARK, "1")
        .env("TMPDIR", "/tmp")
        .current_dir("/tmp")
        .gid(65534)
        .uid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the unprivileged run failed:\n{stdout}\n{stderr}"
    );
}

/// Makes a FIFO at `path`.
pub fn make_fifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}
