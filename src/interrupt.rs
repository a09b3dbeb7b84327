//! Whether the build was told to stop (SIGINT, SIGTERM, SIGHUP), for the work that cannot be
//! dropped at an await point: blocking restores check it between entries, and nothing new is
//! created or placed once it is set. Process-wide because a signal is.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::Error;

/// The signal number received first; 0 while none was.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Held while outputs are put in the workspace, so that a forced exit never leaves half of them.
static WORKSPACE: Mutex<()> = Mutex::new(());

/// The signals that stop a build, with their names and exit codes (128 + N).
pub(crate) const SIGNALS: [(i32, &str); 3] = [(2, "SIGINT"), (15, "SIGTERM"), (1, "SIGHUP")];

/// Records that `signo` asked the build to stop (the first signal wins).
pub(crate) fn request(signo: i32) {
    let _ = SIGNAL.compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub(crate) fn requested() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// The error a stopped build ends with, once a stop was asked for.
pub(crate) fn error() -> Option<Error> {
    let signo = SIGNAL.load(Ordering::SeqCst);
    let (_, signal) = SIGNALS.iter().find(|(n, _)| *n == signo)?;
    Some(Error::Interrupted {
        signal,
        code: 128 + signo,
    })
}

/// Fails with the interruption once a stop was asked for.
pub(crate) fn check() -> crate::Result<()> {
    match error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The workspace-writing lock: placing outputs holds it; a forced exit takes it first.
pub(crate) fn workspace_lock() -> MutexGuard<'static, ()> {
    WORKSPACE.lock().unwrap_or_else(|p| p.into_inner())
}
