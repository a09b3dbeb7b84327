//! The Docker executor, split by concern: the connection to the engine ([`engine`]), one task's
//! container ([`run`]), its log ([`logs`]), the cache volume ([`volume`]) and cleaning up after
//! runs that crashed ([`reaping`]). Images are the [`super::ImageProvider`]'s.

mod engine;
mod logs;
mod reaping;
mod run;
mod volume;

pub use engine::DockerEngine;
pub(crate) use engine::hostname;
pub(crate) use reaping::{Reaper, process_alive};
pub(crate) use run::{DockerExecutor, DockerSettings};
