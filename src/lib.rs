//! flamenco-build: builds a project described as a graph of tasks, each in a pinned toolchain
//! container driven through the Docker Engine API.
//!
//! The modules follow the data flow: [`config`] → [`graph`] → [`fingerprint`] → [`cache`] →
//! [`executor`] → [`scheduler`] → [`report`]; [`cli`] wires them to the command line.
//! `docs/architecture.md` says what each module does and where remote tiers plug in.

pub(crate) mod cache;
pub mod cli;
pub mod config;
pub(crate) mod diagnostic;
pub mod error;
pub(crate) mod executor;
pub mod fingerprint;
pub(crate) mod git;
pub(crate) mod graph;
pub(crate) mod human;
pub(crate) mod interrupt;
pub(crate) mod remote;
pub(crate) mod report;
pub(crate) mod scheduler;
pub mod worker;
pub(crate) mod workspace;

pub use error::{Error, Result};
