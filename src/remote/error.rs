//! What can go wrong with a remote tier, typed so the guard can tell a tier that cannot be used
//! (switch it off for the run, warn once) from an answer that cannot be trusted (not restored,
//! the task runs, one warning).

/// A remote tier's failure. Never holds a credential: servers are named by their redacted URL.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RemoteError {
    /// The server could not be reached, or refused, or failed (5xx): the tier goes off.
    #[error("{server} is unavailable: {reason}")]
    Unavailable { server: String, reason: String },
    /// 401/403 or a gRPC UNAUTHENTICATED / PERMISSION_DENIED: the tier goes off.
    #[error("{server} refused the credentials: {reason}")]
    Auth { server: String, reason: String },
    /// No answer within the timeout: the tier goes off.
    #[error("{server} did not answer within {secs:.1} s")]
    Timeout { server: String, secs: f64 },
    /// The server answered with something that cannot be trusted (a malformed or unsigned action
    /// result, a blob whose bytes do not match its digest, a truncated blob): not restored.
    #[error("{server}: {reason}")]
    BadAnswer { server: String, reason: String },
    /// A local failure while moving a blob (a file that cannot be written).
    #[error("{0}")]
    Local(String),
}

impl RemoteError {
    /// Whether the tier should be switched off for the rest of the run.
    pub(crate) fn switches_off(&self) -> bool {
        matches!(
            self,
            RemoteError::Unavailable { .. }
                | RemoteError::Auth { .. }
                | RemoteError::Timeout { .. }
        )
    }
}
