//! Rate limits (S-12): GCRA (`governor`) per tenant and per principal (the device of a device
//! token, else the user), keyed by the *verified* token, so that a refreshed token does not
//! bring a fresh budget; token refreshes per device; failed authentication per source address,
//! keyed by the socket's peer address (never by a header such as `X-Forwarded-For`, which the
//! client writes); and caps on what one principal and one tenant hold at once (connections and
//! requests in flight, the crate's `admission` module).
//!
//! An address whose failure budget is spent gets 429 for every request that fails
//! authentication until its budget refills. A valid credential is served whatever its address
//! did: behind a NAT or a TCP pass-through balancer, many clients share one address, and one of
//! them failing must not lock the others out. (A blocked address's bad tokens are still
//! verified, which costs the server one signature check each; the per-connection and global
//! connection caps bound how many it can send.)

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::admission::{ClaimOutcome, Connection, Counts, Held, Principal};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// The socket peer of a request, put in its extensions by the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// Limits, as rate per second (or minute) and burst, and caps on what is held at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Requests per second one principal (a device; a user for tokens without a device) may
    /// sustain, over all its tokens.
    pub per_token_per_second: u32,
    /// Requests one principal may send at once.
    pub per_token_burst: u32,
    /// Requests per second one tenant may sustain (all its tokens together).
    pub per_tenant_per_second: u32,
    /// Requests one tenant may send at once.
    pub per_tenant_burst: u32,
    /// Failed authentications per minute one address may sustain.
    pub auth_failures_per_minute: u32,
    /// Failed authentications one address may make at once.
    pub auth_failure_burst: u32,
    /// Token refreshes per minute one device may sustain (an agent refreshes about once in 45
    /// minutes, and after a restart or a refused token).
    pub refreshes_per_minute: u32,
    /// Token refreshes one device may make at once.
    pub refresh_burst: u32,
    /// Requests one principal may have in flight at once (more: 429).
    pub per_principal_in_flight: usize,
    /// Requests one tenant may have in flight at once, all its principals together.
    pub per_tenant_in_flight: usize,
    /// Connections one principal may hold at once (a connection belongs to the principal of
    /// its first authenticated request; past the cap it is answered 429 and closed).
    pub per_principal_connections: usize,
    /// Connections one tenant may hold at once; below the listener's global cap, so that one
    /// tenant cannot take every connection.
    pub per_tenant_connections: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            per_token_per_second: 200,
            per_token_burst: 400,
            per_tenant_per_second: 5_000,
            per_tenant_burst: 10_000,
            auth_failures_per_minute: 30,
            auth_failure_burst: 20,
            refreshes_per_minute: 6,
            refresh_burst: 20,
            per_principal_in_flight: 64,
            per_tenant_in_flight: 512,
            per_principal_connections: 32,
            per_tenant_connections: 256,
        }
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

fn quota(per: Duration, n: u32, burst: u32) -> Quota {
    let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per / n.get())
        .unwrap_or_else(|| Quota::per_second(n))
        .allow_burst(burst)
}

/// The limiters.
pub struct RateLimits {
    config: RateConfig,
    per_token: Keyed<(String, String)>,
    per_tenant: Keyed<String>,
    refreshes: Keyed<(String, String)>,
    auth_failures: Keyed<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
    in_flight: Arc<Counts<Principal>>,
    tenant_in_flight: Arc<Counts<String>>,
    connections: Arc<Counts<Principal>>,
    tenant_connections: Arc<Counts<String>>,
}

/// Why a request was not admitted ([`RateLimits::admit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over a rate: retry after this many seconds.
    Rate(u64),
    /// The principal or its tenant has as many requests in flight as it may.
    InFlight,
    /// The principal or its tenant holds as many connections as it may: this connection is
    /// closed.
    Connections,
}

/// What an admitted request holds until it ends: its places among the principal's and the
/// tenant's requests in flight.
#[derive(Debug)]
pub(crate) struct Admitted {
    _principal: Held<Principal>,
    _tenant: Held<String>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

/// How long to wait, rounded up to whole seconds for `Retry-After` (at least 1).
fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl RateLimits {
    /// Limiters for `config`.
    #[must_use]
    pub fn new(config: RateConfig) -> Self {
        let second = Duration::from_secs(1);
        Self {
            config,
            refreshes: RateLimiter::keyed(quota(
                Duration::from_secs(60),
                config.refreshes_per_minute,
                config.refresh_burst,
            )),
            in_flight: Arc::default(),
            tenant_in_flight: Arc::default(),
            connections: Arc::default(),
            tenant_connections: Arc::default(),
            per_token: RateLimiter::keyed(quota(
                second,
                config.per_token_per_second,
                config.per_token_burst,
            )),
            per_tenant: RateLimiter::keyed(quota(
                second,
                config.per_tenant_per_second,
                config.per_tenant_burst,
            )),
            auth_failures: RateLimiter::keyed(quota(
                Duration::from_secs(60),
                config.auth_failures_per_minute,
                config.auth_failure_burst,
            )),
            blocked: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// `Some(seconds to wait)` if `addr` spent its failure budget.
    pub fn blocked(&self, addr: IpAddr) -> Option<u64> {
        let mut blocked = self.blocked.lock().ok()?;
        let until = *blocked.get(&addr)?;
        let now = Instant::now();
        if until > now {
            Some(retry_secs(until - now).max(1))
        } else {
            blocked.remove(&addr);
            None
        }
    }

    /// Counts a failed authentication from `addr`; `Some(seconds)` once its budget is spent
    /// (the address is then refused until it refills).
    pub fn failed(&self, addr: IpAddr) -> Option<u64> {
        match self.auth_failures.check_key(&addr) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                if let Ok(mut blocked) = self.blocked.lock() {
                    // Bounded: forget expired entries before adding one.
                    if blocked.len() > 100_000 {
                        let now = Instant::now();
                        blocked.retain(|_, until| *until > now);
                    }
                    blocked.insert(addr, Instant::now() + wait);
                }
                Some(retry_secs(wait).max(1))
            }
        }
    }

    /// Admits one request of a verified token of `principal` (tenant, then device or user)
    /// that arrived on `connection`: the connection becomes the principal's if it was no one's
    /// (within the connection caps), then the rates of the tenant and the principal are
    /// counted, then a place among the requests in flight is taken (held until the returned
    /// guard drops).
    ///
    /// # Errors
    /// [`Refusal`]: which limit the request met.
    pub(crate) fn admit(
        &self,
        principal: &Principal,
        connection: Option<&Connection>,
    ) -> Result<Admitted, Refusal> {
        let c = &self.config;
        if let Some(conn) = connection
            && conn.claim(
                principal,
                &self.connections,
                c.per_principal_connections,
                &self.tenant_connections,
                c.per_tenant_connections,
            ) == ClaimOutcome::OverCap
        {
            return Err(Refusal::Connections);
        }
        let now = self.clock.now();
        if let Err(nu) = self.per_tenant.check_key(&principal.0) {
            return Err(Refusal::Rate(retry_secs(nu.wait_time_from(now)).max(1)));
        }
        if let Err(nu) = self.per_token.check_key(principal) {
            return Err(Refusal::Rate(retry_secs(nu.wait_time_from(now)).max(1)));
        }
        let mine = self
            .in_flight
            .acquire(principal.clone(), c.per_principal_in_flight)
            .ok_or(Refusal::InFlight)?;
        let tenant = self
            .tenant_in_flight
            .acquire(principal.0.clone(), c.per_tenant_in_flight)
            .ok_or(Refusal::InFlight)?;
        Ok(Admitted {
            _principal: mine,
            _tenant: tenant,
        })
    }

    /// Counts one token refresh of `device` of `tenant` (its secret already checked);
    /// `Some(seconds)` if the device refreshes faster than its budget allows.
    pub fn refresh(&self, tenant: &str, device: &str) -> Option<u64> {
        self.refreshes
            .check_key(&(tenant.to_owned(), device.to_owned()))
            .err()
            .map(|nu| retry_secs(nu.wait_time_from(self.clock.now())).max(1))
    }

    /// Connections `principal` holds now (for tests and metrics).
    pub fn connections_held(&self, principal: &Principal) -> usize {
        self.connections.held(principal)
    }

    /// Keys the limiters remember (tokens, tenants, devices refreshing, failing addresses,
    /// blocked addresses): what [`RateLimits::forget_idle`] bounds.
    pub fn keys_held(&self) -> usize {
        self.per_token.len()
            + self.per_tenant.len()
            + self.refreshes.len()
            + self.auth_failures.len()
            + self.blocked.lock().map_or(0, |b| b.len())
    }

    /// Forgets keys whose limits have refilled (call now and then: bounds memory).
    pub fn forget_idle(&self) {
        self.per_token.retain_recent();
        self.per_tenant.retain_recent();
        self.refreshes.retain_recent();
        self.auth_failures.retain_recent();
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
    }
}
