//! Time as the verifier sees it: whole seconds, injected through [`Clock`], written in tokens as
//! canonical RFC 3339 UTC strings (`2026-11-27T13:00:00Z`).

use core::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::TimeError;

/// The earliest representable instant: 1970-01-01T00:00:00Z.
pub const MIN_TIMESTAMP: i64 = 0;
/// The latest representable instant: 9999-12-31T23:59:59Z (the last RFC 3339 four-digit year).
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// An instant in whole seconds since the Unix epoch, between [`MIN_TIMESTAMP`] and
/// [`MAX_TIMESTAMP`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest instant, [`MIN_TIMESTAMP`].
    pub const MIN: Timestamp = Timestamp(MIN_TIMESTAMP);
    /// The latest instant, [`MAX_TIMESTAMP`].
    pub const MAX: Timestamp = Timestamp(MAX_TIMESTAMP);

    /// `secs` seconds after the Unix epoch, if in range.
    pub fn from_unix(secs: i64) -> Result<Self, TimeError> {
        if (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(TimeError::OutOfRange)
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// `self + secs`, saturating at the representable range.
    pub fn saturating_add(self, secs: i64) -> Self {
        Self(
            self.0
                .saturating_add(secs)
                .clamp(MIN_TIMESTAMP, MAX_TIMESTAMP),
        )
    }

    /// `self - secs`, saturating at the representable range.
    pub fn saturating_sub(self, secs: i64) -> Self {
        Self(
            self.0
                .saturating_sub(secs)
                .clamp(MIN_TIMESTAMP, MAX_TIMESTAMP),
        )
    }

    /// Parses the one canonical spelling: `YYYY-MM-DDTHH:MM:SSZ`, UTC, no fraction, no offset.
    /// Anything RFC 3339 allows beyond that (`+00:00`, `.5`, lowercase `t`/`z`) is rejected, so a
    /// timestamp has exactly one encoding.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        if s.len() != 20 {
            return Err(TimeError::NotCanonical);
        }
        let parsed = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| TimeError::NotCanonical)?;
        let ts = Self::from_unix(parsed.unix_timestamp())?;
        if ts.to_rfc3339() == s {
            Ok(ts)
        } else {
            Err(TimeError::NotCanonical)
        }
    }

    /// The canonical RFC 3339 spelling.
    pub fn to_rfc3339(self) -> String {
        // In range by construction, so both conversions succeed; the fallback is never taken.
        OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default()
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where the verifier gets "now". The library never reads the system clock itself: the server
/// passes a clock backed by `SystemTime`, tests pass a [`ManualClock`].
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(at.unix())))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.unix(), Ordering::SeqCst);
    }

    /// Moves the clock forward (or back, if negative) by `secs`.
    pub fn advance(&self, secs: i64) {
        let next = self.now().saturating_add(secs);
        self.set(next);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        // Only `set` writes it, always with an in-range value.
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_only() {
        let t = Timestamp::parse_rfc3339("2026-11-27T13:00:00Z").unwrap();
        assert_eq!(t.unix(), 1_795_784_400);
        assert_eq!(t.to_rfc3339(), "2026-11-27T13:00:00Z");
        for bad in [
            "2026-11-27T13:00:00+00:00",
            "2026-11-27T13:00:00.0Z",
            "2026-11-27t13:00:00z",
            "2026-11-27 13:00:00Z",
            "2026-11-27T13:00:60Z",
            "2026-02-30T13:00:00Z",
            "1969-12-31T23:59:59Z",
            "-001-11-27T13:00:00Z",
            "99999999999",
            "",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Timestamp::parse_rfc3339("9999-12-31T23:59:59Z")
                .unwrap()
                .unix(),
            MAX_TIMESTAMP
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00Z")
                .unwrap()
                .unix(),
            0
        );
        assert!(Timestamp::from_unix(-1).is_err());
        assert!(Timestamp::from_unix(MAX_TIMESTAMP + 1).is_err());
    }
}
