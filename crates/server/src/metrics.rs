//! Counters, and their Prometheus text exposition (format 0.0.4) for the operator's metrics
//! listener. The metrics listener is separate from the public API (`serve_metrics`): it binds
//! to loopback by default ([`DEFAULT_METRICS_ADDR`]), and names tenants only when asked to
//! ([`MetricsOptions::per_tenant`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::archives::Archives;
use crate::db::Db;

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests refused for a missing or invalid credential.
    pub auth_failures: AtomicU64,
    /// Event batches refused because they named another device than the token (S-6).
    pub provenance_rejections: AtomicU64,
    /// Events stored.
    pub events_ingested: AtomicU64,
    /// Bytes appended to archives.
    pub bytes_stored: AtomicU64,
    /// Requests answered, by (method, route pattern, status).
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, method: &'static str, route: &'static str, status: u16) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method, route, status)).or_default() += 1;
        }
    }

    /// The Prometheus text exposition: these counters, the archives' integrity figures, and
    /// (with `options.per_tenant`) each tenant's quota use read from `db`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn render(
        &self,
        db: &Db,
        archives: &Archives,
        options: MetricsOptions,
    ) -> Result<String, crate::db::DbError> {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        counter(
            &mut out,
            "cairn_auth_failures_total",
            "Requests refused for a missing or invalid credential.",
            &self.auth_failures,
        );
        counter(
            &mut out,
            "cairn_event_provenance_rejections_total",
            "Event batches naming another device than their token.",
            &self.provenance_rejections,
        );
        counter(
            &mut out,
            "cairn_events_ingested_total",
            "Events stored.",
            &self.events_ingested,
        );
        counter(
            &mut out,
            "cairn_bytes_stored_total",
            "Bytes appended to archives.",
            &self.bytes_stored,
        );
        let _ = writeln!(
            out,
            "# HELP cairn_http_requests_total Requests answered, by route and status.\n# TYPE cairn_http_requests_total counter"
        );
        if let Ok(r) = self.requests.lock() {
            for ((method, route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "cairn_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let gauge = |out: &mut String, kind: &str, name: &str, help: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "counter",
            "cairn_archive_lost_records_total",
            "Acknowledged data records found missing when an archive was opened (since start).",
            i64::try_from(archives.lost_records()).unwrap_or(i64::MAX),
        );
        gauge(
            &mut out,
            "counter",
            "cairn_archive_damaged_openings_total",
            "Archive openings that found acknowledged history shortened or replaced (since start).",
            i64::try_from(archives.damaged_openings()).unwrap_or(i64::MAX),
        );
        gauge(
            &mut out,
            "gauge",
            "cairn_archives_damaged",
            "Archives marked damaged and not yet cleared by an operator.",
            db.damaged_archives().await?,
        );
        if !options.per_tenant {
            return Ok(out);
        }
        let _ = writeln!(
            out,
            "# HELP cairn_quota_bytes A tenant's storage quota.\n# TYPE cairn_quota_bytes gauge\n# HELP cairn_quota_used_bytes A tenant's stored bytes.\n# TYPE cairn_quota_used_bytes gauge"
        );
        for (tenant, quota) in db.quotas().await? {
            // Tenant ids are `[a-z0-9-]`: nothing to escape.
            let _ = writeln!(
                out,
                "cairn_quota_bytes{{tenant=\"{tenant}\"}} {}",
                quota.quota_bytes
            );
            let _ = writeln!(
                out,
                "cairn_quota_used_bytes{{tenant=\"{tenant}\"}} {}",
                quota.used_bytes
            );
        }
        Ok(out)
    }
}

/// What the metrics exposition includes beyond the server-wide figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Each tenant's quota and use, labelled with the tenant's id (off by default: tenant
    /// names are the operator's customers, and whoever reaches the metrics port reads them).
    pub per_tenant: bool,
}

/// The metrics port's default address: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// Serves `GET /metrics` (plain HTTP) on `listener` until `shutdown`: the operator's port, to
/// bind to loopback (the default, [`DEFAULT_METRICS_ADDR`]) or a private network, never the
/// public one.
///
/// # Errors
/// The listener failed.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    services: std::sync::Arc<crate::routes::Services>,
    options: MetricsOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), crate::ServerError> {
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let services = std::sync::Arc::clone(&services);
            async move {
                match services
                    .metrics
                    .render(&services.db, &services.archives, options)
                    .await
                {
                    Ok(text) => (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(e) => {
                        tracing::error!(error = %e, "metrics");
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| crate::ServerError::io("metrics listener", e))
}
