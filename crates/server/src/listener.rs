//! The accept loop: TLS with a handshake deadline, a cap on open connections, HTTP/1.1 and
//! HTTP/2 with a header-read deadline, request bodies with idle and total deadlines, and idle
//! connections closed (S-10, S-11; the crate's `admission` module).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::ServerError;
use crate::admission::{BodyTimedOut, Connection, TimedBody};

/// Connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's accept queue (S-11).
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake (S-10: a stalled handshake is dropped).
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers (S-10: slowloris); also how long a
    /// connection may stay open before a request on it authenticates.
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request body; a body that stalls longer is cut
    /// off and answered `408` (S-10: headers sent, body never).
    pub body_idle_timeout: Duration,
    /// Longest time a whole request body may take, from its headers (the agent's own request
    /// timeout is the same 300 s: a 64 MiB upload needs about 1.8 Mbit/s).
    pub body_total_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// After a connection is told to close, how long its last answer may take to be written
    /// before the connection is dropped (a client that does not read its answer).
    pub close_grace: Duration,
    /// HTTP/2 streams at once per connection (S-13).
    pub max_concurrent_streams: u32,
    /// Header lines per request; more get 431 (S-9).
    pub max_headers: usize,
    /// Bytes of request line and headers (HTTP/1.1 read buffer, HTTP/2 header list); more get
    /// 431 (S-9).
    pub max_header_bytes: usize,
    /// Bytes of request body, the ceiling for every route (the route table sets each route's
    /// own, tighter limit); a larger `Content-Length` gets 413 before the body is read, a
    /// larger chunked body is cut off (S-8). The default is the largest route limit (uploads).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            body_total_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(90),
            close_grace: Duration::from_secs(30),
            max_concurrent_streams: 64,
            max_headers: 100,
            max_header_bytes: 16 << 10,
            max_body_bytes: 64 << 20,
        }
    }
}

/// The routes every deployment has. `GET /healthz` answers `ok` without authentication.
pub fn base_router() -> axum::Router {
    axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }))
}

/// The layers every router gets (S-7, S-8, S-10): a handler that panics answers a bare 500 and
/// the server keeps serving; bodies are limited to `limits.max_body_bytes`; a request is in
/// flight on its connection (which is not idle meanwhile) until its answer is made; a body
/// that ran past its deadline is answered `408` and its connection closed.
pub fn harden(app: axum::Router, limits: &Limits) -> axum::Router {
    app.layer(tower_http::limit::RequestBodyLimitLayer::new(
        limits.max_body_bytes,
    ))
    .layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let _in_flight = req
                .extensions()
                .get::<Arc<Connection>>()
                .map(Connection::start);
            let timed_out = req.extensions().get::<BodyTimedOut>().cloned();
            let response = next.run(req).await;
            if timed_out.is_some_and(|t| t.0.load(std::sync::atomic::Ordering::SeqCst)) {
                use axum::response::IntoResponse;
                return (
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    [(axum::http::header::CONNECTION, "close")],
                    "request body too slow\n",
                )
                    .into_response();
            }
            response
        },
    ))
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(
        |_panic: Box<dyn std::any::Any + Send>| {
            use axum::response::IntoResponse;
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n",
            )
                .into_response()
        },
    ))
}

/// What a [`serve`] loop is doing with its connections, for metrics and tests: how many it
/// holds, how many it accepted, and whether it waits for one to close before it accepts again.
#[derive(Debug, Default)]
pub struct Connections {
    open: std::sync::atomic::AtomicUsize,
    accepted: std::sync::atomic::AtomicU64,
    at_cap: std::sync::atomic::AtomicBool,
}

impl Connections {
    /// Connections accepted and not yet closed (each holds one of `max_connections`).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the loop started.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Whether the loop holds `max_connections` and waits for one to close: a client that
    /// connects now stays in the kernel's accept queue, its handshake not started.
    pub fn at_cap(&self) -> bool {
        self.at_cap.load(Ordering::SeqCst)
    }
}

/// A connection's hold on its slot: counted open until dropped.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    connections: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` (with [`harden`]'s layers) over TLS on `listener` until `shutdown` completes.
///
/// A connection is accepted only when one of `max_connections` permits is free, so excess
/// clients wait in the accept queue instead of exhausting file descriptors; the TLS handshake
/// and the request headers each have a deadline. Errors on one connection end that connection
/// only.
///
/// # Errors
/// Never for a client's misbehaviour; [`ServerError::Io`] only if the connection semaphore is
/// closed (which this function never does).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let connections = Arc::default();
    serve_counted(listener, tls, app, limits, connections, shutdown).await
}

/// [`serve`], keeping `connections` up to date.
///
/// # Errors
/// As [`serve`].
pub async fn serve_counted(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: axum::Router,
    limits: Limits,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let app = harden(app, &limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                connections.at_cap.store(true, Ordering::SeqCst);
                let permit = tokio::select! {
                    permit = permits.clone().acquire_owned() => permit
                        .map_err(|e| ServerError::io("connection limit", std::io::Error::other(e)))?,
                    () = &mut shutdown => return Ok(()),
                };
                connections.at_cap.store(false, Ordering::SeqCst);
                permit
            }
        };

        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors or a connection reset before accept: back off, go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        connections.accepted.fetch_add(1, Ordering::SeqCst);
        connections.open.fetch_add(1, Ordering::SeqCst);
        let permit = Slot {
            _permit: permit,
            connections: Arc::clone(&connections),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_headers(limits.max_headers)
                // hyper's read buffer cannot be smaller than 8 KiB.
                .max_buf_size(limits.max_header_bytes.max(8192));
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams)
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
            // The socket's peer, for per-address limits (never a client-written header); the
            // connection, for its principal's caps and its idle deadline; the body's deadlines.
            let connection = Arc::new(Connection::default());
            let conn = Arc::clone(&connection);
            let app = tower::ServiceExt::map_request(
                app,
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let timed_out = BodyTimedOut::default();
                    let mut req = req.map(|body| {
                        axum::body::Body::new(TimedBody::new(
                            body,
                            limits.body_idle_timeout,
                            limits.body_total_timeout,
                            timed_out.clone(),
                        ))
                    });
                    req.extensions_mut()
                        .insert(crate::ratelimit::PeerAddr(peer));
                    req.extensions_mut().insert(Arc::clone(&conn));
                    req.extensions_mut().insert(timed_out);
                    req
                },
            );
            let service = TowerToHyperService::new(app);
            let served = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(served);
            // A client that goes away mid-request is its own problem.
            tokio::select! {
                _ = served.as_mut() => return,
                () = connection.idle_expired(limits.header_read_timeout, limits.idle_timeout) => {}
            }
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.close_grace, served).await;
        });
    }
}
