//! Security modes and the one-way transitions between them (K-8).

/// How an archive key is protected. Ordered from weakest to strongest; a mode can only ever be
/// strengthened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Escrowed to the escrow authority: an administrator can recover the key.
    Standard = 1,
    /// The escrowed copy is also locked by the user's password: the server alone cannot unwrap
    /// it, and a thief of the escrow database must also hold the escrow private key before an
    /// offline password guess is even possible.
    ArchivePassword = 2,
    /// Never escrowed: no server-side material can recover the key.
    CustomKey = 3,
}

impl Mode {
    /// The byte stored in the envelope header.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// The mode for a header byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Mode::Standard),
            2 => Some(Mode::ArchivePassword),
            3 => Some(Mode::CustomKey),
            _ => None,
        }
    }

    /// Whether an envelope of this mode may be stored by the server.
    pub fn is_escrowed(self) -> bool {
        self != Mode::CustomKey
    }
}

/// What the server must do to its escrowed copy when a mode change is accepted. Returned by
/// [`transition`], so that the server cannot accept the change and forget the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum EscrowAction {
    /// Same mode: keep the stored envelope (a re-wrap in the same mode replaces it the usual
    /// way).
    Keep,
    /// Store the new envelope and delete every older escrowed copy, in one transaction.
    Replace,
    /// Delete every escrowed copy; store nothing (the new mode is never escrowed).
    Delete,
}

/// Decides a mode change: only strengthening is allowed.
///
/// | from \ to | Standard | ArchivePassword | CustomKey |
/// | --- | --- | --- | --- |
/// | Standard | Keep | Replace | Delete |
/// | ArchivePassword | **refused** | Keep | Delete |
/// | CustomKey | **refused** | **refused** | Keep |
pub fn transition(from: Mode, to: Mode) -> Result<EscrowAction, crate::ModeError> {
    use core::cmp::Ordering;
    match to.cmp(&from) {
        Ordering::Less => Err(crate::ModeError::Downgrade),
        Ordering::Equal => Ok(EscrowAction::Keep),
        Ordering::Greater if to.is_escrowed() => Ok(EscrowAction::Replace),
        Ordering::Greater => Ok(EscrowAction::Delete),
    }
}
