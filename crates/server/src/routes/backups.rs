//! Backup storage: which blocks an archive lacks, block upload and fetch, snapshot records.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use cairn_seal::BlockId;
use cairn_token::Capability::{BackupList, BackupPut, BackupRead};

use super::state::{ApiError, Svc, Token, binary, blocking, tenant_of, user_scope};
use crate::archives::{KIND_BLOCK, KIND_SNAPSHOT, StoreError, block_id_from_hex};
use crate::wire;

pub(super) async fn missing(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupPut).await?;
    let ids = wire::decode_ids(&body).map_err(|_| ApiError::BadRequest)?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let missing = blocking(move || s.archives.missing(&tenant, &user, &ids)).await?;
    Ok(binary(wire::IDS_MEDIA_TYPE, wire::encode_ids(&missing)))
}

pub(super) async fn upload(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupPut).await?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let stored = blocking(move || {
        // Framing and each block's public header are checked before anything is stored.
        let blocks = wire::decode_upload(&body).map_err(|_| StoreError::Malformed)?;
        s.archives.put(&tenant, &user, KIND_BLOCK, &blocks)
    })
    .await?;
    svc.metrics
        .bytes_stored
        .fetch_add(stored.bytes, Ordering::Relaxed);
    Ok(axum::Json(stored).into_response())
}

pub(super) async fn fetch(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupRead).await?;
    let ids = wire::decode_ids(&body).map_err(|_| ApiError::BadRequest)?;
    if ids.len() > wire::MAX_BATCH_BLOCKS {
        return Err(ApiError::BadRequest);
    }
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let blocks = blocking(move || s.archives.get(&tenant, &user, KIND_BLOCK, &ids)).await?;
    Ok(binary(wire::BLOCKS_MEDIA_TYPE, wire::encode_batch(&blocks)))
}

pub(super) async fn list_snapshots(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupList).await?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let (t, u) = (tenant.clone(), user.clone());
    let mut ids = blocking(move || s.archives.snapshots(&t, &u)).await?;
    // A snapshot prune forgot is no longer listed (its record may stay until it is swept).
    let forgotten: std::collections::HashSet<String> = svc
        .db
        .snapshot_rows(&tenant, &user)
        .await?
        .into_iter()
        .filter(|r| r.forgotten_unix.is_some())
        .map(|r| r.id)
        .collect();
    if !forgotten.is_empty() {
        ids.retain(|id| !forgotten.contains(&hex::encode(id.as_bytes())));
    }
    Ok(binary(wire::IDS_MEDIA_TYPE, wire::encode_ids(&ids)))
}

pub(super) fn parse_id(hex_id: &str) -> Result<BlockId, ApiError> {
    block_id_from_hex(hex_id).ok_or(ApiError::BadRequest)
}

/// Stores a snapshot record: the sealed snapshot alone (`application/octet-stream`, version
/// 1: prune collects nothing of the archive while it is kept), or with its reference list
/// ([`wire::SNAPSHOT_MEDIA_TYPE`], `docs/format/wire.md` §5), checked against the archive.
pub(super) async fn put_snapshot(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupPut).await?;
    let id = parse_id(&id)?;
    let listed = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == wire::SNAPSHOT_MEDIA_TYPE.as_bytes());
    let (sealed_len, refs) = if listed {
        let (header_id, sealed, refs) =
            wire::decode_snapshot(&body).map_err(|_| ApiError::BadRequest)?;
        if header_id != id {
            return Err(ApiError::BadRequest);
        }
        (sealed.len(), Some(refs))
    } else {
        let header = cairn_seal::SealedHeader::parse(&body).map_err(|_| ApiError::BadRequest)?;
        if header.id != id {
            return Err(ApiError::BadRequest);
        }
        (body.len(), None)
    };
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let len = i64::try_from(sealed_len).map_err(|_| ApiError::BadRequest)?;
    let (t, u) = (tenant.clone(), user.clone());
    let stored = blocking(move || {
        let sealed = if listed {
            &body[4..4 + sealed_len]
        } else {
            &body[..]
        };
        s.archives.put_snapshot(&t, &u, &id, sealed, refs.as_ref())
    })
    .await?;
    svc.db
        .record_snapshot(
            &tenant,
            &user,
            &hex::encode(id.as_bytes()),
            token.claims().device.as_ref(),
            len,
        )
        .await?;
    Ok(axum::Json(stored).into_response())
}

pub(super) async fn get_snapshot(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupRead).await?;
    let id = parse_id(&id)?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let mut records =
        blocking(move || s.archives.get(&tenant, &user, KIND_SNAPSHOT, &[id])).await?;
    Ok(binary(
        "application/octet-stream",
        records.pop().unwrap_or_default(),
    ))
}
