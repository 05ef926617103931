//! Rate limits (S-12): GCRA (`governor`) per tenant and per token, keyed by the *verified*
//! token, and per source address for failed authentication, keyed by the socket's peer address
//! (never by a header such as `X-Forwarded-For`, which the client writes).
//!
//! An address whose failure budget is spent is refused (429) on every authenticated route until
//! its budget refills, without verifying anything: failed authentication costs the attacker, not
//! the server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// The socket peer of a request, put in its extensions by the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Limits, as rate per second (or minute) and burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Requests per second one token may sustain.
    pub per_token_per_second: u32,
    /// Requests one token may send at once.
    pub per_token_burst: u32,
    /// Requests per second one tenant may sustain (all its tokens together).
    pub per_tenant_per_second: u32,
    /// Requests one tenant may send at once.
    pub per_tenant_burst: u32,
    /// Failed authentications per minute one address may sustain.
    pub auth_failures_per_minute: u32,
    /// Failed authentications one address may make at once.
    pub auth_failure_burst: u32,
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
    per_token: Keyed<(String, String)>,
    per_tenant: Keyed<String>,
    auth_failures: Keyed<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
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

    /// Counts one request of a verified token; `Some(seconds)` if the tenant or the token is
    /// over its rate.
    pub fn admit(&self, tenant: &str, token_id: &str) -> Option<u64> {
        let now = self.clock.now();
        if let Err(nu) = self.per_tenant.check_key(&tenant.to_owned()) {
            return Some(retry_secs(nu.wait_time_from(now)).max(1));
        }
        if let Err(nu) = self
            .per_token
            .check_key(&(tenant.to_owned(), token_id.to_owned()))
        {
            return Some(retry_secs(nu.wait_time_from(now)).max(1));
        }
        None
    }

    /// Forgets keys whose limits have refilled (call now and then: bounds memory).
    pub fn forget_idle(&self) {
        self.per_token.retain_recent();
        self.per_tenant.retain_recent();
        self.auth_failures.retain_recent();
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
    }
}
