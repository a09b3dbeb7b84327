//! What can go wrong in a cache tier, typed, so the facade can tell a damaged entry (evict it,
//! run the task) from a tier that cannot be used (warn, go on without it).

use super::cas::BlobError;
use crate::fingerprint::TaskKey;

/// A cache entry that cannot be trusted: why, for the warning; the blob found bad, if one was.
#[derive(Debug, Clone)]
pub struct Corrupt {
    pub task: String,
    pub key: TaskKey,
    pub reason: String,
    pub blob: Option<String>,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "corrupt cache entry for {} (key {}): {}",
            self.task,
            self.key.short(),
            self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An entry whose outputs cannot be restored as recorded.
    #[error("{0}")]
    Corrupt(Corrupt),
    /// A blob could not be stored or read.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A local failure of the store (a full disk, a folder that cannot be written).
    #[error(transparent)]
    Local(#[from] crate::error::Error),
    /// A remote tier failed or answered something that cannot be trusted.
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    /// A remote tier switched off for the rest of the run (its warning was given once).
    #[error("the remote tier is switched off for this build")]
    TierOff,
    /// A bug or a runtime failure, not the data's fault.
    #[error("{0}")]
    Internal(String),
}
