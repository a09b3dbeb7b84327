//! How a lease ends when it yields no `ActionResult` of the task's own: a google.rpc status whose
//! code tells BuildGrid whether to run the job again elsewhere (UNAVAILABLE, INTERNAL) or to give
//! the client the error (everything else).

use crate::error::Error;

/// google.rpc.Code values the worker reports.
pub(crate) const OK: i32 = 0;
pub(crate) const INVALID_ARGUMENT: i32 = 3;
pub(crate) const FAILED_PRECONDITION: i32 = 9;
pub(crate) const UNAVAILABLE: i32 = 14;

/// A lease that ended without an `ActionResult`: its status code and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl Refusal {
    /// An action this worker can never run as sent: the engine must not retry it.
    pub(crate) fn invalid(message: impl Into<String>) -> Refusal {
        Refusal {
            code: INVALID_ARGUMENT,
            message: message.into(),
        }
    }

    /// An action another worker may run but this one cannot (its image is not here).
    pub(crate) fn precondition(message: impl Into<String>) -> Refusal {
        Refusal {
            code: FAILED_PRECONDITION,
            message: message.into(),
        }
    }

    /// The worker's own trouble (engine, CAS, disk): the engine runs the job again elsewhere.
    pub(crate) fn retry(message: impl Into<String>) -> Refusal {
        Refusal {
            code: UNAVAILABLE,
            message: message.into(),
        }
    }

    /// A run that failed on something other than the task's exit code: the task's own doing
    /// (a missing or unsafe output) is final; anything else is the worker's and retryable.
    pub(crate) fn of_run(e: &Error) -> Refusal {
        match e {
            Error::MissingOutput { .. } | Error::UnsafeArchive { .. } => {
                Refusal::precondition(e.to_string())
            }
            _ => Refusal::retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tasks_own_output_errors_are_final_and_the_engines_are_retried() {
        let missing = Error::MissingOutput {
            task: "t".into(),
            output: "bin".into(),
        };
        assert_eq!(Refusal::of_run(&missing).code, FAILED_PRECONDITION);
        let gone = Error::DockerUnavailable {
            host: "unix:///x".into(),
            reason: "refused".into(),
        };
        let r = Refusal::of_run(&gone);
        assert_eq!(r.code, UNAVAILABLE);
        assert!(r.message.contains("refused"), "{}", r.message);
    }
}
