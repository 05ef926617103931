//! The server assembled in one place: TLS from the data directory's PKI, the routes over its
//! services, the listener's limits, and the maintenance that runs while it serves. `server
//! serve` (examples/server.rs) and [`Embedded`](crate::embedded::Embedded) both start it
//! through [`Server::builder`], so they serve alike.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::ServerError;
use crate::clock::SharedClock;
use crate::data::DataDir;
use crate::listener::{Connections, Limits, serve_counted};
use crate::ratelimit::RateConfig;
use crate::routes::{AppState, Services, router};
use crate::tls::server_config;

/// How often a serving server forgets rate-limit keys whose limits have refilled, by default.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// How to build a [`Server`].
#[derive(Clone)]
pub struct ServerBuilder {
    host: String,
    rates: RateConfig,
    limits: Limits,
    maintenance_every: Duration,
    clock: SharedClock,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("host", &self.host)
            .field("rates", &self.rates)
            .field("limits", &self.limits)
            .field("maintenance_every", &self.maintenance_every)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The host name whose certificate it presents (default `localhost`).
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Its rate limits (default [`RateConfig::default`]).
    #[must_use]
    pub fn rates(mut self, rates: RateConfig) -> Self {
        self.rates = rates;
        self
    }

    /// Its listener's limits (default [`Limits::default`]).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How often it forgets idle rate-limit keys while it serves (default
    /// [`MAINTENANCE_EVERY`]): what bounds the limiters' memory.
    #[must_use]
    pub fn maintenance_every(mut self, every: Duration) -> Self {
        self.maintenance_every = every;
        self
    }

    /// Its clock (default the wall clock): what token checks, token issuing and the
    /// database's recorded times read. Archive leases, which other instances must agree on,
    /// keep the wall clock.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Opens `data`'s services and binds `listen` (port 0 for any).
    ///
    /// # Errors
    /// [`ServerError`]: the PKI, the database, the bind.
    pub async fn bind(self, data: &DataDir, listen: SocketAddr) -> Result<Server, ServerError> {
        let loaded = data.pki().load(&self.host, OffsetDateTime::now_utc())?;
        let tls = server_config(loaded.chain, loaded.key)?;
        let services = data
            .services_clocked(self.rates, Arc::clone(&self.clock))
            .await?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| ServerError::io(format!("binding {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::io("local address", e))?;
        let verifier = data.verifier(self.clock, &services)?;
        let app = router(Arc::new(AppState {
            verifier,
            services: Arc::clone(&services),
        }));
        Ok(Server {
            listener,
            addr,
            tls,
            app,
            services,
            limits: self.limits,
            maintenance_every: self.maintenance_every,
            connections: Arc::default(),
        })
    }
}

/// A server bound to its address, ready to [`serve`](Server::serve).
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    app: axum::Router,
    services: Arc<Services>,
    limits: Limits,
    maintenance_every: Duration,
    connections: Arc<Connections>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder with the defaults: host `localhost`, default rates and limits, maintenance
    /// every [`MAINTENANCE_EVERY`], the wall clock.
    #[must_use]
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            host: crate::embedded::HOST.to_owned(),
            rates: RateConfig::default(),
            limits: Limits::default(),
            maintenance_every: MAINTENANCE_EVERY,
            clock: crate::clock::system(),
        }
    }

    /// The address it is bound to.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its services (database, archives, limiters...).
    #[must_use]
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// What its accept loop holds.
    #[must_use]
    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// Serves until `shutdown` completes, forgetting idle rate-limit keys meanwhile.
    ///
    /// # Errors
    /// As [`crate::listener::serve`].
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let services = Arc::clone(&self.services);
        let every = self.maintenance_every;
        let maintenance = AbortOnDrop(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                services.limits.forget_idle();
                // Retention applies itself: every archive is pruned once a day by default
                // (whichever instance claims the run; `server retention prune-settings`).
                if let Err(e) = crate::routes::scheduled_prune(&services).await {
                    tracing::warn!(error = ?e, "scheduled prune failed");
                }
            }
        }));
        let served = serve_counted(
            self.listener,
            self.tls,
            self.app,
            self.limits,
            self.connections,
            shutdown,
        )
        .await;
        drop(maintenance);
        served
    }
}

/// A task stopped when this is dropped (the server's maintenance ends with its serving).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
