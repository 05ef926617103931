//! Progress of a backup, restore or check, reported to a callback the binaries draw as bars.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which operation is reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading files (unchanged files count as done as soon as the cache vouches for them).
    Backup,
    /// Writing files.
    Restore,
    /// Reading blocks back (`check --read-data`).
    Check,
}

/// Where an operation stands. A backup's `*_total` grow while its walk runs (it reads files
/// while it walks on), and are final once the walk is done; a restore's and a check's are
/// known from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressState {
    /// The operation.
    pub phase: Phase,
    /// Files (or, for a check, blocks) done.
    pub files_done: u64,
    /// Files (or blocks) in all.
    pub files_total: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes_total: u64,
    /// Since the operation started.
    pub elapsed: Duration,
}

impl ProgressState {
    /// Bytes per second so far (0 before any time has passed).
    #[must_use]
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes_done as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the rate so far; `None` before anything was done.
    #[must_use]
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        if rate <= 0.0 {
            return None;
        }
        let left = self.bytes_total.saturating_sub(self.bytes_done) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }
}

/// Receives progress. Called from worker threads, after every file (or block); an
/// implementation that draws should rate-limit itself (indicatif does).
pub trait Progress: Send + Sync {
    /// The state after one more file (or block).
    fn update(&self, state: &ProgressState);
    /// The operation ended (successfully or not) in this state.
    fn finish(&self, state: &ProgressState) {
        let _ = state;
    }
}

/// Counters shared by the workers of one operation.
pub(crate) struct Meter<'a> {
    sink: Option<&'a dyn Progress>,
    phase: Phase,
    start: Instant,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
}

impl<'a> Meter<'a> {
    pub(crate) fn new(
        sink: Option<&'a dyn Progress>,
        phase: Phase,
        files_total: u64,
        bytes_total: u64,
    ) -> Self {
        Self {
            sink,
            phase,
            start: Instant::now(),
            files_total: AtomicU64::new(files_total),
            bytes_total: AtomicU64::new(bytes_total),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
        }
    }

    fn state(&self) -> ProgressState {
        ProgressState {
            phase: self.phase,
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            elapsed: self.start.elapsed(),
        }
    }

    /// The walk found `files` more files of `bytes` bytes.
    pub(crate) fn grow(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `files` more files of `bytes` bytes are done.
    pub(crate) fn add(&self, files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        if let Some(sink) = self.sink {
            sink.update(&self.state());
        }
    }
}

impl Drop for Meter<'_> {
    fn drop(&mut self) {
        if let Some(sink) = self.sink {
            sink.finish(&self.state());
        }
    }
}
