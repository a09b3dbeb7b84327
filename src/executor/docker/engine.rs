//! A connection to a Docker engine, and the identity of this run on it: the labels everything
//! it creates carries, and the containers it has created so far.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;

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

/// The client timeout covers whole uploads and builds; short calls get their own timeouts.
const CLIENT_TIMEOUT: u64 = 4 * 3600;

/// The API version is fixed at 1.41 (Docker 20.10; every later engine still speaks it) instead of
/// negotiated: the engine's /version call alone costs more than a whole no-change build may take.
/// The first real request tells whether an engine answers.
const API: &bollard::ClientVersion = &bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// A connection to a Docker engine, and the run whose containers it creates.
#[derive(Clone)]
pub struct DockerEngine {
    pub(crate) docker: Docker,
    host: String,
    run_id: String,
    labels: HashMap<String, String>,
    /// Containers of this run that exist right now: removed on Ctrl-C.
    pub(super) active: Arc<Mutex<BTreeSet<String>>>,
    /// How many containers this run has asked for.
    created: Arc<AtomicUsize>,
    /// Set once the engine's `/_ping` said it is a Docker engine (asked only when needed).
    is_docker: Arc<tokio::sync::OnceCell<()>>,
}

impl DockerEngine {
    /// Connects (DOCKER_HOST, or the local socket) with the fixed API version. `extra_labels` go
    /// on everything this run creates.
    pub async fn connect(run_id: &str, extra_labels: &[(String, String)]) -> Result<DockerEngine> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        DockerEngine::connect_to(&host, run_id, extra_labels)
    }

    /// Connects to the engine at `host` (`unix://PATH` or `tcp://HOST:PORT`), whatever
    /// DOCKER_HOST says: a worker names its engine on its command line.
    pub fn connect_to(
        host: &str,
        run_id: &str,
        extra_labels: &[(String, String)],
    ) -> Result<DockerEngine> {
        let host = host.to_string();
        let docker = client(&host)?;
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

    /// The error for a failed engine call: a connection that failed is the engine being
    /// unavailable; anything the engine answered is a Docker error with `context`.
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
            | BollardError::SocketNotFoundError(_) => {
                self.unavailable(format!("{context}: {}", short_reason(&source)))
            }
            source => Error::Docker {
                host: self.host.clone(),
                context,
                source,
            },
        }
    }

    /// The engine at this host cannot be used, for `reason`.
    pub(crate) fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::DockerUnavailable {
            host: self.host.clone(),
            reason: reason.into(),
        }
    }

    /// Fails, naming the host, when what answers there is not a Docker engine: any HTTP server
    /// answers "not found", which would otherwise read as an image or volume that is missing.
    /// Asked at most once per run, and only on such an answer, so a no-change build makes no
    /// extra call.
    pub(crate) async fn ensure_is_docker(&self) -> Result<()> {
        self.is_docker.get_or_try_init(|| self.ping()).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let not_docker = |what: String| {
            self.unavailable(format!(
                "what answers there is not a Docker engine ({what})"
            ))
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
            Err(_) => Err(self.unavailable("GET /_ping timed out")),
        }
    }

    /// What everything this run creates is labelled with.
    pub(super) fn labels(&self) -> &HashMap<String, String> {
        &self.labels
    }

    /// This run's labels, and the task's.
    pub(super) fn labels_for(&self, task: &str) -> HashMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(LABEL_TASK.into(), task.into());
        l
    }

    /// How many containers this run has asked the engine to create so far.
    pub fn containers_created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// Counts a container about to be asked for: a build dropped while the request is in flight
    /// still sweeps it.
    pub(super) fn count_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }
}

/// A client for the engine at `host` (`unix://PATH` or `tcp://HOST:PORT`).
fn client(host: &str) -> Result<Docker> {
    let unavailable = |reason: String| Error::DockerUnavailable {
        host: host.to_string(),
        reason,
    };
    if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, CLIENT_TIMEOUT, API)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, CLIENT_TIMEOUT, API)
    } else {
        return Err(unavailable(format!(
            "DOCKER_HOST `{host}` is not unix://PATH or tcp://HOST:PORT"
        )));
    }
    .map_err(|e| unavailable(e.to_string()))
}

/// The gist of a connection error, without the chain of wrappers.
pub(super) fn short_reason(e: &BollardError) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// This machine's name, as the runs of this host record it.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
