//! File events: ingest from devices, search and OCSF export.

use std::sync::atomic::Ordering;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use cairn_token::Capability::EventsRead;
use cairn_token::{Owner, Role, VerifiedToken, authorize};

use super::state::{ApiError, Svc, Token, binary, internal, tenant_of, unix_nanos};
use crate::events::{self, EventsError};

impl From<EventsError> for ApiError {
    fn from(e: EventsError) -> Self {
        match e {
            EventsError::Invalid(_) | EventsError::BadCursor => Self::BadRequest,
            EventsError::Provenance => Self::Refused,
            other => internal("events", &other),
        }
    }
}

pub(super) async fn ingest(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    let claims = token.claims();
    // Events come from devices: the batch's device must be the token's (S-6).
    let Some(device) = &claims.device else {
        return Err(ApiError::Forbidden);
    };
    let sender = events::Sender {
        tenant: &claims.tenant,
        user: &claims.subject,
        device,
    };
    svc.db.touch_device(&claims.tenant, device, None).await?;
    let done = match events::ingest(&svc.db, &svc.ring, &sender, &body, unix_nanos()).await {
        Err(EventsError::Provenance) => {
            svc.metrics
                .provenance_rejections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                tenant = sender.tenant.as_str(),
                device = sender.device.as_str(),
                "event batch names another device"
            );
            return Err(ApiError::Refused);
        }
        other => other?,
    };
    svc.metrics
        .events_ingested
        .fetch_add(done.accepted as u64, Ordering::Relaxed);
    Ok(axum::Json(done).into_response())
}

/// The users whose events a token may read: a user's token only their own.
pub(super) fn event_scope(token: &VerifiedToken) -> Result<Option<&str>, ApiError> {
    let c = token.claims();
    match c.role {
        Role::Admin | Role::Service => Ok(None),
        Role::User => {
            authorize(token, &c.tenant, EventsRead, Owner::User(&c.subject))
                .map_err(|_| ApiError::Forbidden)?;
            Ok(Some(c.subject.as_str()))
        }
    }
}

#[derive(serde::Serialize)]
pub(super) struct SearchPage<'a> {
    events: Vec<cairn_events::ocsf::FileSystemActivity<'a>>,
    next: Option<String>,
}

pub(super) async fn search(
    Extension(token): Token,
    Extension(svc): Svc,
    query: Result<Query<events::Query>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // The extractor's own rejection would echo the query: answer the fixed 400 instead.
    let Query(query) = query.map_err(|_| ApiError::BadRequest)?;
    let only = event_scope(&token)?;
    let page = events::search(&svc.db, &svc.ring, tenant_of(&token), &query, only).await?;
    let body = SearchPage {
        events: page
            .events
            .iter()
            .map(|e| cairn_events::ocsf::to_ocsf(e, env!("CARGO_PKG_VERSION")))
            .collect(),
        next: page.next.clone(),
    };
    Ok(axum::Json(body).into_response())
}

/// Most events one export answer carries; the `cairn-next` header continues.
pub const MAX_EXPORT: usize = 50_000;

/// OCSF NDJSON for SIEMs: one File System Activity object per line.
pub(super) async fn export(
    Extension(token): Token,
    Extension(svc): Svc,
    query: Result<Query<events::Query>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut query) = query.map_err(|_| ApiError::BadRequest)?;
    let only = event_scope(&token)?;
    let tenant = tenant_of(&token);
    let mut out = Vec::new();
    let mut written = 0;
    let next = loop {
        let page = events::search(&svc.db, &svc.ring, tenant, &query, only).await?;
        written +=
            cairn_events::ocsf::write_ndjson(&page.events, env!("CARGO_PKG_VERSION"), &mut out)
                .map_err(|e| internal("export", &e))?;
        match page.next {
            Some(next) if written < MAX_EXPORT => query.after = Some(next),
            other => break other,
        }
    };
    let mut response = binary("application/x-ndjson", out);
    if let Some(next) = next
        && let Ok(v) = HeaderValue::from_str(&next)
    {
        response.headers_mut().insert("cairn-next", v);
    }
    Ok(response)
}
