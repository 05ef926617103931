//! The server's clock: what token checks, token issuing and the database's recorded times read,
//! injected (`ServerBuilder::clock`, `Db::with_clock`) so that tests can move it.

use cairn_token::{Clock, Timestamp};

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Timestamp::from_unix(secs).unwrap_or(Timestamp::MAX)
    }
}

/// A shared clock.
pub type SharedClock = std::sync::Arc<dyn Clock>;

/// The wall clock, shared.
#[must_use]
pub(crate) fn system() -> SharedClock {
    std::sync::Arc::new(SystemClock)
}
