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

pub use agent::{Agent, BackupReport, Enrollment, Escrow, Status};
pub use error::AgentError;
