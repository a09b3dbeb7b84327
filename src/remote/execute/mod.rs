//! `--executor remote`: each task that must run goes to a REAPI execution engine (BuildGrid,
//! Buildbarn, BuildBuddy, NativeLink, ...) as the `Action` whose digest is its key. What the
//! engine lacks is uploaded ([`inputs`]), the execution followed to its end ([`operation`]), and
//! the answer turned into a local run's ([`response`]): a failure with its log's last lines, or
//! outputs checked into the staging folder. A `local_only` task runs on this machine's Docker
//! engine instead: its env values never leave it.

mod in_flight;
mod inputs;
mod operation;
mod queue_clock;
mod response;
mod settings;
mod status;
mod timings;
mod watch;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use settings::ExecutorSettings;

use crate::error::{Error, Result};
use crate::executor::{DockerExecutor, Executor, TaskJob, Timings};
use crate::fingerprint::action::{CONTAINER_IMAGE, TaskAction};
use crate::remote::RemoteError;
use crate::remote::grpc::GrpcStorage;
use in_flight::InFlight;
use operation::Stopped;
use queue_clock::QueueClock;
use timings::Measured;
use watch::{Streamed, Watch};

/// Runs tasks on a remote execution engine, and `local_only` ones on the local engine.
pub(crate) struct RemoteExecutor {
    storage: GrpcStorage,
    in_flight: InFlight,
    /// When a queued task is judged stuck.
    queue: QueueClock,
    local: DockerExecutor,
    /// Where blobs and logs pass through on their way (the cache folder's `tmp`).
    scratch: PathBuf,
}

impl RemoteExecutor {
    /// Checks the settings; connects nothing yet.
    pub(crate) fn new(
        settings: &ExecutorSettings,
        local: DockerExecutor,
        scratch: PathBuf,
    ) -> Result<RemoteExecutor> {
        let storage = GrpcStorage::connect(&settings.server)
            .map_err(|e| Error::RemoteSetting(format!("remote executor: {e}")))?
            .with_keep_alive();
        Ok(RemoteExecutor {
            storage,
            queue: QueueClock::new(settings.queue_timeout),
            in_flight: InFlight::default(),
            local,
            scratch,
        })
    }

    /// Cancels every operation this build left on the engine (Ctrl-C, a build stopped by a
    /// failure); bounded, best effort.
    pub(crate) async fn cancel_all(&self) {
        let names = self.in_flight.take_all();
        futures_util::future::join_all(names.iter().map(|n| self.cancel(n))).await;
    }

    fn storage_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn unusable(&self, task: &str, e: RemoteError) -> Error {
        Error::RemoteExecution {
            task: task.to_string(),
            reason: e.to_string(),
        }
    }

    /// A folder of the task's own below the scratch folder.
    fn scratch_for(&self, task: &str) -> Result<tempfile::TempDir> {
        std::fs::create_dir_all(&self.scratch)
            .map_err(Error::io("cannot create the scratch folder", &self.scratch))?;
        tempfile::Builder::new()
            .prefix(&format!("{task}-remote-"))
            .tempdir_in(&self.scratch)
            .map_err(Error::io("cannot create the scratch folder", &self.scratch))
    }

    /// Uploads what the engine lacks and executes, once more should the engine say an input
    /// went missing meanwhile (a CAS may evict between the two).
    async fn run_remote(
        &self,
        job: &TaskJob<'_>,
        action: &TaskAction,
        scratch: &Path,
        ours: &mut Measured,
    ) -> Result<(
        bazel_remote_apis::build::bazel::remote::execution::v2::ExecuteResponse,
        Streamed,
    )> {
        let task = &job.task.name;
        let blobs =
            inputs::Blobs::of(action, &job.files).map_err(|reason| Error::RemoteExecution {
                task: task.clone(),
                reason,
            })?;
        let mut again = true;
        let mut watch = Watch::new(job.log.clone(), self.storage.server());
        loop {
            let t = Instant::now();
            let sent = blobs.upload_missing(&self.storage, scratch).await;
            sent.map_err(|e| self.unusable(task, e))?;
            ours.upload += t.elapsed();
            let t = Instant::now();
            let executed = self.execute(&action.digest, job.fresh, &mut watch).await;
            ours.execute += t.elapsed();
            match executed {
                Ok(r) if again && status::inputs_missing(&r) => again = false,
                Ok(r) => {
                    let r = status::check(r, task, self.storage.server(), &image(action))?;
                    return Ok((r, watch.finish().await));
                }
                Err(stopped) => return Err(self.stopped(task, stopped, action)),
            }
        }
    }

    fn stopped(&self, task: &str, stopped: Stopped, action: &TaskAction) -> Error {
        let server = self.storage.server();
        let reason = match stopped {
            Stopped::Engine(e) => e.to_string(),
            Stopped::Refused(s) => status::refusal(server, s.code(), s.message(), &image(action)),
            Stopped::Failed(why) => format!("{server} failed the execution: {why}"),
            Stopped::Unplaced(waited) => format!(
                "no worker holds image {}: it waited {} in {server}'s queue while nothing \
                 else of the build ran (`[remote] queue_timeout`), and was cancelled",
                image(action),
                crate::human::duration(waited)
            ),
        };
        Error::RemoteExecution {
            task: task.to_string(),
            reason,
        }
    }
}

/// The image a task's action asks for (`reference@id`).
fn image(action: &TaskAction) -> String {
    let props = action.action.platform.as_ref().map(|p| &p.properties);
    props
        .and_then(|p| p.iter().find(|p| p.name == CONTAINER_IMAGE))
        .map_or_else(|| "(none named)".into(), |p| p.value.clone())
}

impl Executor for RemoteExecutor {
    async fn run(&self, job: &TaskJob<'_>, staging: &Path) -> Result<Timings> {
        if job.task.local_only {
            return self.local.run(job, staging).await;
        }
        let task = &job.task.name;
        let Some(action) = job.action.clone() else {
            return Err(Error::RemoteExecution {
                task: task.clone(),
                reason: "the task has no Action to send (a bug: the build computed no key)".into(),
            });
        };
        let scratch = self.scratch_for(task)?;
        let mut ours = Measured::default();
        let (response, streamed) = self
            .run_remote(job, &action, scratch.path(), &mut ours)
            .await?;
        let cached = response.cached_result;
        let result = response.result.unwrap_or_default();
        let t = Instant::now();
        let logs = self
            .logs(&result, scratch.path())
            .await
            .map_err(|e| self.unusable(task, e))?;
        for line in logs.not_streamed(streamed) {
            (job.log)(line);
        }
        if result.exit_code != 0 {
            return Err(logs.failure(task, job.task.network, result.exit_code));
        }
        let meta = result.execution_metadata.clone();
        self.outputs(job.task, &action.key(), result, staging)
            .await?;
        ours.download = t.elapsed();
        Ok(timings::timings(meta.as_ref(), cached, ours))
    }

    fn needs_action(&self) -> bool {
        true
    }
}
