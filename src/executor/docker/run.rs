//! One task's container: created with the task's limits and the cache volume, its files uploaded
//! as one tar, started and waited for while its log streams, a failure diagnosed, its declared
//! outputs downloaded through the shared output path, and removed.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::engine::short_reason;
use super::volume::cache_mount;
use super::{DockerEngine, Reaper};
use crate::config::OutputPath;
use crate::error::{Error, Result};
use crate::executor::log_tail::LogTail;
use crate::executor::tarball::{self, WORKSPACE};
use crate::executor::{Executor, TaskJob, Timings, off_async_workers, outputs};

/// At most this many processes in a task's container: a fork bomb stays in its container.
const PIDS_LIMIT: i64 = 4096;

/// What the Docker executor needs beyond the engine; the local executor has none of it.
#[derive(Debug, Clone)]
pub(crate) struct DockerSettings {
    /// The volume every task mounts at `/cache` (the toolchains' own caches).
    pub(crate) cache_volume: String,
}

/// Runs each task in a fresh container on one engine.
pub(crate) struct DockerExecutor {
    engine: DockerEngine,
    settings: DockerSettings,
    reaper: Reaper,
    /// Set once the first task of the run has reaped leftovers and made the cache volume: a
    /// build that runs nothing never gets that far.
    prepared: tokio::sync::OnceCell<()>,
}

impl DockerExecutor {
    pub(crate) fn new(
        engine: DockerEngine,
        settings: DockerSettings,
        reaper: Reaper,
    ) -> DockerExecutor {
        DockerExecutor {
            engine,
            settings,
            reaper,
            prepared: tokio::sync::OnceCell::new(),
        }
    }

    /// Before the first container of a run: reap what crashed runs left, make the cache volume.
    async fn prepare(&self, image: &str) -> Result<()> {
        self.prepared
            .get_or_try_init(|| async {
                self.reaper.reap_before_first_container().await?;
                let volume = &self.settings.cache_volume;
                if self.engine.ensure_volume(volume, image).await? {
                    tracing::info!(volume, "created the cache volume");
                }
                Ok::<(), Error>(())
            })
            .await?;
        Ok(())
    }

    fn container_body(&self, job: &TaskJob<'_>) -> ContainerCreateBody {
        let workdir = job.workdir_in(&Path::new("/").join(WORKSPACE));
        ContainerCreateBody {
            image: Some(job.image_id.clone()),
            cmd: Some(vec!["sh".into(), "-c".into(), job.task.run.clone()]),
            working_dir: Some(workdir.to_string_lossy().into_owned()),
            user: Some(format!("{}:{}", job.user.0, job.user.1)),
            env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(self.engine.labels_for(&job.task.name)),
            tty: Some(false),
            network_disabled: Some(!job.task.network),
            host_config: Some(HostConfig {
                network_mode: (!job.task.network).then(|| "none".to_string()),
                mounts: Some(vec![cache_mount(&self.settings.cache_volume)]),
                memory: job.task.memory.map(|m| m as i64),
                memory_swap: job.task.memory.map(|m| m as i64),
                nano_cpus: job.task.cpus.map(|c| (c * 1e9) as i64),
                pids_limit: Some(PIDS_LIMIT),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Everything between creating the container and removing it.
    async fn run_in(
        &self,
        id: &str,
        job: &TaskJob<'_>,
        staging: &Path,
        t: &mut Timings,
    ) -> Result<()> {
        let started = Instant::now();
        self.upload(id, job).await?;
        t.upload = started.elapsed();
        let started = Instant::now();
        self.start_and_wait(id, job).await?;
        t.run = started.elapsed();
        let started = Instant::now();
        let (engine, id_c, task) = (self.engine.clone(), id.to_string(), job.task.name.clone());
        let handle = tokio::runtime::Handle::current();
        outputs::collect_outputs(job.task, staging, move |out| {
            handle.block_on(engine.open_output(&id_c, &task, out))
        })
        .await?;
        t.download = started.elapsed();
        Ok(())
    }

    /// Uploads the task's files: one tar, written on the blocking pool and streamed, so memory
    /// stays flat.
    async fn upload(&self, id: &str, job: &TaskJob<'_>) -> Result<()> {
        let task = &job.task.name;
        let (writer, reader) = tokio::io::duplex(256 * 1024);
        let (files, user, name) = (job.files.clone(), job.user, task.clone());
        let producer = off_async_workers(task, move || {
            let bridge = SyncIoBridge::new(writer);
            let mut w = tarball::write_input_tar(bridge, &files, user, &name)?;
            let broke = |source| Error::Upload {
                task: name.clone(),
                source,
            };
            std::io::Write::flush(&mut w).map_err(broke)?;
            w.shutdown().map_err(broke)
        });
        let upload = self.engine.docker.upload_to_container(
            id,
            Some(UploadToContainerOptionsBuilder::new().path("/").build()),
            bollard::body_try_stream(ReaderStream::new(reader)),
        );
        let (produced, uploaded) = tokio::join!(producer, upload);
        let refused = |e| self.engine.err(format!("uploading the inputs of {task}"))(e);
        match (produced, uploaded) {
            // The stream broke because the engine's end closed: the engine says why.
            (Err(Error::Upload { .. }), Err(e)) => Err(refused(e)),
            (Err(e), _) => Err(e),
            (Ok(()), uploaded) => uploaded.map_err(refused),
        }
    }

    /// Starts the container and streams its log until it exits; a non-zero exit is diagnosed.
    async fn start_and_wait(&self, id: &str, job: &TaskJob<'_>) -> Result<()> {
        crate::interrupt::check()?;
        self.engine.docker.start_container(id, None).await.map_err(
            self.engine
                .err(format!("starting the container of {}", job.task.name)),
        )?;
        let logs = self.engine.stream_logs(id, &job.log);
        let (tail, code) = tokio::join!(logs, self.engine.wait_container(id));
        match code? {
            0 => Ok(()),
            code => Err(self.diagnose(id, job, code, tail).await),
        }
    }

    /// Why a container exited with `code`: the engine went away, the task ran out of memory or
    /// was killed from outside, or it failed on its own.
    async fn diagnose(&self, id: &str, job: &TaskJob<'_>, code: i64, streamed: LogTail) -> Error {
        let task = &job.task.name;
        let state = match self.engine.docker.inspect_container(id, None).await {
            Ok(c) => c.state,
            Err(e) => {
                return self
                    .engine
                    .err(format!("inspecting the container of {task}"))(e);
            }
        };
        let oom = state.and_then(|s| s.oom_killed).unwrap_or(false);
        if !oom
            && (code == 137 || code == 143)
            && let Some(gone) = self.engine_went_away(task).await
        {
            return gone;
        }
        // The follow stream can end before the engine has written the last lines; once the
        // container has exited, its stored log is complete.
        let tail = self.engine.stored_log_tail(id).await.unwrap_or(streamed);
        let killed = if oom {
            let limit = job
                .task
                .memory
                .map(|m| format!(" of {}", crate::human::size_exact(m)))
                .unwrap_or_default();
            Some(format!("out of memory (over its memory limit{limit})"))
        } else if code == 137 {
            Some("SIGKILL from outside the task (docker kill, or the engine)".to_string())
        } else {
            None
        };
        let log_tail = tail.into_lines();
        Error::TaskFailed {
            task: task.clone(),
            code,
            offline: crate::executor::offline::note(task, job.task.network, &log_tail),
            killed,
            log_tail,
        }
    }

    /// An engine going away kills its containers too: that is the engine's failure, not the
    /// task's. A stopping engine kills its containers before it stops answering, so it gets a
    /// moment before being asked whether it is still there.
    async fn engine_went_away(&self, task: &str) -> Option<Error> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let e = self.engine.docker.ping().await.err()?;
        Some(self.engine.unavailable(format!(
            "the engine went away while task {task} ran: {}",
            short_reason(&e)
        )))
    }
}

impl DockerEngine {
    /// Creates a container with this run's labels; it is removed on Ctrl-C from then on.
    pub(super) async fn create_container(&self, body: ContainerCreateBody) -> Result<String> {
        // No container is created once the build was told to stop.
        crate::interrupt::check()?;
        self.count_created();
        let resp = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::new().build()), body)
            .await
            .map_err(self.err("creating a container"))?;
        self.active.lock().expect("lock").insert(resp.id.clone());
        Ok(resp.id)
    }

    /// The exit code of a started container, once it has exited.
    pub(super) async fn wait_container(&self, id: &str) -> Result<i64> {
        // Only called after start: `not-running` then means "has exited", with no race.
        let opts = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut stream = self.docker.wait_container(id, Some(opts));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.err("waiting for the container")(e)),
            None => Err(self.unavailable("the engine closed the wait stream")),
        }
    }

    /// The archive of one declared output as the task left it in its container (named by the
    /// output's last path component); None when the task did not make it. Blocking reads: use it
    /// on the blocking pool.
    async fn open_output(
        &self,
        id: &str,
        task: &str,
        out: &OutputPath,
    ) -> Result<Option<impl std::io::Read + use<>>> {
        let prefix = out.prefix();
        let path = match prefix.as_str() {
            "" => format!("/{WORKSPACE}/."),
            prefix => format!("/{WORKSPACE}/{prefix}"),
        };
        let opts = DownloadFromContainerOptionsBuilder::new()
            .path(&path)
            .build();
        let mut stream = Box::pin(
            self.docker
                .download_from_container(id, Some(opts))
                .peekable(),
        );
        match stream.as_mut().peek().await {
            Some(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => return Ok(None),
            Some(Err(_)) => {
                let e = match stream.next().await {
                    Some(Err(e)) => e,
                    _ => unreachable!("peeked an error"),
                };
                return Err(self
                    .err(format!("downloading output {} of {task}", out.path))(
                    e
                ));
            }
            _ => {}
        }
        let reader = StreamReader::new(stream.map_err(std::io::Error::other));
        Ok(Some(SyncIoBridge::new(reader)))
    }
}

impl Executor for DockerExecutor {
    async fn run(&self, job: &TaskJob<'_>, staging: &Path) -> Result<Timings> {
        self.prepare(&job.image_id).await?;
        let mut t = Timings::default();
        let started = Instant::now();
        let id = self
            .engine
            .create_container(self.container_body(job))
            .await?;
        t.create = started.elapsed();
        let result = self.run_in(&id, job, staging, &mut t).await;
        let started = Instant::now();
        self.engine.remove_container(&id).await;
        t.remove = started.elapsed();
        result.map(|()| t)
    }
}
