//! Admission: what one client may hold of the server at once, so that one token holder cannot
//! make it unreachable for everybody else (S-10, S-11, S-12).
//!
//! - **Time.** A request body must keep arriving ([`Limits::body_idle_timeout`] between frames)
//!   and be complete within [`Limits::body_total_timeout`]; a connection with no request in
//!   flight is closed after [`Limits::idle_timeout`] (before it served an authenticated request,
//!   after [`Limits::header_read_timeout`]: HTTP/2 has no header deadline of its own).
//! - **Space.** Each connection is attributed to the principal of the first request on it that
//!   authenticates (a device, or a user for tokens without a device) and to its tenant; each
//!   principal and each tenant may hold a bounded number of connections and of requests in
//!   flight ([`crate::ratelimit::RateConfig`]), below the global connection cap. Past a cap the
//!   request is answered `429` (and a connection over its cap is closed).
//!
//! [`Limits`]: crate::listener::Limits
//! [`Limits::body_idle_timeout`]: crate::listener::Limits::body_idle_timeout
//! [`Limits::body_total_timeout`]: crate::listener::Limits::body_total_timeout
//! [`Limits::idle_timeout`]: crate::listener::Limits::idle_timeout
//! [`Limits::header_read_timeout`]: crate::listener::Limits::header_read_timeout

use std::collections::HashMap;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Holders of a bounded resource, by key: at most `cap` at once per key.
#[derive(Debug)]
pub(crate) struct Counts<K: Eq + Hash> {
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash> Default for Counts<K> {
    fn default() -> Self {
        Self {
            held: Mutex::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> Counts<K> {
    /// One more holder of `key`, if it holds fewer than `cap`; released when the guard drops.
    /// A poisoned lock refuses (fails closed).
    pub(crate) fn acquire(self: &Arc<Self>, key: K, cap: usize) -> Option<Held<K>> {
        let mut held = self.held.lock().ok()?;
        let n = held.entry(key.clone()).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Held {
            counts: Arc::clone(self),
            key,
        })
    }

    /// How many hold `key` now.
    pub(crate) fn held(&self, key: &K) -> usize {
        self.held
            .lock()
            .ok()
            .and_then(|h| h.get(key).copied())
            .unwrap_or(0)
    }
}

/// One holder of a [`Counts`] key.
#[derive(Debug)]
pub(crate) struct Held<K: Eq + Hash> {
    counts: Arc<Counts<K>>,
    key: K,
}

impl<K: Eq + Hash> Drop for Held<K> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.counts.held.lock()
            && let Some(n) = held.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Who holds the server: a tenant, and within it a device or (for tokens without a device) a
/// user.
pub(crate) type Principal = (String, String);

/// The principal of a connection, once one of its requests authenticated: what it holds of
/// the per-principal and per-tenant connection caps.
type Claim = (Held<Principal>, Held<String>);

/// One accepted connection: its requests in flight, when it last had none, and whose it is.
/// The listener makes one per connection and hands it to every request on it (an extension).
#[derive(Debug)]
pub(crate) struct Connection {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    claim: Mutex<Option<Claim>>,
    claimed: AtomicBool,
    changed: tokio::sync::Notify,
}

impl Default for Connection {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            claim: Mutex::new(None),
            claimed: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }
}

/// Whether a connection's principal may hold it ([`Connection::claim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimOutcome {
    /// The connection is this principal's (now, or since an earlier request).
    Held,
    /// The principal, or its tenant, holds as many connections as it may: close this one.
    OverCap,
}

impl Connection {
    /// A request on this connection starts; the guard ends it.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        InFlight(Arc::clone(self))
    }

    /// Attributes the connection to `principal` (the first authenticated request decides; a
    /// later request of another principal on the same connection changes nothing), within the
    /// caps of `connections` and `tenants`.
    pub(crate) fn claim(
        &self,
        principal: &Principal,
        connections: &Arc<Counts<Principal>>,
        per_principal: usize,
        tenants: &Arc<Counts<String>>,
        per_tenant: usize,
    ) -> ClaimOutcome {
        let Ok(mut claim) = self.claim.lock() else {
            return ClaimOutcome::OverCap;
        };
        if claim.is_some() {
            return ClaimOutcome::Held;
        }
        let Some(mine) = connections.acquire(principal.clone(), per_principal) else {
            return ClaimOutcome::OverCap;
        };
        let Some(tenant) = tenants.acquire(principal.0.clone(), per_tenant) else {
            return ClaimOutcome::OverCap;
        };
        *claim = Some((mine, tenant));
        self.claimed.store(true, Ordering::SeqCst);
        ClaimOutcome::Held
    }

    /// Completes when the connection has had no request in flight for `idle` (or, while no
    /// request on it has authenticated, for `unclaimed`): the listener then closes it.
    pub(crate) async fn idle_expired(&self, unclaimed: Duration, idle: Duration) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so no change between the two is missed.
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                notified.await;
                continue;
            }
            let since = self
                .idle_since
                .lock()
                .map_or_else(|_| Instant::now(), |s| *s);
            let limit = if self.claimed.load(Ordering::SeqCst) {
                idle
            } else {
                unclaimed
            };
            let deadline = since + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = notified => {}
            }
        }
    }
}

/// A request in flight on a [`Connection`]; its drop marks the connection idle from then.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut since) = self.0.idle_since.lock() {
            *since = Instant::now();
        }
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Set on a request whose body ran past a deadline (the answer becomes `408`).
#[derive(Clone, Debug, Default)]
pub(crate) struct BodyTimedOut(pub Arc<AtomicBool>);

/// A request body ran past its deadline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BodyTimeout {
    /// No bytes arrived for the idle timeout.
    #[error("request body: no data for {0:?}")]
    Idle(Duration),
    /// The whole body took longer than the total timeout.
    #[error("request body: not complete within {0:?}")]
    Total(Duration),
}

/// A request body that must keep arriving: at most `idle` between frames, `total` in all
/// (from when the headers were read).
pub(crate) struct TimedBody<B> {
    inner: B,
    idle: Duration,
    total: Duration,
    idle_timer: Pin<Box<Sleep>>,
    total_timer: Pin<Box<Sleep>>,
    timed_out: BodyTimedOut,
}

impl<B> std::fmt::Debug for TimedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("idle", &self.idle)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<B> TimedBody<B> {
    /// `inner` with deadlines; `timed_out` is set when one passes.
    pub(crate) fn new(inner: B, idle: Duration, total: Duration, timed_out: BodyTimedOut) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            total,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
            total_timer: Box::pin(tokio::time::sleep_until(now + total)),
            timed_out,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + this.idle;
                this.idle_timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let expired = if this.total_timer.as_mut().poll(cx).is_ready() {
                    Some(BodyTimeout::Total(this.total))
                } else if this.idle_timer.as_mut().poll(cx).is_ready() {
                    Some(BodyTimeout::Idle(this.idle))
                } else {
                    None
                };
                match expired {
                    Some(e) => {
                        this.timed_out.0.store(true, Ordering::SeqCst);
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn counts_cap_each_key_and_release_on_drop() {
        let counts: Arc<Counts<String>> = Arc::default();
        let a1 = counts.acquire("a".into(), 2).unwrap();
        let a2 = counts.acquire("a".into(), 2).unwrap();
        assert!(counts.acquire("a".into(), 2).is_none());
        let b = counts.acquire("b".into(), 2).unwrap();
        assert_eq!(counts.held(&"a".into()), 2);
        drop(a1);
        let a3 = counts.acquire("a".into(), 2).unwrap();
        drop((a2, a3, b));
        assert_eq!(counts.held(&"a".into()), 0);
        assert!(
            counts.held.lock().unwrap().is_empty(),
            "no key is kept idle"
        );
    }

    #[test]
    fn a_connection_is_claimed_once_within_both_caps() {
        let (conns, tenants): (Arc<Counts<Principal>>, Arc<Counts<String>>) =
            (Arc::default(), Arc::default());
        let ana = ("acme".to_owned(), "ana".to_owned());
        let bob = ("acme".to_owned(), "bob".to_owned());
        let c1 = Connection::default();
        assert_eq!(c1.claim(&ana, &conns, 1, &tenants, 2), ClaimOutcome::Held);
        // The same connection again, or another principal on it: still ana's, counted once.
        assert_eq!(c1.claim(&ana, &conns, 1, &tenants, 2), ClaimOutcome::Held);
        assert_eq!(c1.claim(&bob, &conns, 1, &tenants, 2), ClaimOutcome::Held);
        assert_eq!(conns.held(&ana), 1);
        // A second connection of ana's is over her cap; bob's is within the tenant's.
        let c2 = Connection::default();
        assert_eq!(
            c2.claim(&ana, &conns, 1, &tenants, 2),
            ClaimOutcome::OverCap
        );
        assert_eq!(c2.claim(&bob, &conns, 1, &tenants, 2), ClaimOutcome::Held);
        let c3 = Connection::default();
        let carol = ("acme".to_owned(), "carol".to_owned());
        assert_eq!(
            c3.claim(&carol, &conns, 1, &tenants, 2),
            ClaimOutcome::OverCap,
            "the tenant holds two"
        );
        drop(c1);
        assert_eq!(conns.held(&ana), 0);
        assert_eq!(c3.claim(&carol, &conns, 1, &tenants, 2), ClaimOutcome::Held);
    }
}
