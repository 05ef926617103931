//! The watcher: `notify` (inotify, FSEvents, ReadDirectoryChangesW) with a debouncer, over the
//! backed-up folder. It only says *that* something changed, and whether the OS lost events (an
//! overflow: a rescan is needed); what changed is found by the next backup, whose walk with the
//! file cache reads only files whose metadata moved, and whose snapshot diff makes the events.
//! A periodic full scan (a backup with no change seen) catches anything the OS never reported.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{
    DebounceEventResult, Debouncer, RecommendedCache, new_debouncer, notify::RecommendedWatcher,
};

use crate::AgentError;

/// What a wait saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Debounced events about paths inside the folder.
    pub changes: usize,
    /// The OS dropped events (queue overflow) or the watcher failed: scan everything.
    pub rescan: bool,
    /// Watcher errors, as text (reported, and treated as a rescan).
    pub errors: Vec<String>,
    /// The changed paths (not the ignored ones), each with the wall-clock time it changed
    /// (Unix ns).
    pub paths: Vec<(PathBuf, i64)>,
    /// Those of `paths` that an event reported as created.
    pub created: Vec<PathBuf>,
}

impl Seen {
    /// Whether anything calls for a backup.
    pub fn any(&self) -> bool {
        self.changes > 0 || self.rescan
    }
}

/// A recursive watch of one folder.
pub struct Watch {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    rx: Receiver<DebounceEventResult>,
    ignore: Vec<PathBuf>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// Watches `folder` recursively; events are delivered `debounce` after a path's last
    /// change. Events under any of `ignore` are not counted.
    ///
    /// # Errors
    /// [`AgentError::State`] if the OS refuses the watch (inotify watch limit, say).
    pub fn start(
        folder: &Path,
        debounce: Duration,
        ignore: Vec<PathBuf>,
    ) -> Result<Self, AgentError> {
        Self::start_roots(&[folder], debounce, ignore)
    }

    /// [`Watch::start`] over several folders, each recursively.
    ///
    /// # Errors
    /// [`AgentError::State`] if the OS watcher cannot start or a folder cannot be watched.
    pub fn start_roots(
        roots: &[&Path],
        debounce: Duration,
        ignore: Vec<PathBuf>,
    ) -> Result<Self, AgentError> {
        let (tx, rx) = channel();
        let mut debouncer = new_debouncer(debounce, None, tx)
            .map_err(|e| AgentError::State(format!("watcher: {e}")))?;
        for root in roots {
            debouncer
                .watch(root, RecursiveMode::Recursive)
                .map_err(|e| AgentError::State(format!("watching {}: {e}", root.display())))?;
        }
        Ok(Self {
            _debouncer: debouncer,
            rx,
            ignore,
        })
    }

    /// Waits up to `timeout` for the first batch of events, then takes whatever else is
    /// already queued.
    pub fn wait(&self, timeout: Duration) -> Seen {
        let mut seen = Seen::default();
        let deadline = Instant::now() + timeout;
        let mut first = true;
        loop {
            let got = if first {
                self.rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            } else {
                self.rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            };
            match got {
                Ok(Ok(events)) => {
                    for e in &events {
                        if e.need_rescan() {
                            seen.rescan = true;
                        }
                        // Reads (inotify's open and close-without-write) change nothing; the
                        // backup's own reads would otherwise trigger the next backup.
                        if e.kind.is_access() {
                            continue;
                        }
                        let at = wall_clock_ns(e.time);
                        let before = seen.paths.len();
                        if e.kind.is_create() {
                            seen.created.extend(
                                e.paths
                                    .iter()
                                    .filter(|p| !self.ignore.iter().any(|i| p.starts_with(i)))
                                    .cloned(),
                            );
                        }
                        seen.paths.extend(
                            e.paths
                                .iter()
                                .filter(|p| !self.ignore.iter().any(|i| p.starts_with(i)))
                                .map(|p| (p.clone(), at)),
                        );
                        if seen.paths.len() > before {
                            seen.changes += 1;
                        }
                    }
                }
                Ok(Err(errors)) => {
                    seen.rescan = true;
                    seen.errors.extend(errors.iter().map(ToString::to_string));
                }
                Err(RecvTimeoutError::Timeout) => return seen,
                Err(RecvTimeoutError::Disconnected) => {
                    seen.rescan = true;
                    seen.errors.push("the watcher stopped".into());
                    return seen;
                }
            }
            first = false;
        }
    }
}

/// The wall-clock time (Unix ns) of a monotonic instant in the recent past.
fn wall_clock_ns(at: Instant) -> i64 {
    let ago = Instant::now().saturating_duration_since(at);
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sees_changes_in_new_subfolders_and_ignores_what_it_is_told_to() {
        let dir = tempfile::tempdir().unwrap();
        let ignored = dir.path().join(".cache");
        std::fs::create_dir(&ignored).unwrap();
        let watch =
            Watch::start(dir.path(), Duration::from_millis(50), vec![ignored.clone()]).unwrap();
        std::fs::write(ignored.join("noise"), b"x").unwrap();
        // Nothing but ignored paths: nothing seen (waits out the debounce and a margin).
        assert!(!watch.wait(Duration::from_millis(500)).any());
        // Reading a file is no change.
        std::fs::write(dir.path().join("read-me"), b"r").unwrap();
        // Settled: two quiet half-seconds in a row (the write's events may come late on a busy
        // machine).
        let (mut quiet, mut waits) = (0, 0);
        while quiet < 2 {
            quiet = if watch.wait(Duration::from_millis(500)).any() {
                0
            } else {
                quiet + 1
            };
            waits += 1;
            assert!(waits < 60, "the watcher never settled");
        }
        std::fs::read(dir.path().join("read-me")).unwrap();
        assert!(
            !watch.wait(Duration::from_millis(500)).any(),
            "a read counted as a change"
        );
        std::fs::create_dir(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new/file.txt"), b"hello").unwrap();
        let mut total = 0;
        for _ in 0..100 {
            total += watch.wait(Duration::from_millis(100)).changes;
            if total > 0 {
                break;
            }
        }
        assert!(total > 0, "no change seen");
    }
}
