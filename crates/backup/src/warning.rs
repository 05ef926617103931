//! What a backup could not record as it found it: entries it skipped and files that changed
//! while they were read. A backup with warnings still writes its snapshot (everything else is
//! in it) and says what is missing or suspect, in its summary and in the snapshot record.

use std::fmt;
use std::path::PathBuf;

/// Warnings a snapshot record lists (its count of all of them is exact; the summary lists
/// every one).
pub const MAX_RECORDED_WARNINGS: usize = 1000;

/// Read attempts of a file that keeps changing while it is read, before it is stored as last
/// read (with [`WarningKind::ChangedWhileRead`]).
pub const READ_ATTEMPTS: u32 = 3;

/// Why an entry is missing from a snapshot or may not be what the disk held at any instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WarningKind {
    /// Could not be read (permissions, vanished, an I/O error): not in the snapshot, or (for
    /// extended attributes only) in it without them.
    Unreadable,
    /// Changed during every one of [`READ_ATTEMPTS`] reads: stored as last read, which may mix
    /// versions.
    ChangedWhileRead,
    /// A FIFO, socket or device: not backed up. Noted, not a warning of the exit status
    /// ([`WarningKind::is_warning`]): such files hold no data of their own.
    SpecialFile,
    /// A kind this version does not know (from a newer writer).
    Other(u8),
}

impl WarningKind {
    /// The record's code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Unreadable => 1,
            Self::ChangedWhileRead => 2,
            Self::SpecialFile => 3,
            Self::Other(c) => c,
        }
    }

    /// The kind of a record's code.
    #[must_use]
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Unreadable,
            2 => Self::ChangedWhileRead,
            3 => Self::SpecialFile,
            c => Self::Other(c),
        }
    }

    /// Whether it makes a backup "completed with warnings" (everything but special files).
    #[must_use]
    pub fn is_warning(self) -> bool {
        !matches!(self, Self::SpecialFile)
    }

    /// A short name (`unreadable`, `changed-while-read`, `special-file`, `other`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::ChangedWhileRead => "changed-while-read",
            Self::SpecialFile => "special-file",
            Self::Other(_) => "other",
        }
    }
}

/// One entry a backup could not record as it found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// What happened.
    pub kind: WarningKind,
    /// The entry's path as walked.
    pub path: PathBuf,
    /// The cause, for a person (the operating system's error, or what changed).
    pub detail: String,
}

impl Warning {
    pub(crate) fn new(
        kind: WarningKind,
        path: impl Into<PathBuf>,
        detail: impl fmt::Display,
    ) -> Self {
        Self {
            kind,
            path: path.into(),
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.path.display(),
            self.kind.name(),
            self.detail
        )
    }
}
