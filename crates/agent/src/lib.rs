//! Cairn's endpoint agent.
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

pub use agent::{Agent, BackupReport, Enrollment, Escrow, RunOptions, Status};
pub use error::AgentError;
