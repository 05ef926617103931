//! Cairn's multi-tenant HTTPS service.
//!
//! **Status: first increments (issue #10).** The TLS policy, the listener, the embedded PKI and
//! the route table with token authentication (`whoami` is the only tenant route so far). The
//! storage, event and escrow services, devices, and the `server` example come next.
//!
//! | item | use |
//! | --- | --- |
//! | [`tls::server_config`], [`tls::provider`] | the TLS policy: TLS 1.3 and 1.2, AES-256-GCM suites only, EMS required, no 0-RTT |
//! | [`pki::Pki`] | the embedded default's certificates: a CA and a server certificate (rcgen), key files 0600, checked at load |
//! | [`listener::serve`], [`listener::Limits`], [`listener::harden`] | the accept loop: connection cap, handshake and header deadlines, header and body limits, panics as bare 500s |
//! | [`routes::ROUTES`], [`routes::router`] | every route with its access decision; bearer tokens checked against the path's tenant |
//!
//! The TLS decisions are recorded in `docs/design/0002-tls-policy.md`; the tests in
//! `tests/tls.rs` are S-10, S-11 and S-15 to S-18 of the project's security-test catalogue.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archives;
pub mod atrest;
pub mod data;
pub mod db;
pub mod events;
pub mod keystore;
pub mod listener;
pub mod pki;
pub mod routes;
pub mod segments;
pub mod tls;
pub mod wire;

/// What can go wrong setting up or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Reading or writing a file, or a socket, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// rustls refused the configuration (a key that does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Generating certificates failed.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A certificate or key file is not what the server can serve: unparsable, not valid for the
    /// host name, not issued by the CA, expired or not yet valid, or readable by others.
    #[error("refusing to serve: {0}")]
    Refused(String),
}

impl ServerError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
