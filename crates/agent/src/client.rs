//! The agent's HTTPS client: one `reqwest` client (HTTP/2, pinned CA, the AES-256-GCM suites),
//! the device's access token kept fresh with the device secret, retries with exponential
//! backoff and jitter for what a retry can fix, and the server's "deauthorized" answer (410)
//! turned into [`AgentError::Deauthorized`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use zeroize::Zeroizing;

use crate::{AgentError, tls};

/// An access token is refreshed when older than this (the server issues them for an hour).
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(45 * 60);
/// Attempts of one request when the server cannot be reached or answers 429 or 5xx.
const ATTEMPTS: u32 = 6;
/// The first retry's delay; each later one doubles it (with jitter): 0.25 s to 8 s in all.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest a retry waits when the server's `Retry-After` asks for more (a rate limit's
/// refill: a device's token refreshes come back at 6 a minute).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What enrollment returns.
#[derive(serde::Deserialize)]
pub struct Enrolled {
    /// The device id.
    pub device: String,
    /// The user the device backs up for.
    pub user: String,
    /// The first access token.
    pub token: Zeroizing<String>,
    /// The device secret (hex), given once.
    pub secret: Zeroizing<String>,
    /// The server's escrow public key (hex).
    pub escrow_public_key: String,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("device", &self.device)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Refreshed {
    token: Zeroizing<String>,
}

/// The message of an error with its causes (reqwest's own message omits them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The server's base URL as the agent stores and calls it (no trailing `/`), if it is an
/// `https://` URL with a host: the agent sends bearer tokens and its device secret on every
/// request, so it never speaks plain HTTP, whatever the configuration says.
///
/// # Errors
/// [`AgentError::Usage`] naming the URL: another scheme (`http://` among them), no host, a
/// path, query or fragment, or text that is not a URL.
pub fn server_url(server: &str) -> Result<String, AgentError> {
    let trimmed = server.trim_end_matches('/');
    let refuse = |why: &str| {
        AgentError::Usage(format!(
            "server URL {server:?}: {why}; give https://HOST:PORT"
        ))
    };
    let url = reqwest::Url::parse(trimmed).map_err(|e| refuse(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(refuse(&format!(
            "the scheme is {}, and the agent speaks only HTTPS (its token would travel in clear)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("a path, query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("credentials in the URL"));
    }
    Ok(trimmed.to_owned())
}

/// A `reqwest` client that trusts only the pinned CA, and refuses any URL but `https://`.
///
/// # Errors
/// [`AgentError::State`] for a CA that does not parse, [`AgentError::Transport`] if the client
/// cannot be built.
pub fn http_client(ca_pem: &[u8]) -> Result<reqwest::Client, AgentError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls::client_config(ca_pem)?)
        .https_only(true)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .pool_idle_timeout(Duration::from_secs(60))
        // The server records it as the device's agent version (the admin console shows it).
        .user_agent(concat!("cairn-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AgentError::Transport(chain(&e)))
}

/// Exchanges an enrollment token for the device's credentials (once: the server spends the
/// token).
///
/// # Errors
/// [`AgentError::Transport`], or [`AgentError::Http`] (404 for a spent, unknown or foreign
/// token).
pub async fn enroll(
    http: &reqwest::Client,
    server: &str,
    tenant: &str,
    device: &str,
    enrollment_token: &str,
) -> Result<Enrolled, AgentError> {
    let url = format!("{server}/v1/tenants/{tenant}/devices/{device}/enroll");
    let resp = http
        .post(url)
        .bearer_auth(enrollment_token)
        .send()
        .await
        .map_err(|e| AgentError::Transport(chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(AgentError::Http {
            status: status.as_u16(),
            what: "enrollment".into(),
        });
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| AgentError::Transport(chain(&e)))?;
    serde_json::from_slice(&body).map_err(|e| AgentError::State(format!("enrollment answer: {e}")))
}

/// A request body and its media type.
pub struct Body {
    /// The bytes (cheap to clone for a retry).
    pub bytes: bytes::Bytes,
    /// Its `Content-Type`.
    pub media_type: &'static str,
}

/// A device's authenticated connection to its tenant on the server.
pub struct Client {
    http: reqwest::Client,
    server: String,
    tenant: String,
    device: String,
    secret: Zeroizing<[u8; 32]>,
    token: Mutex<Option<(Zeroizing<String>, Instant)>>,
    refreshing: tokio::sync::Mutex<()>,
    deauthorized: AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("tenant", &self.tenant)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

enum Outcome {
    Done(Vec<u8>),
    /// Worth another attempt (the server unreachable, 429, 5xx), after at least the wait the
    /// server asked for (`Retry-After`, seconds), if it did.
    Retry(AgentError, Option<Duration>),
    /// The credentials were refused (401).
    Refused,
}

impl Client {
    /// A client for `device` of `tenant` at `server` (`https://host:port`), refreshing its access
    /// tokens with `secret`.
    pub fn new(
        http: reqwest::Client,
        server: &str,
        tenant: &str,
        device: &str,
        secret: Zeroizing<[u8; 32]>,
    ) -> Self {
        Self {
            http,
            server: server.trim_end_matches('/').to_owned(),
            tenant: tenant.to_owned(),
            device: device.to_owned(),
            secret,
            token: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            deauthorized: AtomicBool::new(false),
        }
    }

    /// Starts with a token already in hand (the one enrollment returned).
    pub fn with_token(self, token: Zeroizing<String>) -> Self {
        if let Ok(mut t) = self.token.lock() {
            *t = Some((token, Instant::now()));
        }
        self
    }

    /// Whether the server has said this device is deauthorized.
    pub fn is_deauthorized(&self) -> bool {
        self.deauthorized.load(Ordering::SeqCst)
    }

    fn current_token(&self) -> Option<Zeroizing<String>> {
        let guard = self.token.lock().ok()?;
        guard
            .as_ref()
            .filter(|(_, at)| at.elapsed() < TOKEN_REFRESH_AFTER)
            .map(|(t, _)| t.clone())
    }

    /// A fresh access token from the device secret. `stale` is the token that was refused, if
    /// any: a concurrent caller may have replaced it already.
    async fn refresh(&self, stale: Option<&str>) -> Result<Zeroizing<String>, AgentError> {
        let _one = self.refreshing.lock().await;
        if let Some(t) = self.current_token()
            && stale != Some(t.as_str())
        {
            return Ok(t);
        }
        let url = format!(
            "{}/v1/tenants/{}/devices/{}/token",
            self.server, self.tenant, self.device
        );
        let auth = Zeroizing::new(format!("Device {}", hex::encode(*self.secret)));
        let body = self
            .send(&Method::POST, &url, auth.as_str(), None)
            .await?
            .ok_or(AgentError::Unauthorized)?;
        let fresh: Refreshed = serde_json::from_slice(&body)
            .map_err(|e| AgentError::State(format!("token answer: {e}")))?;
        if let Ok(mut t) = self.token.lock() {
            *t = Some((fresh.token.clone(), Instant::now()));
        }
        Ok(fresh.token)
    }

    /// Sends one request with `auth` as its `Authorization` header, retrying an unreachable
    /// server, 429 and 5xx with backoff; `None` when the credentials are refused (401).
    async fn send(
        &self,
        method: &Method,
        url: &str,
        auth: &str,
        body: Option<&Body>,
    ) -> Result<Option<Vec<u8>>, AgentError> {
        let mut delay = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(method, url, auth, body).await? {
                Outcome::Done(bytes) => return Ok(Some(bytes)),
                Outcome::Refused => return Ok(None),
                Outcome::Retry(e, _) if attempt >= ATTEMPTS => return Err(e),
                Outcome::Retry(e, asked) => {
                    tracing::debug!(attempt, error = %e, "retrying");
                    // The server's wait when it gave one (a rate limit's refill), never more
                    // than MAX_RETRY_AFTER; else the backoff.
                    let backoff = jitter(delay);
                    let wait = asked.map_or(backoff, |a| a.min(MAX_RETRY_AFTER).max(backoff));
                    tokio::time::sleep(wait).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        auth: &str,
        body: Option<&Body>,
    ) -> Result<Outcome, AgentError> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .header(reqwest::header::AUTHORIZATION, auth);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, b.media_type)
                .body(b.bytes.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Outcome::Retry(AgentError::Transport(chain(&e)), None)),
        };
        let status = resp.status();
        match status {
            s if s.is_success() => match resp.bytes().await {
                Ok(b) => Ok(Outcome::Done(b.to_vec())),
                Err(e) => Ok(Outcome::Retry(AgentError::Transport(chain(&e)), None)),
            },
            StatusCode::UNAUTHORIZED => Ok(Outcome::Refused),
            StatusCode::GONE => {
                self.deauthorized.store(true, Ordering::SeqCst);
                Err(AgentError::Deauthorized)
            }
            s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                let asked = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Ok(Outcome::Retry(
                    AgentError::Http {
                        status: s.as_u16(),
                        what: format!("{method} {}", self.path_of(url)),
                    },
                    asked,
                ))
            }
            s => Err(AgentError::Http {
                status: s.as_u16(),
                what: format!("{method} {}", self.path_of(url)),
            }),
        }
    }

    fn path_of<'u>(&self, url: &'u str) -> &'u str {
        url.strip_prefix(self.server.as_str()).unwrap_or(url)
    }

    /// Calls `path` (below `/v1/tenants/{tenant}`) with the device's token. A refused token is
    /// refreshed once; an unreachable server, 429 and 5xx are retried with backoff (every call
    /// the agent makes is idempotent on the server). Any other non-2xx is an error.
    ///
    /// # Errors
    /// [`AgentError::Deauthorized`] (410), [`AgentError::Unauthorized`],
    /// [`AgentError::Transport`] or [`AgentError::Http`] once the attempts are spent.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Vec<u8>, AgentError> {
        if self.is_deauthorized() {
            return Err(AgentError::Deauthorized);
        }
        let url = format!("{}/v1/tenants/{}{path}", self.server, self.tenant);
        let token = match self.current_token() {
            Some(t) => t,
            None => self.refresh(None).await?,
        };
        let bearer = |t: &str| Zeroizing::new(format!("Bearer {t}"));
        if let Some(bytes) = self
            .send(&method, &url, &bearer(&token), body.as_ref())
            .await?
        {
            return Ok(bytes);
        }
        // The token was refused: refresh it once, then try again.
        let token = self.refresh(Some(token.as_str())).await?;
        self.send(&method, &url, &bearer(&token), body.as_ref())
            .await?
            .ok_or(AgentError::Unauthorized)
    }
}

/// `d` scaled by a random factor in [0.5, 1.5), so that many agents do not retry in step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b)
    } else {
        u16::MAX / 2
    };
    d.mul_f64(0.5 + f64::from(r) / 65_536.0)
}
