//! Cairn's endpoint agent: it enrolls with a Cairn server, keeps the archive key on the
//! endpoint, backs one or several folders up to the server over pinned TLS, restores and checks them, and turns
//! what each backup saw into file events that reach the server exactly once.
//!
//! | item | use |
//! | --- | --- |
//! | [`Agent`] | `enroll`, `open`, `backup`, `run` (watcher-driven), `snapshots`, `restore`, `check`, `status`, `send_events` |
//! | [`state::AgentDir`] | the agent's directory: configuration, pinned CA, owner-only key and secret, chain head (`docs/format/agent.md`) |
//! | [`client`] | the HTTPS client: HTTP/2, pinned CA, token refresh with the device secret, retries with backoff and jitter, 410 → deauthorized |
//! | [`remote::RemoteStore`] | the server as a `cairn-backup` block store (batched missing-id queries and uploads) |
//! | [`events`] | events from snapshot diffs: renames by contents, SHA-256 and BLAKE3 from the backup's read, exposure rules |
//! | [`spool::Spool`] | the durable, bounded event queue (redb) |
//! | [`watch::Watch`] | the `notify` watcher with its debouncer |
//! | [`compare`] | folder comparison (the quickstart's byte-for-byte verification) |
//! | [`tls`] | the client TLS configuration (AES-256-GCM suites, TLS 1.3 and 1.2, one trusted CA) |
//!
//! # Example
//!
//! ```no_run
//! use cairn_agent::{Agent, Enrollment, Escrow, state::AgentDir};
//!
//! # fn main() -> Result<(), cairn_agent::AgentError> {
//! let dir = AgentDir::at("/var/lib/cairn-agent");
//! let mut agent = Agent::enroll(&dir, Enrollment {
//!     server: "https://backup.example.com:8443",
//!     ca_pem: &cairn_agent::tls::read_ca("ca.pem".as_ref())?,
//!     tenant: "acme",
//!     device: "f571e2e1fa63c3cc8c8868e912a61dd9",
//!     token: "v4.public.…",
//!     host: "laptop-17",
//!     escrow: Escrow::Standard,
//! })?;
//! let report = agent.backup(Some("/home/ana/Documents".as_ref()))?;
//! println!("snapshot {} with {} events", report.snapshot, report.events_queued);
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - The archive key is generated on the endpoint and leaves it only inside the escrow envelope
//!   the mode calls for; blocks are sealed before they are sent. The key file and the device
//!   secret are created 0600 and refused if others can read them.
//! - The client trusts only the CA pinned at enrollment (not the system roots) and offers only
//!   AES-256-GCM suites.
//! - A 410 from the server (deauthorized) makes the agent zero and remove its key and secret,
//!   remove its state, and refuse to run again.
//! - Events are readable by the server by design (they carry paths and content hashes).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod agent;
pub mod client;
pub mod compare;
mod error;
pub mod events;
pub mod remote;
pub mod spool;
pub mod state;
pub mod tls;
pub mod watch;

pub use agent::{
    Agent, BackupReport, Enrollment, Escrow, Observations, RunOptions, Status, WarningReport,
};
pub use error::AgentError;
