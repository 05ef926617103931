//! Retention policies: the tenant's and per-user overrides, changed by the tenant's admins and
//! read by them (a user reads their own). A change that shortens retention waits out
//! [`SHORTENING_DELAY_SECS`]; none may go below the operator's floor. [`prune_user`] (and
//! `POST …/prune`) applies them (`crate::prune`, `docs/design/0009-retention-and-prune.md`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_token::Capability::BackupList;
use cairn_token::{TenantId, UserId};

use super::state::{
    ApiError, Services, Svc, Token, actor, admin_scope, blocking, tenant_of, user_scope,
};
use crate::archives::block_id_from_hex;
use crate::db::HoldRow;
use crate::forget::{Arrival, Verdict, hold, plan};
use crate::prune::{Forgetting, PruneOptions, PruneReport};
use crate::retention::{MAX_RULE, PolicyState, RetentionPolicy, SHORTENING_DELAY_SECS};

/// A policy as the API shows it.
#[derive(serde::Serialize)]
struct PolicyView {
    /// `user` (an override), `tenant`, or `default` (nothing written yet).
    source: &'static str,
    #[serde(flatten)]
    state: PolicyState,
    /// The least any rule may say.
    floor: RetentionPolicy,
    /// How long a shortening waits (seconds).
    shortening_delay_secs: i64,
}

/// The policy in effect for `user` (their override, else the tenant's) or for the tenant, never
/// below the operator's floor (a floor raised after a policy was written raises it), and the
/// floor.
async fn effective(
    svc: &Services,
    tenant: &TenantId,
    user: Option<&UserId>,
) -> Result<(&'static str, PolicyState, RetentionPolicy), ApiError> {
    let now = svc.db.unix_now();
    let floor = svc.db.retention_floor().await?;
    let raised = |(source, state): (&'static str, PolicyState)| {
        let state = PolicyState {
            policy: state.policy.at_least(&floor),
            pending: state.pending.map(|p| p.at_least(&floor)),
            ..state
        };
        Ok((source, state, floor))
    };
    if let Some(user) = user
        && let Some((policy, pending)) = svc.db.retention(tenant, Some(user)).await?
    {
        return raised(("user", PolicyState::at(policy, pending, now)));
    }
    if let Some((policy, pending)) = svc.db.retention(tenant, None).await? {
        return raised(("tenant", PolicyState::at(policy, pending, now)));
    }
    raised((
        "default",
        PolicyState::at(RetentionPolicy::DEFAULT, None, now),
    ))
}

fn view(source: &'static str, state: PolicyState, floor: RetentionPolicy) -> Response {
    axum::Json(PolicyView {
        source,
        state,
        floor,
        shortening_delay_secs: SHORTENING_DELAY_SECS,
    })
    .into_response()
}

/// The tenant's policy.
pub(super) async fn get_tenant_retention(
    Extension(token): Token,
    Extension(svc): Svc,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let (source, state, floor) = effective(&svc, tenant_of(&token), None).await?;
    Ok(view(source, state, floor))
}

/// Sets the tenant's policy.
pub(super) async fn put_tenant_retention(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    set(&svc, &token, None, &body).await
}

/// The policy a user's archive follows (their own token may read it).
pub(super) async fn get_user_retention(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupList).await?;
    let (source, state, floor) = effective(&svc, tenant_of(&token), Some(&user)).await?;
    Ok(view(source, state, floor))
}

/// Sets a user's override.
pub(super) async fn put_user_retention(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let user = UserId::new(&user).map_err(|_| ApiError::NotFound)?;
    if svc.db.user(tenant_of(&token), &user).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    set(&svc, &token, Some(&user), &body).await
}

async fn set(
    svc: &Services,
    token: &cairn_token::VerifiedToken,
    user: Option<&UserId>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let to: RetentionPolicy = serde_json::from_slice(body).map_err(|_| ApiError::BadRequest)?;
    let tenant = tenant_of(token);
    let (_, current, floor) = effective(svc, tenant, user).await?;
    if let Err(rule) = to.check(&floor) {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refused: {rule} is below the operator's floor or above {MAX_RULE}\n"),
        )
            .into_response());
    }
    let next = current.change(to, svc.db.unix_now());
    let stored = (next.policy, next.pending.zip(next.pending_from_unix));
    svc.db.set_retention(tenant, user, &stored).await?;
    let outcome = match next.pending_from_unix {
        Some(from) => format!("ok: keeps less, in effect from {from}"),
        None => "ok: in effect".to_owned(),
    };
    let target = user.map_or("tenant", UserId::as_str);
    svc.db
        .audit(tenant, &actor(token), "retention.set", target, &outcome)
        .await?;
    Ok(view(
        if user.is_some() { "user" } else { "tenant" },
        next,
        floor,
    ))
}

/// One device's snapshots, as the policy in effect judges them now.
#[derive(serde::Serialize)]
struct SeriesPlan {
    /// The device whose token stored them (`null`: stored before devices were recorded).
    device: Option<String>,
    /// Newest first.
    snapshots: Vec<Verdict>,
}

/// What the policy in effect would keep and forget of a user's archive now: restic's
/// `forget --dry-run`, evaluated by the server over arrival times, per device. Nothing is
/// forgotten by asking.
#[derive(serde::Serialize)]
struct PlanView {
    source: &'static str,
    policy: RetentionPolicy,
    now_unix: i64,
    kept: usize,
    forgotten: usize,
    /// The legal holds in place on the user or their devices.
    holds: Vec<HoldRow>,
    series: Vec<SeriesPlan>,
}

/// What the policy in effect keeps of a user's archive at `now`: the policy's source and
/// rules, the active holds, and each device's snapshots judged (forgotten ones left out).
async fn user_plan(
    svc: &Services,
    tenant: &TenantId,
    user: &UserId,
    now: i64,
) -> Result<(&'static str, RetentionPolicy, Vec<HoldRow>, Vec<SeriesPlan>), ApiError> {
    let (source, state, _) = effective(svc, tenant, Some(user)).await?;
    let mut by_device: std::collections::BTreeMap<Option<String>, Vec<Arrival>> =
        std::collections::BTreeMap::new();
    for row in svc.db.snapshot_rows(tenant, user).await? {
        if row.forgotten_unix.is_some() {
            continue;
        }
        by_device
            .entry(row.device.map(|d| d.to_string()))
            .or_default()
            .push(Arrival {
                id: row.id,
                received_unix: row.received_unix,
                order: row.received_seq,
            });
    }
    let mut holds = svc.db.holds(tenant, Some(user)).await?;
    holds.retain(HoldRow::active);
    let series: Vec<SeriesPlan> = by_device
        .into_iter()
        .map(|(device, arrivals)| {
            let mut snapshots = plan(&state.policy, &arrivals, now);
            let id: Option<cairn_token::DeviceId> = device.as_deref().and_then(|d| d.parse().ok());
            if holds.iter().any(|h| h.covers(id.as_ref())) {
                hold(&mut snapshots);
            }
            SeriesPlan { device, snapshots }
        })
        .collect();
    Ok((source, state.policy, holds, series))
}

/// The preview of what the policy keeps of a user's archive (their own token may read it).
pub(super) async fn get_user_retention_plan(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupList).await?;
    let tenant = tenant_of(&token);
    let now = svc.db.unix_now();
    let (source, policy, holds, series) = user_plan(&svc, tenant, &user, now).await?;
    let kept = series
        .iter()
        .flat_map(|s| &s.snapshots)
        .filter(|v| v.keep)
        .count();
    let total: usize = series.iter().map(|s| s.snapshots.len()).sum();
    Ok(axum::Json(PlanView {
        source,
        policy,
        now_unix: now,
        kept,
        forgotten: total - kept,
        holds,
        series,
    })
    .into_response())
}

/// Prunes one user's archive at `now` (Unix seconds): forgets what the policy in effect and
/// the legal holds no longer keep, then marks and sweeps ([`crate::Archives::prune`]). A
/// snapshot forgotten earlier whose series a hold now covers keeps its blocks. Audited as
/// `archive.prune` by `actor`.
///
/// # Errors
/// [`ApiError`] (a storage or database failure).
pub async fn prune_user(
    svc: &std::sync::Arc<Services>,
    tenant: &TenantId,
    user: &UserId,
    now: i64,
    options: PruneOptions,
    actor: &str,
) -> Result<PruneReport, ApiError> {
    let (_, _, holds, series) = user_plan(svc, tenant, user, now).await?;
    let mut forgetting = Forgetting::default();
    for v in series.iter().flat_map(|s| &s.snapshots).filter(|v| !v.keep) {
        if let Some(id) = block_id_from_hex(&v.id) {
            forgetting.now.push(id);
            forgetting.forgotten.insert(id);
        }
    }
    for row in svc.db.snapshot_rows(tenant, user).await? {
        let (Some(at), Some(id)) = (row.forgotten_unix, block_id_from_hex(&row.id)) else {
            continue;
        };
        if holds.iter().any(|h| h.covers(row.device.as_ref())) {
            continue;
        }
        forgetting.forgotten.insert(id);
        if now.saturating_sub(at) >= options.grace_secs {
            forgetting.sweepable.insert(id);
        }
    }
    let s = std::sync::Arc::clone(svc);
    let (t, u) = (tenant.clone(), user.clone());
    let report = blocking(move || s.archives.prune(&t, &u, &forgetting, now, options)).await?;
    let detail = serde_json::to_string(&report).unwrap_or_default();
    svc.db
        .audit(tenant, actor, "archive.prune", user.as_str(), &detail)
        .await?;
    Ok(report)
}

/// Prunes every archive, if the scheduled run is due and this instance claims it
/// ([`PruneOptions::every_hours`]); called by the server's maintenance loop. An archive that
/// fails is logged and the others go on. Returns how many archives were pruned.
///
/// # Errors
/// [`ApiError`] (reading the settings or the list of archives).
pub async fn scheduled_prune(svc: &std::sync::Arc<Services>) -> Result<usize, ApiError> {
    let options = svc.db.prune_options().await?;
    if options.every_hours == 0 {
        return Ok(0);
    }
    let now = svc.db.unix_now();
    if !svc
        .db
        .claim_scheduled_prune(now, i64::from(options.every_hours) * 3600)
        .await?
    {
        return Ok(0);
    }
    let mut pruned = 0;
    for (tenant, user) in svc.db.all_archives().await? {
        match prune_user(svc, &tenant, &user, now, options, "scheduled").await {
            Ok(_) => pruned += 1,
            Err(e) => tracing::warn!(
                tenant = tenant.as_str(),
                user = user.as_str(),
                error = ?e,
                "scheduled prune of an archive failed"
            ),
        }
    }
    Ok(pruned)
}

/// Prunes a user's archive now, under the operator's grace period and threshold (admins only:
/// no device or user token deletes).
pub(super) async fn post_user_prune(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let tenant = tenant_of(&token);
    let user = UserId::new(&user).map_err(|_| ApiError::NotFound)?;
    if svc.db.user(tenant, &user).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let now = svc.db.unix_now();
    let report = prune_user(
        &svc,
        tenant,
        &user,
        now,
        svc.db.prune_options().await?,
        &actor(&token),
    )
    .await?;
    Ok(axum::Json(report).into_response())
}
