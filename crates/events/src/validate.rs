//! Validation of untrusted event batches.

use prost::Message;

use crate::v1::{Activity, EventBatch, ExposureKind, FileEvent};

/// Bounds applied by [`validate_batch`]. [`Limits::default`] is what the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded batch, checked before decoding.
    pub max_batch_bytes: usize,
    /// Most events in one batch.
    pub max_events: usize,
    /// Longest path, in bytes.
    pub max_path_bytes: usize,
    /// Longest other string (user, owner, process, destination), in bytes.
    pub max_string_bytes: usize,
    /// Earliest accepted observation time (nanoseconds since the Unix epoch).
    pub min_observed_unix_nanos: i64,
    /// How far past the injected `now` an observation time may be (agent clock skew).
    pub max_future_skew_nanos: i64,
}

impl Limits {
    /// Default largest batch: 4 MiB.
    pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
    /// Default most events per batch (S-14).
    pub const MAX_EVENTS: usize = 10_000;
    /// Default longest path (Linux `PATH_MAX`).
    pub const MAX_PATH_BYTES: usize = 4096;
    /// Default longest other string.
    pub const MAX_STRING_BYTES: usize = 1024;
    /// Length of the agent version string.
    pub const MAX_AGENT_VERSION_BYTES: usize = 64;
    /// Default earliest observation: 2000-01-01T00:00:00Z.
    pub const MIN_OBSERVED_UNIX_NANOS: i64 = 946_684_800_000_000_000;
    /// Default clock skew allowance: 5 minutes.
    pub const MAX_FUTURE_SKEW_NANOS: i64 = 300_000_000_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_bytes: Self::MAX_BATCH_BYTES,
            max_events: Self::MAX_EVENTS,
            max_path_bytes: Self::MAX_PATH_BYTES,
            max_string_bytes: Self::MAX_STRING_BYTES,
            min_observed_unix_nanos: Self::MIN_OBSERVED_UNIX_NANOS,
            max_future_skew_nanos: Self::MAX_FUTURE_SKEW_NANOS,
        }
    }
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The encoded batch is larger than [`Limits::max_batch_bytes`]; nothing was decoded.
    #[error("batch of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid `EventBatch` (protobuf decoding failed, including nesting deeper
    /// than prost's limit of 100).
    #[error("the batch is not valid protobuf: {0}")]
    Decode(String),
    /// More events than [`Limits::max_events`].
    #[error("batch has {count} events, more than the limit of {max}")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field of the batch itself is missing or out of bounds.
    #[error("batch field {field}: {reason}")]
    InvalidBatch {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field of one event is missing or out of bounds.
    #[error("event {index}, field {field}: {reason}")]
    InvalidEvent {
        /// Position of the event in the batch.
        index: usize,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Decodes and validates an untrusted `EventBatch`.
///
/// `now_unix_nanos` is the caller's clock (injected, so tests and replays are deterministic).
///
/// # Errors
/// The first [`EventError`] found, in this order: size (before decoding), decoding, event count,
/// batch fields, then each event in order.
pub fn validate_batch(
    bytes: &[u8],
    limits: &Limits,
    now_unix_nanos: i64,
) -> Result<EventBatch, EventError> {
    if bytes.len() > limits.max_batch_bytes {
        return Err(EventError::TooLarge {
            len: bytes.len(),
            max: limits.max_batch_bytes,
        });
    }
    let batch = EventBatch::decode(bytes).map_err(|e| EventError::Decode(e.to_string()))?;
    if batch.events.len() > limits.max_events {
        return Err(EventError::TooManyEvents {
            count: batch.events.len(),
            max: limits.max_events,
        });
    }
    let bad = |field, reason| EventError::InvalidBatch { field, reason };
    if batch.device_id.len() != 16 {
        return Err(bad("device_id", "must be 16 bytes"));
    }
    if batch.agent_version.len() > Limits::MAX_AGENT_VERSION_BYTES {
        return Err(bad("agent_version", "longer than 64 bytes"));
    }
    if batch.events.is_empty() {
        return Err(bad("events", "a batch holds at least one event"));
    }
    let latest = now_unix_nanos.saturating_add(limits.max_future_skew_nanos);
    for (index, event) in batch.events.iter().enumerate() {
        validate_event(event, limits, latest).map_err(|(field, reason)| {
            EventError::InvalidEvent {
                index,
                field,
                reason,
            }
        })?;
    }
    Ok(batch)
}

type FieldError = (&'static str, &'static str);

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.len() > max {
        return Err((field, "too long"));
    }
    Ok(())
}

fn check_hash(field: &'static str, h: &[u8]) -> Result<(), FieldError> {
    if !(h.is_empty() || h.len() == 32) {
        return Err((field, "must be empty or 32 bytes"));
    }
    Ok(())
}

fn validate_event(e: &FileEvent, limits: &Limits, latest: i64) -> Result<(), FieldError> {
    if e.event_id.len() != 16 {
        return Err(("event_id", "must be 16 bytes"));
    }
    if e.observed_unix_nanos < limits.min_observed_unix_nanos {
        return Err(("observed_unix_nanos", "before the earliest accepted time"));
    }
    if e.observed_unix_nanos > latest {
        return Err((
            "observed_unix_nanos",
            "in the future beyond the allowed clock skew",
        ));
    }
    let activity = Activity::try_from(e.activity).map_err(|_| ("activity", "unknown value"))?;
    if activity == Activity::Unspecified {
        return Err(("activity", "unspecified"));
    }
    let file = e.file.as_ref().ok_or(("file", "missing"))?;
    if file.path.is_empty() {
        return Err(("file.path", "empty"));
    }
    check_len("file.path", &file.path, limits.max_path_bytes)?;
    check_len(
        "file.previous_path",
        &file.previous_path,
        limits.max_path_bytes,
    )?;
    if (activity == Activity::Rename) == file.previous_path.is_empty() {
        return Err((
            "file.previous_path",
            "required for renames and only for renames",
        ));
    }
    check_len("file.owner", &file.owner, limits.max_string_bytes)?;
    check_hash("file.sha256", &file.sha256)?;
    check_hash("file.blake3", &file.blake3)?;
    if let Some(actor) = &e.actor {
        check_len("actor.user", &actor.user, limits.max_string_bytes)?;
        check_len(
            "actor.process_name",
            &actor.process_name,
            limits.max_string_bytes,
        )?;
        check_len("actor.executable", &actor.executable, limits.max_path_bytes)?;
    }
    if let Some(x) = &e.exposure {
        let kind =
            ExposureKind::try_from(x.kind).map_err(|_| ("exposure.kind", "unknown value"))?;
        if kind == ExposureKind::Unspecified {
            return Err(("exposure.kind", "unspecified"));
        }
        check_len(
            "exposure.destination",
            &x.destination,
            limits.max_string_bytes,
        )?;
    }
    if let Some(b) = &e.backup {
        if b.archive_id.len() != 16 {
            return Err(("backup.archive_id", "must be 16 bytes"));
        }
        if b.snapshot_id.len() != 32 {
            return Err(("backup.snapshot_id", "must be 32 bytes"));
        }
    }
    Ok(())
}
