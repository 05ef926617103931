//! The event service: ingest validated batches labelled from the verified token (S-6),
//! idempotent per (device, batch sequence), durable before the answer; stored sealed with the
//! storage key ring; searched by time range, device, user, activity and path prefix, with
//! paging; exported as OCSF.

use cairn_events::v1::{EventBatch, HashKeying, ServerEnvelope, StoredEvent};
use cairn_events::{EventError, Limits, validate_batch};
use cairn_token::{DeviceId, TenantId, UserId};
use prost::Message;
use sqlx::Row;

use crate::atrest::{AtRestError, KeyRing};
use crate::db::{Db, DbError, Engine};

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
pub(crate) struct Sender<'a> {
    /// The token's tenant.
    pub tenant: &'a TenantId,
    /// The token's user.
    pub user: &'a UserId,
    /// The token's device (32 hex digits: its 16-byte wire id).
    pub device: &'a DeviceId,
}

/// What ingest did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Ingested {
    /// Events stored by this call.
    pub accepted: usize,
    /// Whether this (device, sequence) had been stored before (nothing stored again).
    pub duplicate: bool,
}

/// A search.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Query {
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
    /// Only events with this exposure kind (its OCSF name, `removable_media`…; see
    /// `cairn_events::ocsf::exposure_name`).
    pub exposure: Option<String>,
    /// Continue after this cursor (from the previous page).
    pub after: Option<String>,
    /// Most events to return (default and cap [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

/// Events per INSERT statement (10 bound values each, well under SQLite's 32,766 and
/// PostgreSQL's 65,535).
const INSERT_ROWS: usize = 500;

/// The largest page.
pub(crate) const MAX_PAGE: usize = 1_000;
/// Batches read per query of a search.
const BATCHES_PER_QUERY: i64 = 64;
/// Most rows one search reads before it returns a (possibly short) page with a cursor: bounds
/// the work of a path-prefix search, which filters after decryption.
pub(crate) const SCAN_BUDGET: usize = 20_000;

/// A page of results.
#[derive(Debug)]
pub(crate) struct Page {
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

/// One event of a batch, sealed and ready for its row.
struct SealedRow {
    /// Its index in the batch.
    index: u64,
    observed: i64,
    activity: i32,
    /// The storage key that sealed it.
    key_id: String,
    sealed: Vec<u8>,
}

/// Ingests one encoded batch from `sender`, at server time `now` (Unix nanoseconds).
///
/// # Errors
/// [`EventsError`]; nothing is stored on error.
pub(crate) async fn ingest(
    db: &Db,
    ring: &KeyRing,
    sender: &Sender<'_>,
    body: &[u8],
    now: i64,
) -> Result<Ingested, EventsError> {
    let mut batch: EventBatch = validate_batch(body, &Limits::default(), now)?;
    if hex::encode(&batch.device_id) != sender.device.as_str() {
        return Err(EventsError::Provenance);
    }
    // Seal before the transaction: it holds SQLite's write lock for as short as possible.
    let rows = seal_rows(ring, sender, &mut batch, now)?;
    let sequence = as_i64(batch.batch_sequence);
    let mut tx = db.pool().begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO event_batches (tenant, device, sequence, events, received_unix_nanos, user_id)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, device, sequence) DO NOTHING",
    )
    .bind(sender.tenant.as_str())
    .bind(sender.device.as_str())
    .bind(sequence)
    .bind(as_i64(rows.len() as u64))
    .bind(now)
    .bind(sender.user.as_str())
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
    // The batch's id range, taken from the counter row: the update locks that row until this
    // transaction ends (SQLite: the one write lock), so batches take their ranges in commit
    // order and a batch's events are one contiguous range on every engine.
    let n = as_i64(accepted as u64);
    let next: i64 = sqlx::query_scalar(
        "UPDATE event_ids SET next_id = next_id + $1 WHERE singleton = 0 RETURNING next_id",
    )
    .bind(n)
    .fetch_one(&mut *tx)
    .await?;
    let first = next - n;
    if accepted > 0 {
        // Multi-row inserts: one statement per `INSERT_ROWS` events (each row binds 10 values).
        let mut id = first;
        for chunk in rows.chunks(INSERT_ROWS) {
            let sql = insert_events_sql(db.engine(), chunk.len());
            let mut insert = sqlx::query(&sql);
            for row in chunk {
                insert = insert
                    .bind(id)
                    .bind(sender.tenant.as_str())
                    .bind(sender.user.as_str())
                    .bind(sender.device.as_str())
                    .bind(sequence)
                    .bind(as_i64(row.index))
                    .bind(row.observed)
                    .bind(i64::from(row.activity))
                    .bind(row.key_id.as_str())
                    .bind(row.sealed.as_slice());
                id += 1;
            }
            insert.execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE event_batches SET first_event = $1, last_event = $2
             WHERE tenant = $3 AND device = $4 AND sequence = $5",
        )
        .bind(first)
        .bind(next - 1)
        .bind(sender.tenant.as_str())
        .bind(sender.device.as_str())
        .bind(sequence)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Ingested {
        accepted,
        duplicate: false,
    })
}

/// Takes the events out of `batch` and seals each with its server envelope, bound to its row
/// (tenant, user, device, batch sequence, index).
fn seal_rows(
    ring: &KeyRing,
    sender: &Sender<'_>,
    batch: &mut EventBatch,
    now: i64,
) -> Result<Vec<SealedRow>, EventsError> {
    let events = std::mem::take(&mut batch.events);
    let mut rows = Vec::with_capacity(events.len());
    let nonces = KeyRing::nonces(events.len())?;
    for ((index, mut event), nonce) in events.into_iter().enumerate().zip(nonces) {
        let index = index as u64;
        // The file hashes are stored keyed per tenant: no one without the key ring can test a
        // known file against stored or exported events (docs/threat-model.md).
        if let Some(file) = event.file.as_mut() {
            for (algorithm, digest) in [("sha256", &mut file.sha256), ("blake3", &mut file.blake3)]
            {
                if !digest.is_empty() {
                    *digest = ring
                        .tenant_hash(sender.tenant.as_str(), algorithm, digest)
                        .to_vec();
                }
            }
        }
        let mut server_event_id = Vec::with_capacity(24);
        server_event_id.extend_from_slice(&batch.device_id);
        server_event_id.extend_from_slice(&batch.batch_sequence.to_le_bytes());
        server_event_id.extend_from_slice(&index.to_le_bytes());
        let observed = event.observed_unix_nanos;
        let activity = event.activity;
        let stored = StoredEvent {
            envelope: Some(ServerEnvelope {
                tenant_id: sender.tenant.as_str().to_owned(),
                user_id: sender.user.as_str().to_owned(),
                device_id: batch.device_id.clone(),
                received_unix_nanos: now,
                server_event_id,
                hash_keying: HashKeying::TenantV1 as i32,
            }),
            event: Some(event),
        };
        let ctx = context(
            sender.tenant.as_str(),
            sender.user.as_str(),
            sender.device.as_str(),
            batch.batch_sequence,
            index,
        );
        let (key_id, sealed) = ring.seal_with_nonce(nonce, &ctx, &stored.encode_to_vec())?;
        rows.push(SealedRow {
            index,
            observed,
            activity,
            key_id: key_id.to_owned(),
            sealed,
        });
    }
    Ok(rows)
}

/// The statement inserting `rows` events (10 values each).
fn insert_events_sql(engine: Engine, rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO events (id, tenant, user_id, device, batch_sequence, batch_index,
                             observed_nanos, activity, key_id, sealed) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        if engine == Engine::Sqlite {
            // Anonymous parameters: SQLite looks a numbered one up by walking a list of every
            // name (sqlite3_bind_parameter_name), which made 5,000-value inserts quadratic (86 %
            // of ingest time in a profile; 9k events/s against 150k).
            sql.push_str("(?,?,?,?,?,?,?,?,?,?)");
        } else {
            let b = i * 10;
            sql.push('(');
            for k in 1..=10 {
                if k > 1 {
                    sql.push(',');
                }
                sql.push_str(&format!("${}", b + k));
            }
            sql.push(')');
        }
    }
    sql
}

/// A value bound to a [`Select`].
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// A SELECT assembled from optional conditions, with `$N` placeholders (what both engines
/// accept; sqlx's query builder writes `?` for its `Any` driver, which PostgreSQL refuses).
struct Select<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

impl<'a> Select<'a> {
    fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            args: Vec::new(),
        }
    }

    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    fn bind(&mut self, arg: Arg<'a>) {
        self.args.push(arg);
        self.sql.push_str(&format!("${}", self.args.len()));
    }

    /// ` AND <condition><placeholder>`.
    fn and(&mut self, condition: &str, arg: Arg<'a>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.bind(arg);
    }

    async fn fetch_all(self, db: &Db) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
        let mut query = sqlx::query(&self.sql);
        for arg in self.args {
            query = match arg {
                Arg::Text(t) => query.bind(t),
                Arg::Int(i) => query.bind(i),
            };
        }
        query.fetch_all(db.pool()).await
    }
}

/// Searches the tenant's events. `only_user` restricts to one user (a user's own token).
///
/// # Errors
/// [`EventsError`].
pub(crate) async fn search(
    db: &Db,
    ring: &KeyRing,
    tenant: &TenantId,
    query: &Query,
    only_user: Option<&str>,
) -> Result<Page, EventsError> {
    let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let after: i64 = match &query.after {
        Some(c) => c.parse().map_err(|_| EventsError::BadCursor)?,
        None => 0,
    };
    let user = only_user.map(str::to_owned).or_else(|| query.user.clone());
    // Batches in row-id order (their event ranges are disjoint and ascending), then each
    // batch's events by row-id range: index range scans only (migration 0002). `walked`
    // counts the event rows in the ranges visited, matching or not: the work bound.
    let mut events = Vec::new();
    let mut walked = 0usize;
    let mut last = after;
    'pages: loop {
        let mut batches = Select::new(
            "SELECT user_id, device, sequence, first_event, last_event FROM event_batches
             WHERE tenant = ",
        );
        batches.bind(Arg::Text(tenant.as_str()));
        batches.and("last_event > ", Arg::Int(last));
        if let Some(device) = &query.device {
            batches.and("device = ", Arg::Text(device));
        }
        if let Some(user) = &user {
            batches.and("user_id = ", Arg::Text(user));
        }
        batches.push(" ORDER BY last_event LIMIT ");
        batches.bind(Arg::Int(BATCHES_PER_QUERY));
        let batches = batches.fetch_all(db).await?;
        if batches.is_empty() {
            break;
        }
        for batch in &batches {
            let (user, device): (String, String) = (batch.try_get(0)?, batch.try_get(1)?);
            let sequence =
                u64::try_from(batch.try_get::<i64, _>(2)?).map_err(|_| EventsError::Damaged)?;
            let (first, end): (i64, i64) = (batch.try_get(3)?, batch.try_get(4)?);
            let start = first.max(last + 1);
            let mut rows =
                Select::new("SELECT id, batch_index, key_id, sealed FROM events WHERE id >= ");
            rows.bind(Arg::Int(start));
            rows.and("id <= ", Arg::Int(end));
            if let Some(from) = query.from {
                rows.and("observed_nanos >= ", Arg::Int(from));
            }
            if let Some(to) = query.to {
                rows.and("observed_nanos < ", Arg::Int(to));
            }
            if let Some(activity) = query.activity {
                rows.and("activity = ", Arg::Int(i64::from(activity)));
            }
            rows.push(" ORDER BY id");
            for row in rows.fetch_all(db).await? {
                let id: i64 = row.try_get(0)?;
                let index =
                    u64::try_from(row.try_get::<i64, _>(1)?).map_err(|_| EventsError::Damaged)?;
                let key_id: String = row.try_get(2)?;
                let sealed: Vec<u8> = row.try_get(3)?;
                let ctx = context(tenant.as_str(), &user, &device, sequence, index);
                let plain = ring.open(&key_id, &ctx, &sealed)?;
                let stored =
                    StoredEvent::decode(plain.as_slice()).map_err(|_| EventsError::Damaged)?;
                let event = stored.event.as_ref();
                let wanted = query.path_prefix.as_ref().is_none_or(|prefix| {
                    event
                        .and_then(|e| e.file.as_ref())
                        .is_some_and(|f| f.path.starts_with(prefix.as_str()))
                }) && query.exposure.as_ref().is_none_or(|kind| {
                    event.and_then(|e| e.exposure.as_ref()).is_some_and(|x| {
                        cairn_events::ocsf::exposure_name(
                            cairn_events::v1::ExposureKind::try_from(x.kind)
                                .unwrap_or(cairn_events::v1::ExposureKind::Unspecified),
                        ) == kind
                    })
                });
                if wanted {
                    events.push(stored);
                    if events.len() == limit {
                        walked += usize::try_from(id - start + 1).unwrap_or(0);
                        last = id;
                        break 'pages;
                    }
                }
            }
            // The whole range is done, matches or not.
            walked += usize::try_from(end - start + 1).unwrap_or(0);
            last = end;
            if walked >= SCAN_BUDGET {
                break 'pages;
            }
        }
    }
    let more = events.len() == limit || walked >= SCAN_BUDGET;
    Ok(Page {
        events,
        next: more.then(|| last.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL numbers each row's ten values on from the row before; SQLite's are anonymous.
    #[test]
    fn each_rows_placeholders_follow_the_last() {
        let pg = insert_events_sql(Engine::Postgres, 2);
        assert!(
            pg.ends_with(
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10),($11,$12,$13,$14,$15,$16,$17,$18,$19,$20)"
            ),
            "{pg}"
        );
        let sqlite = insert_events_sql(Engine::Sqlite, 2);
        assert!(
            sqlite.ends_with("VALUES (?,?,?,?,?,?,?,?,?,?),(?,?,?,?,?,?,?,?,?,?)"),
            "{sqlite}"
        );
    }
}
