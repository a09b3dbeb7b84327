//! The Docker executor: one fresh container per task, driven through the Engine API.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::tarball::{self, WORKSPACE};
use super::{Executor, TaskJob, Timings};
use crate::error::{Error, Result};

/// Every container and volume this tool creates carries this label (`1`).
pub const LABEL_ROOT: &str = "dev.flamenco-build";
/// The run that created a container.
pub const LABEL_RUN: &str = "dev.flamenco-build.run";
/// The task a container runs.
pub const LABEL_TASK: &str = "dev.flamenco-build.task";
/// The process and host of that run, so that a later run can tell a crashed run's leftovers from
/// the containers of a build still going on.
pub const LABEL_PID: &str = "dev.flamenco-build.pid";
pub const LABEL_HOST: &str = "dev.flamenco-build.host";

/// At most this many processes in a task's container: a fork bomb stays in its container.
const PIDS_LIMIT: i64 = 4096;

/// How many log lines a failed task shows.
const LOG_TAIL: usize = 50;

/// A connection to a Docker engine, and the run whose containers it creates.
#[derive(Clone)]
pub struct DockerEngine {
    pub(crate) docker: Docker,
    host: String,
    run_id: String,
    labels: HashMap<String, String>,
    /// Containers of this run that exist right now: removed on Ctrl-C.
    active: Arc<Mutex<BTreeSet<String>>>,
    /// Set once the first task of the run has reaped leftovers and prepared the cache volume:
    /// a build that runs nothing never gets that far.
    prepared: Arc<tokio::sync::OnceCell<()>>,
    created: Arc<std::sync::atomic::AtomicUsize>,
    /// Set once the engine's `/_ping` said it is a Docker engine (asked only when needed).
    is_docker: Arc<tokio::sync::OnceCell<()>>,
}

impl DockerEngine {
    /// Connects (DOCKER_HOST, or the local socket) and negotiates the API version. `extra_labels`
    /// go on everything this run creates.
    pub async fn connect(run_id: &str, extra_labels: &[(String, String)]) -> Result<DockerEngine> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unavailable = |reason: String| Error::DockerUnavailable {
            host: host.clone(),
            reason,
        };
        // The client timeout covers whole uploads and builds; short calls get their own timeouts.
        // The API version is fixed at 1.41 (Docker 20.10; every later engine still speaks it)
        // instead of negotiated: the engine's /version call alone costs more than a whole no-change
        // build may take. The first real request tells whether an engine answers.
        const TIMEOUT: u64 = 4 * 3600;
        const API: &bollard::ClientVersion = &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, TIMEOUT, API)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, TIMEOUT, API)
        } else {
            return Err(unavailable(format!(
                "DOCKER_HOST `{host}` is not unix://PATH or tcp://HOST:PORT"
            )));
        }
        .map_err(|e| unavailable(e.to_string()))?;
        let mut labels: HashMap<String, String> = extra_labels.iter().cloned().collect();
        labels.insert(LABEL_ROOT.into(), "1".into());
        labels.insert(LABEL_RUN.into(), run_id.into());
        labels.insert(LABEL_PID.into(), std::process::id().to_string());
        labels.insert(LABEL_HOST.into(), hostname());
        Ok(DockerEngine {
            docker,
            host,
            run_id: run_id.to_string(),
            labels,
            active: Arc::default(),
            prepared: Arc::default(),
            created: Arc::default(),
            is_docker: Arc::default(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub(crate) fn err(
        &self,
        context: impl Into<String>,
    ) -> impl FnOnce(BollardError) -> Error + '_ {
        let context = context.into();
        move |source| match source {
            BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_) => Error::DockerUnavailable {
                host: self.host.clone(),
                reason: format!("{context}: {}", short_reason(&source)),
            },
            source => Error::Docker {
                host: self.host.clone(),
                context,
                source,
            },
        }
    }

    /// Fails, naming the host, when what answers there is not a Docker engine: any HTTP server
    /// answers "not found", which would otherwise read as an image or volume that is missing.
    /// Asked at most once per run, and only on such an answer, so a no-change build makes no
    /// extra call.
    pub(crate) async fn ensure_is_docker(&self) -> Result<()> {
        self.is_docker
            .get_or_try_init(|| async {
                let not_docker = |what: String| Error::DockerUnavailable {
                    host: self.host.clone(),
                    reason: format!("what answers there is not a Docker engine ({what})"),
                };
                match tokio::time::timeout(Duration::from_secs(30), self.docker.ping()).await {
                    Ok(Ok(body)) if body.trim() == "OK" => Ok(()),
                    Ok(Ok(body)) => Err(not_docker(format!(
                        "GET /_ping answered `{}`, not `OK`",
                        body.chars().take(40).collect::<String>()
                    ))),
                    Ok(Err(BollardError::DockerResponseServerError { status_code, .. })) => Err(
                        not_docker(format!("GET /_ping answered HTTP {status_code}")),
                    ),
                    Ok(Err(e)) => Err(self.err("GET /_ping")(e)),
                    Err(_) => Err(Error::DockerUnavailable {
                        host: self.host.clone(),
                        reason: "GET /_ping timed out".into(),
                    }),
                }
            })
            .await?;
        Ok(())
    }

    /// Every container (running or not) matching a label filter (`key` or `key=value`).
    async fn containers_labelled(
        &self,
        label: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![label.to_string()]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        match self.docker.list_containers(Some(opts)).await {
            Ok(list) => Ok(list),
            // A Docker engine always has a container list: another server answered.
            Err(
                e @ BollardError::DockerResponseServerError {
                    status_code: 404, ..
                },
            ) => {
                self.ensure_is_docker().await?;
                Err(self.err("listing containers")(e))
            }
            Err(e) => Err(self.err("listing containers")(e)),
        }
    }

    /// Removes containers left by earlier runs of this host whose process is gone (a crash, a
    /// SIGKILL). Returns how many.
    pub async fn reap_leftovers(&self) -> Result<usize> {
        let me = hostname();
        let list = self.containers_labelled(LABEL_RUN).await?;
        let mut reaped = 0;
        for c in list {
            let labels = c.labels.unwrap_or_default();
            if labels.get(LABEL_RUN).map(String::as_str) == Some(self.run_id.as_str())
                || labels.get(LABEL_HOST) != Some(&me)
            {
                continue;
            }
            let alive = labels
                .get(LABEL_PID)
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(process_alive);
            if alive {
                continue;
            }
            if let Some(id) = c.id {
                tracing::info!(container = %id, run = ?labels.get(LABEL_RUN), "removing a container left by a crashed run");
                self.remove_container(&id).await;
                reaped += 1;
            }
        }
        Ok(reaped)
    }

    /// How many containers this run has asked the engine to create so far.
    pub fn containers_created(&self) -> usize {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Before the first container of a run: reap what crashed runs left, make the cache volume.
    async fn prepare(&self, volume: &str, image: &str) -> Result<()> {
        self.prepared
            .get_or_try_init(|| async {
                let reaped = self.reap_leftovers().await?;
                if reaped > 0 {
                    eprintln!(
                        "removed {reaped} container(s) left by an earlier run that did not finish"
                    );
                }
                if self.ensure_volume(volume, image).await? {
                    tracing::info!(volume, "created the cache volume");
                }
                Ok::<(), Error>(())
            })
            .await?;
        Ok(())
    }

    /// Removes the containers of a run that died without cleaning up; returns how many.
    pub async fn remove_containers_of_run(&self, run_id: &str) -> Result<usize> {
        let list = self
            .containers_labelled(&format!("{LABEL_RUN}={run_id}"))
            .await?;
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        futures_util::future::join_all(ids.iter().map(|id| self.remove_container(id))).await;
        Ok(ids.len())
    }

    /// Removes every container of this run (after Ctrl-C, or as a last sweep); returns how many.
    pub async fn remove_run_containers(&self) -> usize {
        if self.containers_created() == 0 {
            return 0;
        }
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{LABEL_RUN}={}", self.run_id)],
        );
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap_or_default();
        let ids: BTreeSet<String> = list
            .into_iter()
            .filter_map(|c| c.id)
            .chain(self.active.lock().expect("lock").iter().cloned())
            .collect();
        let n = ids.len();
        futures_util::future::join_all(ids.iter().map(|id| self.remove_container(id))).await;
        n
    }

    async fn remove_container(&self, id: &str) {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match tokio::time::timeout(
            Duration::from_secs(30),
            self.docker.remove_container(id, Some(opts)),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => {}
            Ok(Err(e)) => tracing::warn!(container = id, "could not remove container: {e}"),
            Err(_) => tracing::warn!(container = id, "removing the container timed out"),
        }
        self.active.lock().expect("lock").remove(id);
    }

    /// Makes sure the cache volume exists and any task user can write to it.
    pub async fn ensure_volume(&self, name: &str, init_image: &str) -> Result<bool> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(false),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.err(format!("inspecting volume {name}"))(e)),
        }
        let mut labels = self.labels.clone();
        labels.remove(LABEL_RUN);
        labels.remove(LABEL_PID);
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(self.err(format!("creating volume {name}")))?;
        // A new volume belongs to root; tasks run as the invoking user, so open it up once
        // (sticky, like /tmp).
        let body = ContainerCreateBody {
            image: Some(init_image.to_string()),
            cmd: Some(vec!["sh".into(), "-c".into(), "chmod 1777 /cache".into()]),
            user: Some("0:0".into()),
            labels: Some(self.labels_for("init-cache-volume")),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![cache_mount(name)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.create(body).await?;
        let result = async {
            self.docker
                .start_container(&id, None)
                .await
                .map_err(self.err("starting the volume init container"))?;
            self.wait(&id).await
        }
        .await;
        self.remove_container(&id).await;
        match result? {
            0 => Ok(true),
            code => Err(Error::Docker {
                host: self.host.clone(),
                context: format!("preparing volume {name}"),
                source: BollardError::DockerContainerWaitError {
                    error: "chmod failed".into(),
                    code,
                },
            }),
        }
    }

    /// Whether the volume `name` exists; an error when `clean-all` may not remove it: it was
    /// not created by flamenco-build (it lacks our label), or a container uses it.
    pub async fn check_volume_removable(&self, name: &str) -> Result<bool> {
        let volume = match self.docker.inspect_volume(name).await {
            Ok(v) => v,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.ensure_is_docker().await?;
                return Ok(false);
            }
            Err(e) => return Err(self.err(format!("inspecting volume {name}"))(e)),
        };
        if volume.labels.get(LABEL_ROOT).map(String::as_str) != Some("1") {
            return Err(Error::ForeignVolume {
                volume: name.to_string(),
            });
        }
        self.fail_if_in_use(name).await?;
        Ok(true)
    }

    /// An error naming the containers (running or not: the engine counts both) that use the
    /// volume `name`, if any do.
    async fn fail_if_in_use(&self, name: &str) -> Result<()> {
        let mut filters = HashMap::new();
        filters.insert("volume".to_string(), vec![name.to_string()]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let users: Vec<String> = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(self.err(format!("listing the containers using volume {name}")))?
            .into_iter()
            .map(|c| {
                let id = c.id.unwrap_or_default();
                let who = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| id.chars().take(12).collect());
                let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                format!(
                    "container `{who}` ({state}, image {})",
                    c.image.unwrap_or_default()
                )
            })
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(Error::VolumeInUse {
            volume: name.to_string(),
            users: users.join(", "),
        })
    }

    /// Removes a volume (`clean-all`); false when there was none.
    pub async fn remove_volume(&self, name: &str) -> Result<bool> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            // A container started using it since the check: say which.
            Err(
                e @ BollardError::DockerResponseServerError {
                    status_code: 409, ..
                },
            ) => {
                self.fail_if_in_use(name).await?;
                Err(self.err(format!("removing volume {name}"))(e))
            }
            Err(e) => Err(self.err(format!("removing volume {name}"))(e)),
        }
    }

    fn labels_for(&self, task: &str) -> HashMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(LABEL_TASK.into(), task.into());
        l
    }

    async fn create(&self, body: ContainerCreateBody) -> Result<String> {
        // No container is created once the build was told to stop.
        crate::interrupt::check()?;
        // Counted before the request: a build dropped while one is in flight still sweeps it.
        self.created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::new().build()), body)
            .await
            .map_err(self.err("creating a container"))?;
        self.active.lock().expect("lock").insert(resp.id.clone());
        Ok(resp.id)
    }

    async fn wait(&self, id: &str) -> Result<i64> {
        // Only called after start: `not-running` then means "has exited", with no race.
        let opts = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut stream = self.docker.wait_container(id, Some(opts));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.err("waiting for the container")(e)),
            None => Err(Error::DockerUnavailable {
                host: self.host.clone(),
                reason: "the engine closed the wait stream".into(),
            }),
        }
    }

    async fn run_in(
        &self,
        id: &str,
        job: &TaskJob<'_>,
        staging: &Path,
        t: &mut Timings,
    ) -> Result<()> {
        let task = &job.task.name;
        // Upload: one tar, written on a blocking thread and streamed, so memory stays flat.
        let started = Instant::now();
        let (writer, reader) = tokio::io::duplex(256 * 1024);
        let bridge = SyncIoBridge::new(writer);
        let files = job.files.clone();
        let user = job.user;
        let producer = tokio::task::spawn_blocking(move || {
            let mut w = tarball::write_input_tar(bridge, &files, user)?;
            std::io::Write::flush(&mut w)
                .map_err(Error::io("cannot stream the input archive", "<upload>"))?;
            w.shutdown()
                .map_err(Error::io("cannot stream the input archive", "<upload>"))
        });
        let upload = self.docker.upload_to_container(
            id,
            Some(UploadToContainerOptionsBuilder::new().path("/").build()),
            bollard::body_try_stream(ReaderStream::new(reader)),
        );
        let uploaded = upload.await;
        producer.await.expect("tar writer panicked")?;
        uploaded.map_err(self.err(format!("uploading the inputs of {task}")))?;
        t.upload = started.elapsed();

        let started = Instant::now();
        crate::interrupt::check()?;
        self.docker
            .start_container(id, None)
            .await
            .map_err(self.err(format!("starting the container of {task}")))?;
        let logs = self.collect_logs(id, job);
        let (tail, code) = tokio::join!(logs, self.wait(id));
        let code = code?;
        t.run = started.elapsed();
        if code != 0 {
            // An engine going away kills its containers too: that is the engine's failure, not
            // the task's, so an engine that no longer answers is reported as such.
            let state = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(self.err(format!("inspecting the container of {task}")))?
                .state;
            let oom = state.and_then(|s| s.oom_killed).unwrap_or(false);
            if !oom && (code == 137 || code == 143) {
                // Killed by a signal: a stopping engine kills its containers before it stops
                // answering. Give it a moment and ask whether it is still there.
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = self.docker.ping().await {
                    return Err(Error::DockerUnavailable {
                        host: self.host.clone(),
                        reason: format!(
                            "the engine went away while task {task} ran: {}",
                            short_reason(&e)
                        ),
                    });
                }
            }
            // The follow stream can end before the engine has written the last lines; once the
            // container has exited, its stored log is complete.
            let tail = self.log_tail(id).await.unwrap_or(tail);
            let killed = if oom {
                let limit = job
                    .task
                    .memory
                    .map(|m| format!(" of {}", crate::cache::human_size(m)))
                    .unwrap_or_default();
                Some(format!("out of memory (over its memory limit{limit})"))
            } else if code == 137 {
                Some("SIGKILL from outside the task (docker kill, or the engine)".to_string())
            } else {
                None
            };
            return Err(Error::TaskFailed {
                task: task.clone(),
                code,
                killed,
                log_tail: tail,
            });
        }

        let started = Instant::now();
        for out in &job.task.outputs {
            // Extracting makes missing folders: into a staging folder deleted meanwhile (with
            // the project), that would create the project's path anew.
            if !staging.is_dir() {
                return Err(Error::io("the staging folder is gone", staging)(
                    std::io::ErrorKind::NotFound.into(),
                ));
            }
            let prefix = out.prefix();
            let path = if prefix.is_empty() {
                format!("/{WORKSPACE}/.")
            } else {
                format!("/{WORKSPACE}/{prefix}")
            };
            let stream = self.docker.download_from_container(
                id,
                Some(
                    DownloadFromContainerOptionsBuilder::new()
                        .path(&path)
                        .build(),
                ),
            );
            let mut stream = Box::pin(stream.peekable());
            match stream.as_mut().peek().await {
                Some(Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                })) => {
                    return Err(Error::MissingOutput {
                        task: task.clone(),
                        output: out.path.clone(),
                    });
                }
                Some(Err(_)) => {
                    let e = stream
                        .next()
                        .await
                        .expect("peeked")
                        .expect_err("peeked an error");
                    return Err(self
                        .err(format!("downloading output {} of {task}", out.path))(
                        e
                    ));
                }
                _ => {}
            }
            let reader =
                SyncIoBridge::new(StreamReader::new(stream.map_err(std::io::Error::other)));
            let (task_name, out_c, staging_c) = (task.clone(), out.clone(), staging.to_path_buf());
            let written = tokio::task::spawn_blocking(move || {
                tarball::extract_output(reader, &task_name, &out_c, &staging_c)
            })
            .await
            .expect("extractor panicked")?;
            if written == 0 && out.is_glob() {
                return Err(Error::MissingOutput {
                    task: task.clone(),
                    output: out.path.clone(),
                });
            }
        }
        t.download = started.elapsed();
        Ok(())
    }

    /// The last lines of an exited container's stored log.
    async fn log_tail(&self, id: &str) -> Option<Vec<String>> {
        let opts = LogsOptionsBuilder::new()
            .follow(false)
            .stdout(true)
            .stderr(true)
            .tail(&LOG_TAIL.to_string())
            .build();
        let chunks: Vec<bollard::container::LogOutput> =
            self.docker.logs(id, Some(opts)).try_collect().await.ok()?;
        let mut text = Vec::new();
        for c in chunks {
            text.extend_from_slice(&c.into_bytes());
        }
        let lines: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        let skip = lines.len().saturating_sub(LOG_TAIL);
        Some(lines.into_iter().skip(skip).collect())
    }

    /// Streams the container's log to the job's sink line by line; returns the last lines.
    async fn collect_logs(&self, id: &str, job: &TaskJob<'_>) -> Vec<String> {
        let opts = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut tail = std::collections::VecDeque::with_capacity(LOG_TAIL);
        // Frames are arbitrary chunks: keep a partial line per stream.
        let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let emit = |line: &[u8], tail: &mut std::collections::VecDeque<String>| {
            let line = String::from_utf8_lossy(line)
                .trim_end_matches('\r')
                .to_string();
            (job.log)(&line);
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        };
        while let Some(item) = stream.next().await {
            let (which, bytes) = match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => (1, message),
                Ok(
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message },
                ) => (0, message),
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!("log stream ended: {e}");
                    break;
                }
            };
            let buf = &mut partial[which];
            buf.extend_from_slice(&bytes);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                emit(&line[..line.len() - 1], &mut tail);
            }
        }
        for buf in partial {
            if !buf.is_empty() {
                emit(&buf, &mut tail);
            }
        }
        tail.into_iter().collect()
    }
}

impl Executor for DockerEngine {
    async fn run(&self, job: &TaskJob<'_>, staging: &Path) -> Result<Timings> {
        self.prepare(&job.cache_volume, &job.image_id).await?;
        let mut t = Timings::default();
        let started = Instant::now();
        let workdir = if job.task.workdir == "." {
            format!("/{WORKSPACE}")
        } else {
            format!("/{WORKSPACE}/{}", job.task.workdir)
        };
        let body = ContainerCreateBody {
            image: Some(job.image_id.clone()),
            cmd: Some(vec!["sh".into(), "-c".into(), job.task.run.clone()]),
            working_dir: Some(workdir),
            user: Some(format!("{}:{}", job.user.0, job.user.1)),
            env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(self.labels_for(&job.task.name)),
            tty: Some(false),
            network_disabled: Some(!job.task.network),
            host_config: Some(HostConfig {
                network_mode: (!job.task.network).then(|| "none".to_string()),
                mounts: Some(vec![cache_mount(&job.cache_volume)]),
                memory: job.task.memory.map(|m| m as i64),
                memory_swap: job.task.memory.map(|m| m as i64),
                nano_cpus: job.task.cpus.map(|c| (c * 1e9) as i64),
                pids_limit: Some(PIDS_LIMIT),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.create(body).await?;
        t.create = started.elapsed();
        let result = self.run_in(&id, job, staging, &mut t).await;
        let started = Instant::now();
        self.remove_container(&id).await;
        t.remove = started.elapsed();
        result.map(|()| t)
    }
}

fn cache_mount(volume: &str) -> Mount {
    Mount {
        target: Some("/cache".into()),
        source: Some(volume.to_string()),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    }
}

/// The gist of a connection error, without the chain of wrappers.
fn short_reason(e: &BollardError) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}
