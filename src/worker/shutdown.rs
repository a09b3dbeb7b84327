//! Stopping a worker: the first SIGTERM (or SIGINT) stops it taking leases and lets the ones it
//! holds finish, for at most the grace period; a second signal, or the grace running out, gives
//! them back to the engine with a retryable status. Its containers are removed either way and it
//! exits 0. Not the build's interrupt flag: that one would stop the running tasks at once.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// How far a stop has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Running,
    /// Take no new lease; finish those held.
    Draining,
    /// Give back what is held, now.
    Now,
}

/// Shared by every session: the current level, and a way to wait for the next one.
#[derive(Clone)]
pub(crate) struct Stop {
    rx: watch::Receiver<Level>,
}

impl Stop {
    /// Watches SIGTERM and SIGINT; `grace` bounds the draining.
    pub(crate) fn on_signals(grace: Duration) -> Result<Stop> {
        let (tx, rx) = watch::channel(Level::Running);
        let mut term = signal(SignalKind::terminate()).map_err(|source| Error::Signals {
            signal: "SIGTERM",
            source,
        })?;
        let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::Signals {
            signal: "SIGINT",
            source,
        })?;
        tokio::spawn(async move {
            let first = next_signal(&mut term, &mut int).await;
            eprintln!(
                "{first}: taking no new leases; finishing the ones held (again to give them back)"
            );
            let _ = tx.send(Level::Draining);
            tokio::select! {
                s = next_signal(&mut term, &mut int) => eprintln!("{s}: giving back the leases held"),
                _ = tokio::time::sleep(grace) => eprintln!("the grace period is over: giving back the leases held"),
            }
            let _ = tx.send(Level::Now);
        });
        Ok(Stop { rx })
    }

    pub(crate) fn level(&self) -> Level {
        *self.rx.borrow()
    }

    /// Returns once the level is above `than`.
    pub(crate) async fn past(&self, than: Level) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|l| *l > than).await;
    }
}

async fn next_signal(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
