//! Running one task somewhere hermetic: the [`Executor`] trait and what it is given.
//!
//! The Docker executor ([`DockerExecutor`], on a [`DockerEngine`]) creates a container per task,
//! uploads one tar of the task's files, runs it, and downloads its declared outputs into a
//! staging folder. The local executor ([`LocalExecutor`]) runs tasks as processes inside a build
//! container that carries the toolchains (Dockerfile.dev), with the same keys, cache and output
//! checks. Both bring outputs back through [`outputs`], keep a failed task's last lines in a
//! [`log_tail::LogTail`], and map the task's working folder with [`TaskJob::workdir_in`].

mod docker;
mod image_provider;
mod local;
mod log_tail;
pub(crate) mod offline;
mod outputs;
mod run_registry;
pub mod tarball;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use docker::DockerEngine;
pub(crate) use docker::{DockerExecutor, DockerSettings, Reaper, hostname};
pub use image_provider::{ImageProvider, Provenance};
pub use local::LocalExecutor;
pub(crate) use log_tail::LogTail;
pub use run_registry::{RunEntry, RunRegistry};

use crate::config::Task;
use crate::error::Result;
use crate::fingerprint::InputFile;
use crate::fingerprint::action::TaskAction;

/// Receives each line a task prints, as it prints it.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything an executor needs to run one task.
pub struct TaskJob<'a> {
    pub task: &'a Task,
    /// The resolved image ID of the task's toolchain.
    pub image_id: String,
    /// Toolchain env, then the task's declared host variables.
    pub env: Vec<(String, String)>,
    /// The task's inputs and its dependencies' outputs, sorted by path.
    pub files: Vec<InputFile>,
    /// `uid:gid` the task runs as; the files it receives belong to it.
    pub user: (u32, u32),
    pub log: LogSink,
    /// The task as a REAPI `Action` (its digest is the task key), for a remote executor; None
    /// when the build computes no key and the executor does not ask for one.
    pub action: Option<Arc<TaskAction>>,
    /// Run it even when an executor could answer from a cache of its own (a remote engine's
    /// action cache): `--check-reproducible`'s second run.
    pub fresh: bool,
}

impl TaskJob<'_> {
    /// Where the task runs, given where its files are: `root` for `workdir = "."`, else the
    /// folder below it.
    pub(crate) fn workdir_in(&self, root: &Path) -> PathBuf {
        workdir_in(root, &self.task.workdir)
    }
}

fn workdir_in(root: &Path, workdir: &str) -> PathBuf {
    match workdir {
        "." => root.to_path_buf(),
        dir => root.join(dir),
    }
}

/// Where the time of one task run went.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    pub create: Duration,
    pub upload: Duration,
    pub run: Duration,
    pub download: Duration,
    pub remove: Duration,
    /// The remote worker that ran the task, when a remote engine says.
    pub worker: Option<String>,
    /// A remote engine answered from its action cache: the task ran nowhere in this build.
    pub engine_cached: bool,
}

impl Timings {
    pub fn total(&self) -> Duration {
        self.create + self.upload + self.run + self.download + self.remove
    }
}

/// Runs tasks hermetically: only `job.files` are visible to the task, and only its declared
/// outputs come back, checked, into `staging` (project-relative paths).
pub trait Executor {
    fn run(
        &self,
        job: &TaskJob<'_>,
        staging: &Path,
    ) -> impl std::future::Future<Output = Result<Timings>> + Send;

    /// Whether jobs must carry their `Action` even when the build computes no key (`build`).
    fn needs_action(&self) -> bool {
        false
    }
}

/// Runs the blocking part of a task's run (files, archives, processes) on the blocking pool, so
/// that the async workers keep streaming the other tasks' logs and transfers.
pub(crate) async fn off_async_workers<T: Send + 'static>(
    task: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::Error::TaskPanicked {
            task: task.to_string(),
            message: e.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_in_their_folder_of_the_workspace() {
        let root = Path::new("/workspace");
        assert_eq!(workdir_in(root, "."), root);
        assert_eq!(workdir_in(root, "web/app"), Path::new("/workspace/web/app"));
    }
}
