//! The engine's answer as a local run's: a failure shows the last lines of its log, exactly as
//! locally; a success's outputs are checked as hostile input (safe paths, inside the task's
//! declared outputs, every declared output there) and laid out in the staging folder, each blob
//! checked against its digest.

use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use super::RemoteExecutor;
use super::watch::Streamed;
use crate::cache::BlobRead;
use crate::cache::materialize::{self, missing_output, outside_outputs};
use crate::config::Task;
use crate::error::{Error, Result};
use crate::executor::{LogTail, off_async_workers};
use crate::fingerprint::TaskKey;
use crate::remote::RemoteError;
use crate::remote::action_result::from_action_result;

/// A task's stdout and stderr, as text.
#[derive(Debug, Default)]
pub(super) struct Logs {
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Logs {
    /// Every line, stdout's then stderr's (the engine keeps them apart).
    pub(super) fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines().chain(self.stderr.lines())
    }

    /// The lines `-v` has not shown yet: those of the logs not streamed whole while it ran.
    pub(super) fn not_streamed(&self, streamed: Streamed) -> impl Iterator<Item = &str> {
        let out = if streamed.stdout { "" } else { &self.stdout };
        let err = if streamed.stderr { "" } else { &self.stderr };
        out.lines().chain(err.lines())
    }

    /// The failure a non-zero exit is, with the last lines as a local run shows them.
    pub(super) fn failure(&self, task: &str, network: bool, code: i32) -> Error {
        let mut tail = LogTail::default();
        for line in self.lines() {
            tail.push(line.trim_end_matches('\r').to_string());
        }
        let log_tail = tail.into_lines();
        Error::TaskFailed {
            task: task.to_string(),
            code: i64::from(code),
            killed: None,
            offline: crate::executor::offline::note(task, network, &log_tail),
            log_tail,
        }
    }
}

impl RemoteExecutor {
    /// The result's stdout and stderr: inline, or fetched from the CAS through `scratch`.
    pub(super) async fn logs(
        &self,
        result: &re::ActionResult,
        scratch: &Path,
    ) -> Result<Logs, RemoteError> {
        Ok(Logs {
            stdout: self
                .log(
                    &result.stdout_raw,
                    result.stdout_digest.as_ref(),
                    scratch,
                    "stdout",
                )
                .await?,
            stderr: self
                .log(
                    &result.stderr_raw,
                    result.stderr_digest.as_ref(),
                    scratch,
                    "stderr",
                )
                .await?,
        })
    }

    async fn log(
        &self,
        raw: &[u8],
        digest: Option<&re::Digest>,
        scratch: &Path,
        name: &str,
    ) -> Result<String, RemoteError> {
        let digest = match digest {
            Some(d) if raw.is_empty() && d.size_bytes > 0 => d,
            _ => return Ok(String::from_utf8_lossy(raw).into_owned()),
        };
        let to = scratch.join(name);
        let read = BlobRead {
            blob: crate::cache::BlobRef {
                sha256: digest.hash.clone(),
                size: u64::try_from(digest.size_bytes).unwrap_or(0),
            },
            to: to.clone(),
            mode: 0o600,
        };
        self.storage.read_all(vec![read]).await?;
        let bytes = std::fs::read(&to)
            .map_err(|e| RemoteError::Local(format!("cannot read {}: {e}", to.display())))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A successful result's outputs, checked, into `staging`.
    pub(super) async fn outputs(
        &self,
        task: &Task,
        key: &TaskKey,
        result: re::ActionResult,
        staging: &Path,
    ) -> Result<()> {
        let bad = |why: String| Error::RemoteExecution {
            task: task.name.clone(),
            reason: format!("{}: the result {why}", self.storage.server()),
        };
        let trees = self
            .storage
            .fetch_trees(&result)
            .await
            .map_err(|e| self.unusable(&task.name, e))?;
        let record = from_action_result(result, key, None, &trees).map_err(bad)?;
        materialize::check(&record.outputs).map_err(bad)?;
        if let Some(stray) = outside_outputs(task, &record.outputs) {
            return Err(bad(format!(
                "names `{stray}`, which is not among the task's declared outputs"
            )));
        }
        if let Some(output) = missing_output(task, &record.outputs) {
            return Err(Error::MissingOutput {
                task: task.name.clone(),
                output: output.to_string(),
            });
        }
        let outputs = std::sync::Arc::new(record.outputs);
        let (o, to) = (outputs.clone(), staging.to_path_buf());
        let files = off_async_workers(&task.name, move || {
            materialize::lay_out(&o, &to)
                .map_err(|e| Error::io("cannot stage outputs", &to)(std::io::Error::other(e)))
        })
        .await?;
        self.storage
            .read_all(files)
            .await
            .map_err(|e| self.unusable(&task.name, e))?;
        let to = staging.to_path_buf();
        off_async_workers(&task.name, move || {
            materialize::finish(&outputs, &to)
                .map_err(|e| Error::io("cannot stage outputs", &to)(std::io::Error::other(e)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_shows_the_last_lines_stdout_then_stderr() {
        let stdout: String = (0..60).map(|i| format!("out {i}\n")).collect();
        let logs = Logs {
            stdout,
            stderr: "err 1\r\nerr 2\n".into(),
        };
        let Error::TaskFailed { code, log_tail, .. } = logs.failure("t", false, 2) else {
            panic!("a task failure")
        };
        assert_eq!(code, 2);
        assert_eq!(log_tail.len(), LogTail::LINES);
        assert_eq!(log_tail[log_tail.len() - 2..], ["err 1", "err 2"]);
        assert_eq!(log_tail[0], "out 12");
    }
}
