//! The event service: ingest validated batches labelled from the verified token (S-6),
//! idempotent per (device, batch sequence), durable before the answer; stored sealed with the
//! storage key ring; searched by time range, device, user, activity and path prefix, with
//! paging; exported as OCSF.

use cairn_events::v1::{EventBatch, ServerEnvelope, StoredEvent};
use cairn_events::{EventError, Limits, validate_batch};
use prost::Message;
use sqlx::Row;

use crate::atrest::{AtRestError, KeyRing};
use crate::db::{Db, DbError};

/// Why ingest or search failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// The batch is not a valid batch.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// The batch names another device than the token (S-6).
    #[error("the batch names another device than the token")]
    Provenance,
    /// Sealing or opening a stored event failed.
    #[error(transparent)]
    AtRest(#[from] AtRestError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The paging cursor is not one this server gave.
    #[error("bad cursor")]
    BadCursor,
    /// A stored event does not decode (a damaged row).
    #[error("a stored event does not decode")]
    Damaged,
}

impl From<sqlx::Error> for EventsError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Sql(e))
    }
}

/// Who sent a batch, from the verified token.
#[derive(Clone, Debug)]
pub struct Sender<'a> {
    /// The token's tenant.
    pub tenant: &'a str,
    /// The token's user.
    pub user: &'a str,
    /// The token's device (32 hex digits: its 16-byte wire id).
    pub device: &'a str,
}

/// What ingest did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Ingested {
    /// Events stored by this call.
    pub accepted: usize,
    /// Whether this (device, sequence) had been stored before (nothing stored again).
    pub duplicate: bool,
}

/// A search.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Observed at or after (Unix nanoseconds).
    pub from: Option<i64>,
    /// Observed before (Unix nanoseconds).
    pub to: Option<i64>,
    /// Only this device.
    pub device: Option<String>,
    /// Only this user.
    pub user: Option<String>,
    /// Only this activity (the protobuf enum's number).
    pub activity: Option<i32>,
    /// Only paths that start with this.
    pub path_prefix: Option<String>,
    /// Continue after this cursor (from the previous page).
    pub after: Option<String>,
    /// Most events to return (default and cap [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

/// Events per INSERT statement (9 bound values each, well under SQLite's 32,766).
const INSERT_ROWS: usize = 500;

/// The largest page.
pub const MAX_PAGE: usize = 1_000;
/// Most rows one search reads before it returns a (possibly short) page with a cursor: bounds
/// the work of a path-prefix search, which filters after decryption.
pub const SCAN_BUDGET: usize = 20_000;

/// A page of results.
#[derive(Debug)]
pub struct Page {
    /// The events, oldest first.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts, if there may be more.
    pub next: Option<String>,
}

/// The AAD binding a sealed event to its row.
fn context(tenant: &str, user: &str, device: &str, sequence: u64, index: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(64 + tenant.len() + user.len() + device.len());
    c.extend_from_slice(b"cairn-event-v1\0");
    for part in [tenant, user, device] {
        c.extend_from_slice(part.as_bytes());
        c.push(0);
    }
    c.extend_from_slice(&sequence.to_le_bytes());
    c.extend_from_slice(&index.to_le_bytes());
    c
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Ingests one encoded batch from `sender`, at server time `now` (Unix nanoseconds).
///
/// # Errors
/// [`EventsError`]; nothing is stored on error.
pub async fn ingest(
    db: &Db,
    ring: &KeyRing,
    sender: &Sender<'_>,
    body: &[u8],
    now: i64,
) -> Result<Ingested, EventsError> {
    let batch: EventBatch = validate_batch(body, &Limits::default(), now)?;
    if hex::encode(&batch.device_id) != sender.device {
        return Err(EventsError::Provenance);
    }
    // Seal before the transaction: it holds SQLite's write lock for as short as possible.
    let mut rows = Vec::with_capacity(batch.events.len());
    let nonces = KeyRing::nonces(batch.events.len())?;
    for ((index, event), nonce) in batch.events.into_iter().enumerate().zip(nonces) {
        let index = index as u64;
        let mut server_event_id = Vec::with_capacity(24);
        server_event_id.extend_from_slice(&batch.device_id);
        server_event_id.extend_from_slice(&batch.batch_sequence.to_le_bytes());
        let observed = event.observed_unix_nanos;
        let activity = event.activity;
        let stored = StoredEvent {
            envelope: Some(ServerEnvelope {
                tenant_id: sender.tenant.to_owned(),
                user_id: sender.user.to_owned(),
                device_id: batch.device_id.clone(),
                received_unix_nanos: now,
                server_event_id: {
                    let mut id = server_event_id;
                    id.extend_from_slice(&index.to_le_bytes());
                    id
                },
            }),
            event: Some(event),
        };
        let ctx = context(
            sender.tenant,
            sender.user,
            sender.device,
            batch.batch_sequence,
            index,
        );
        let (key_id, sealed) = ring.seal_with_nonce(nonce, &ctx, &stored.encode_to_vec())?;
        rows.push((index, observed, activity, key_id.to_owned(), sealed));
    }
    let mut tx = db.pool().begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO event_batches (tenant, device, sequence, events, received_unix_nanos)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, device, sequence) DO NOTHING",
    )
    .bind(sender.tenant)
    .bind(sender.device)
    .bind(as_i64(batch.batch_sequence))
    .bind(as_i64(rows.len() as u64))
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        tx.rollback().await?;
        return Ok(Ingested {
            accepted: 0,
            duplicate: true,
        });
    }
    let accepted = rows.len();
    // Multi-row inserts: one statement per `INSERT_ROWS` events (each row binds 9 values).
    for chunk in rows.chunks(INSERT_ROWS) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO events (tenant, user_id, device, batch_sequence, batch_index,
                                 observed_nanos, activity, key_id, sealed) ",
        );
        insert.push_values(
            chunk,
            |mut row, (index, observed, activity, key_id, sealed)| {
                row.push_bind(sender.tenant)
                    .push_bind(sender.user)
                    .push_bind(sender.device)
                    .push_bind(as_i64(batch.batch_sequence))
                    .push_bind(as_i64(*index))
                    .push_bind(*observed)
                    .push_bind(*activity)
                    .push_bind(key_id.as_str())
                    .push_bind(sealed.as_slice());
            },
        );
        insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Ingested {
        accepted,
        duplicate: false,
    })
}

/// Searches the tenant's events. `only_user` restricts to one user (a user's own token).
///
/// # Errors
/// [`EventsError`].
pub async fn search(
    db: &Db,
    ring: &KeyRing,
    tenant: &str,
    query: &Query,
    only_user: Option<&str>,
) -> Result<Page, EventsError> {
    let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let after: i64 = match &query.after {
        Some(c) => c.parse().map_err(|_| EventsError::BadCursor)?,
        None => 0,
    };
    let user = only_user.map(str::to_owned).or_else(|| query.user.clone());
    // Ordered by row id (arrival order); filters narrow it. The indexes by (tenant, time),
    // (tenant, device, time) and (tenant, user, time) serve the time-bounded searches.
    let rows = sqlx::query(
        "SELECT id, user_id, device, batch_sequence, batch_index, key_id, sealed FROM events
         WHERE tenant = $1 AND id > $2
           AND ($3 IS NULL OR observed_nanos >= $3)
           AND ($4 IS NULL OR observed_nanos < $4)
           AND ($5 IS NULL OR device = $5)
           AND ($6 IS NULL OR user_id = $6)
           AND ($7 IS NULL OR activity = $7)
         ORDER BY id LIMIT $8",
    )
    .bind(tenant)
    .bind(after)
    .bind(query.from)
    .bind(query.to)
    .bind(query.device.as_deref())
    .bind(user.as_deref())
    .bind(query.activity)
    .bind(as_i64(SCAN_BUDGET as u64))
    .fetch_all(db.pool())
    .await?;
    let scanned = rows.len();
    let mut events = Vec::new();
    let mut last = after;
    for row in rows {
        let id: i64 = row.get(0);
        last = id;
        let (user, device): (String, String) = (row.get(1), row.get(2));
        let sequence = u64::try_from(row.get::<i64, _>(3)).map_err(|_| EventsError::Damaged)?;
        let index = u64::try_from(row.get::<i64, _>(4)).map_err(|_| EventsError::Damaged)?;
        let key_id: String = row.get(5);
        let sealed: Vec<u8> = row.get(6);
        let ctx = context(tenant, &user, &device, sequence, index);
        let plain = ring.open(&key_id, &ctx, &sealed)?;
        let stored = StoredEvent::decode(plain.as_slice()).map_err(|_| EventsError::Damaged)?;
        if let Some(prefix) = &query.path_prefix {
            let path = stored
                .event
                .as_ref()
                .and_then(|e| e.file.as_ref())
                .map_or("", |f| f.path.as_str());
            if !path.starts_with(prefix.as_str()) {
                continue;
            }
        }
        events.push(stored);
        if events.len() == limit {
            break;
        }
    }
    let more = events.len() == limit || scanned == SCAN_BUDGET;
    Ok(Page {
        events,
        next: more.then(|| last.to_string()),
    })
}
