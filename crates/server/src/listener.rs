//! The accept loop: TLS with a handshake deadline, a cap on open connections, HTTP/1.1 and
//! HTTP/2 with a header-read deadline (S-10, S-11).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::ServerError;

/// Connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's accept queue (S-11).
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake (S-10: a stalled handshake is dropped).
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers (S-10: slowloris).
    pub header_read_timeout: Duration,
    /// HTTP/2 streams at once per connection (S-13).
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_streams: 64,
        }
    }
}

/// The routes every deployment has. `GET /healthz` answers `ok` without authentication.
pub fn base_router() -> axum::Router {
    axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes.
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
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit
                .map_err(|e| ServerError::io("connection limit", std::io::Error::other(e)))?,
            () = &mut shutdown => return Ok(()),
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                // Out of descriptors or a connection reset before accept: back off, go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
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
                .header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams);
            let service = TowerToHyperService::new(app);
            // A client that goes away mid-request is its own problem.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
