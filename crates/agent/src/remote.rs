//! The server as a `cairn-backup` block store: batched missing-id queries and uploads over the
//! storage API (`docs/format/wire.md`).
//!
//! The engine calls the store from its worker threads (never from the async runtime); each call
//! blocks its thread on one request, so the requests in flight are bounded by the engine's
//! workers. Uploads are idempotent on the server, so a killed backup resumes by asking again
//! which blocks are missing: nothing acknowledged is sent twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_backup::{BlockStore, StoreError};
use cairn_seal::BlockId;
use cairn_wire as wire;
use reqwest::Method;

use crate::AgentError;
use crate::client::{Body, Client};

/// Most bytes in one upload request (well under the route's 64 MiB limit).
const UPLOAD_BYTES: usize = 16 << 20;

/// A reference list is sent complete after this many deltas in a row, so that the server
/// rebuilds any list from a short chain (it refuses chains longer than its own bound, 64).
const DELTAS_BETWEEN_COMPLETE: u32 = 32;

/// The last reference list this store sent: its snapshot, the full list, and how many deltas
/// led to it since the last complete one.
struct LastList {
    snapshot: BlockId,
    refs: Vec<BlockId>,
    depth: u32,
}

/// Requests and bytes a [`RemoteStore`] sent.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Requests made.
    pub requests: AtomicU64,
    /// Body bytes uploaded.
    pub bytes_up: AtomicU64,
    /// Body bytes downloaded.
    pub bytes_down: AtomicU64,
}

/// The server's storage API for one user, as a [`BlockStore`].
pub struct RemoteStore {
    client: Arc<Client>,
    runtime: tokio::runtime::Handle,
    user: String,
    traffic: Arc<Traffic>,
    last_list: Mutex<Option<LastList>>,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn store_error(e: AgentError) -> StoreError {
    match e {
        AgentError::Http { status: 404, .. } => StoreError::NotFound,
        other => StoreError::Other(Box::new(other)),
    }
}

/// A server's answer that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
struct BadAnswer {
    what: &'static str,
    #[source]
    source: cairn_wire::WireError,
}

fn answer(what: &'static str, source: cairn_wire::WireError) -> StoreError {
    StoreError::Other(Box::new(BadAnswer { what, source }))
}

impl RemoteStore {
    /// A store for `user` through `client`; requests run on `runtime` (the caller's thread
    /// blocks on each, so it must not be one of the runtime's).
    pub fn new(client: Arc<Client>, runtime: tokio::runtime::Handle, user: &str) -> Self {
        Self {
            client,
            runtime,
            user: user.to_owned(),
            traffic: Arc::default(),
            last_list: Mutex::default(),
        }
    }

    /// What it has sent and received so far.
    pub fn traffic(&self) -> Arc<Traffic> {
        Arc::clone(&self.traffic)
    }

    fn call(&self, method: Method, path: &str, body: Option<Body>) -> Result<Vec<u8>, StoreError> {
        let path = format!("/users/{}{path}", self.user);
        let up = body.as_ref().map_or(0, |b| b.bytes.len() as u64);
        let out = self
            .runtime
            .block_on(self.client.call(method, &path, body))
            .map_err(store_error)?;
        self.traffic.requests.fetch_add(1, Ordering::Relaxed);
        self.traffic.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.traffic
            .bytes_down
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    fn ids_body(ids: &[BlockId]) -> Body {
        Body {
            bytes: wire::encode_ids(ids).into(),
            media_type: wire::IDS_MEDIA_TYPE,
        }
    }

    fn fetch(&self, ids: &[BlockId]) -> Result<Vec<Vec<u8>>, StoreError> {
        let body = self.call(Method::POST, "/blocks/fetch", Some(Self::ids_body(ids)))?;
        let blocks = wire::split_batch(&body).map_err(|e| answer("fetch answer", e))?;
        if blocks.len() != ids.len() {
            return Err(StoreError::Other(
                format!(
                    "fetch answer: {} blocks for {} ids",
                    blocks.len(),
                    ids.len()
                )
                .into(),
            ));
        }
        Ok(blocks.into_iter().map(<[u8]>::to_vec).collect())
    }
}

impl BlockStore for RemoteStore {
    fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, StoreError> {
        let mut out = Vec::new();
        for batch in ids.chunks(wire::MAX_IDS) {
            let body = self.call(Method::POST, "/blocks/missing", Some(Self::ids_body(batch)))?;
            out.extend(wire::decode_ids(&body).map_err(|e| answer("missing answer", e))?);
        }
        Ok(out)
    }

    fn put_blocks(&self, blocks: Vec<(BlockId, Vec<u8>)>) -> Result<(), StoreError> {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        let send = |batch: &mut Vec<Vec<u8>>| -> Result<(), StoreError> {
            if batch.is_empty() {
                return Ok(());
            }
            let body = Body {
                bytes: wire::encode_batch(batch).into(),
                media_type: wire::BLOCKS_MEDIA_TYPE,
            };
            batch.clear();
            self.call(Method::POST, "/blocks", Some(body)).map(drop)
        };
        for (_, block) in blocks {
            if !batch.is_empty()
                && (bytes + block.len() > UPLOAD_BYTES || batch.len() == wire::MAX_BATCH_BLOCKS)
            {
                send(&mut batch)?;
                bytes = 0;
            }
            bytes += block.len();
            batch.push(block);
        }
        send(&mut batch)
    }

    fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.fetch(std::slice::from_ref(id))?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    fn get_blocks(&self, ids: &[BlockId]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(wire::MAX_BATCH_BLOCKS) {
            out.extend(self.fetch(batch)?);
        }
        Ok(out)
    }

    fn put_snapshot(&self, id: &BlockId, sealed: Vec<u8>) -> Result<(), StoreError> {
        let body = Body {
            bytes: sealed.into(),
            media_type: "application/octet-stream",
        };
        self.call(Method::PUT, &format!("/snapshots/{id}"), Some(body))
            .map(drop)
    }

    /// Sends the snapshot with its reference list: a delta against the last list this store
    /// sent, while it has one and the chain is short, else complete. A delta the server
    /// refuses (`409`: its base was forgotten, say) is sent again complete.
    fn put_snapshot_with_refs(
        &self,
        id: &BlockId,
        sealed: Vec<u8>,
        refs: &[BlockId],
    ) -> Result<(), StoreError> {
        let mut last = self
            .last_list
            .lock()
            .map_err(|_| StoreError::Other("reference list lock poisoned".into()))?;
        let delta = last
            .as_ref()
            .filter(|l| l.depth < DELTAS_BETWEEN_COMPLETE)
            .map(|l| {
                (
                    wire::refs::RefList::delta(l.snapshot, &l.refs, refs),
                    l.depth + 1,
                )
            });
        let send = |list: &wire::refs::RefList| {
            let body = Body {
                bytes: wire::encode_snapshot(&sealed, list).into(),
                media_type: wire::SNAPSHOT_MEDIA_TYPE,
            };
            self.call(Method::PUT, &format!("/snapshots/{id}"), Some(body))
        };
        let depth = match delta {
            Some((list, depth)) => match send(&list) {
                Ok(_) => depth,
                Err(StoreError::Other(e))
                    if matches!(
                        e.downcast_ref::<AgentError>(),
                        Some(AgentError::Http { status: 409, .. })
                    ) =>
                {
                    send(&wire::refs::RefList::complete(refs.to_vec()))?;
                    0
                }
                Err(e) => return Err(e),
            },
            None => {
                send(&wire::refs::RefList::complete(refs.to_vec()))?;
                0
            }
        };
        *last = Some(LastList {
            snapshot: *id,
            refs: refs.to_vec(),
            depth,
        });
        Ok(())
    }

    fn list_snapshots(&self) -> Result<Vec<BlockId>, StoreError> {
        let body = self.call(Method::GET, "/snapshots", None)?;
        wire::decode_ids(&body).map_err(|e| answer("snapshot list", e))
    }

    fn get_snapshot(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.call(Method::GET, &format!("/snapshots/{id}"), None)
    }
}
