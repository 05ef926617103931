//! The whole server in-process on a loopback address, over a data directory: what the
//! quickstart and the end-to-end tests run. Same routes, TLS policy, limits and storage as
//! `server serve`; the caller owns the async runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_token::{Capabilities, Capability, Clock, Role, TenantId, TokenRequest, UserId};
use time::OffsetDateTime;

use crate::ServerError;
use crate::data::DataDir;
use crate::ratelimit::RateConfig;
use crate::routes::Services;
use crate::server::{Server, ServerBuilder};

/// The host name the embedded server's certificate is for.
pub const HOST: &str = "localhost";

/// A running in-process server.
pub struct Embedded {
    addr: SocketAddr,
    data: DataDir,
    services: Arc<Services>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("addr", &self.addr)
            .field("data", &self.data.root())
            .finish_non_exhaustive()
    }
}

impl Embedded {
    /// Starts a server on `listen` (port 0 for any) over `data`, initialising the data
    /// directory (certificate for [`HOST`]) if it has no database yet.
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn start(data: DataDir, listen: SocketAddr) -> Result<Self, ServerError> {
        Self::start_with(data, listen, RateConfig::default()).await
    }

    /// [`Embedded::start`] with other rate limits.
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn start_with(
        data: DataDir,
        listen: SocketAddr,
        rates: RateConfig,
    ) -> Result<Self, ServerError> {
        Self::start_built(data, listen, Server::builder().rates(rates)).await
    }

    /// [`Embedded::start`] with a server built by `builder` (its host must be [`HOST`], the
    /// one the certificate is made for).
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn start_built(
        data: DataDir,
        listen: SocketAddr,
        builder: ServerBuilder,
    ) -> Result<Self, ServerError> {
        let now = OffsetDateTime::now_utc();
        if !data.is_initialised() {
            data.init(&[HOST.to_owned()], now).await?;
        }
        let server = builder.host(HOST).bind(&data, listen).await?;
        let addr = server.addr();
        let services = Arc::clone(server.services());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            data,
            services,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL, `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://{HOST}:{}", self.addr.port())
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// Its services (database, archives, issuer...).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// The CA that agents pin (PEM).
    ///
    /// # Errors
    /// [`ServerError::Io`].
    pub fn ca_pem(&self) -> Result<Vec<u8>, ServerError> {
        let path = self.data.pki().dir().join(crate::pki::CA_CERT);
        std::fs::read(&path).map_err(|e| ServerError::io(format!("reading {}", path.display()), e))
    }

    /// Adds a tenant (quota in bytes) and its first administrator, `admin`; returns a
    /// 15-minute token for that administrator with every capability.
    ///
    /// # Errors
    /// [`ServerError::Id`] for an invalid id, [`ServerError::Exists`] for an existing tenant,
    /// [`ServerError::Db`].
    pub async fn add_tenant(
        &self,
        tenant: &str,
        admin: &str,
        quota_bytes: i64,
    ) -> Result<String, ServerError> {
        let tenant_id = TenantId::new(tenant)?;
        let admin_id = UserId::new(admin)?;
        let db = &self.services.db;
        if !db.add_tenant(&tenant_id, quota_bytes).await? {
            return Err(ServerError::Exists(format!("the tenant {tenant}")));
        }
        db.add_user(&tenant_id, &admin_id, Role::Admin).await?;
        let request = TokenRequest {
            subject: admin_id,
            tenant: tenant_id,
            device: None,
            role: Role::Admin,
            capabilities: Capabilities::of(&Capability::ALL),
            lifetime_secs: 900,
        };
        let now = self.services.clock.now();
        let id = cairn_token::TokenId::random()
            .map_err(|e| ServerError::io("the random source", std::io::Error::other(e)))?;
        let token = self
            .services
            .issuer
            .issue_with_id(&request, now, id.clone())?;
        let row = crate::db::IssuedRow::of(&request, id, now, "bootstrap");
        self.services
            .db
            .record_issued(&request.tenant, &row)
            .await?;
        Ok(token.expose().to_owned())
    }

    /// Stops accepting connections and waits for the accept loop to end.
    ///
    /// # Errors
    /// [`ServerError`] from the accept loop.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
