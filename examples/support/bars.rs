//! Progress bars for the example binaries (shared by `backup` and `agent`).

use cairn::backup::{Phase, Progress, ProgressState};

/// Draws a bar for each operation (indicatif rate-limits the drawing).
pub(crate) struct Bars {
    bar: indicatif::ProgressBar,
}

impl Bars {
    pub(crate) fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {msg} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "));
        if let Ok(style) = style {
            bar.set_style(style);
        }
        Self { bar }
    }
}

impl Progress for Bars {
    fn update(&self, state: &ProgressState) {
        let prefix = match state.phase {
            Phase::Backup => "backup",
            Phase::Restore => "restore",
            Phase::Check => "check",
        };
        self.bar.set_prefix(prefix);
        if state.phase == Phase::Check {
            // A check knows its blocks, not their bytes.
            self.bar.set_length(state.files_total);
            self.bar.set_position(state.files_done);
        } else {
            self.bar.set_length(state.bytes_total);
            self.bar.set_position(state.bytes_done);
        }
        self.bar
            .set_message(format!("{}/{} files", state.files_done, state.files_total));
    }

    fn finish(&self, _state: &ProgressState) {
        self.bar.finish_and_clear();
    }
}
