//! Error kinds of the library and the exit code each maps to.

use std::fmt;
use std::path::PathBuf;

use crate::diagnostic::Diagnostic;

/// Every failure the library reports. `main` prints it and exits with [`Error::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", Diagnostics(.0))]
    Config(Vec<Diagnostic>),

    #[error("unknown target `{name}`; the graph has: {known}")]
    UnknownTarget { name: String, known: String },

    #[error(
        "the cache folder {} is not flamenco-build's: {reason}. flamenco-build only uses a cache \
         folder that is empty or holds the CACHEDIR.TAG it writes (it clears what the folder \
         holds); set `cache_dir` to a folder of its own, or empty this one",
        dir.display()
    )]
    ForeignCache { dir: PathBuf, reason: String },

    #[error(
        "cannot reach the Docker engine at {host}: {reason}\n  is the Docker daemon running? \
         (DOCKER_HOST selects another engine)"
    )]
    DockerUnavailable { host: String, reason: String },

    #[error("Docker engine at {host}: {context}: {source}")]
    Docker {
        host: String,
        context: String,
        #[source]
        source: bollard::errors::Error,
    },

    #[error(
        "toolchain `{toolchain}` needs image `{image}`{why}, which is not available:\n{attempts}\n  \
         provide it one of three ways: build or load it locally (for this repository's images: \
         {script}), make it pullable from a registry, or give the toolchain a \
         `dockerfile` in flamenco-build.toml"
    )]
    ImageUnavailable {
        toolchain: String,
        image: String,
        /// " (go 1.26.2 in go.mod)" when something picked the image, else empty.
        why: String,
        /// The command that makes it, when it is one of this repository's images.
        script: String,
        attempts: String,
    },

    #[error("toolchain `{toolchain}`: {reason}")]
    ToolchainVersion { toolchain: String, reason: String },

    #[error("{}", TaskFailure { task, code, log_tail, killed, offline })]
    TaskFailed {
        task: String,
        code: i64,
        /// Why the engine stopped it, when it was not the task's own doing (out of memory, killed).
        killed: Option<String>,
        log_tail: Vec<String>,
        /// The closing line when its log shows the network could not be reached
        /// (`crate::executor::offline`).
        offline: Option<String>,
    },

    #[error("task `{task}` stopped on an internal error: {message}")]
    TaskPanicked { task: String, message: String },

    #[error("task `{task}` did not produce its declared output `{output}`")]
    MissingOutput { task: String, output: String },

    #[error("task `{task}`: refused entry `{entry}` in its output archive: {reason}")]
    UnsafeArchive {
        task: String,
        entry: String,
        reason: String,
    },

    #[error("{context} ({}): {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The stream of a task's inputs to the engine broke: only the engine's end closes it.
    #[error("cannot send the inputs of task `{task}` to the engine: {source}")]
    Upload {
        task: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),

    #[error("cannot watch for {signal}: {source}")]
    Signals {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{count} cache entries were corrupt and have been evicted")]
    CacheCorrupt { count: usize },

    #[error(
        "the cache volume `{volume}` is in use by {users}; stop and remove {} first \
         (clean-all removed nothing)",
        if .users.matches("container `").count() > 1 { "them" } else { "it" }
    )]
    VolumeInUse { volume: String, users: String },

    #[error(
        "the cache volume `{volume}` was not created by flamenco-build (it lacks the label \
         dev.flamenco-build=1), so clean-all does not remove it (and removed nothing); remove \
         it yourself, or name another `cache_volume`"
    )]
    ForeignVolume { volume: String },

    #[error("interrupted by {signal}; removed the run's containers")]
    Interrupted { signal: &'static str, code: i32 },

    /// A remote setting given on the command line or in the environment that cannot be used.
    #[error("{0}")]
    RemoteSetting(String),

    /// The remote executor could not run a task (the engine failed, not the task): the reason
    /// names the server.
    #[error("task `{task}` on the remote executor: {reason}")]
    RemoteExecution { task: String, reason: String },

    /// `--check-reproducible` found outputs that differ between two runs of a task.
    #[error(
        "--check-reproducible: {files} output files differ between two runs (see the report above)"
    )]
    NotReproducible { files: usize },
}

impl Error {
    /// What `main` prints: `error: …`; a configuration's diagnostics say `error` at their place
    /// already (`file:line:column: error: …`), so they are printed as they are.
    pub fn report(&self) -> String {
        match self {
            Error::Config(_) => self.to_string(),
            _ => format!("error: {self}"),
        }
    }

    /// The process exit status for this error: 1 a task failed, 2 the configuration or the
    /// command line is wrong, 3 the Docker engine (or the remote executor) cannot be used, 4 a
    /// toolchain image is missing, 5 a local I/O failure, 6 `--check-reproducible` found outputs
    /// that differ, 128+N for a signal.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::TaskFailed { .. }
            | Error::TaskPanicked { .. }
            | Error::MissingOutput { .. }
            | Error::UnsafeArchive { .. } => 1,
            Error::Config(_)
            | Error::UnknownTarget { .. }
            | Error::ForeignVolume { .. }
            | Error::ForeignCache { .. }
            | Error::RemoteSetting(_) => 2,
            Error::DockerUnavailable { .. }
            | Error::Docker { .. }
            | Error::VolumeInUse { .. }
            | Error::Upload { .. }
            | Error::RemoteExecution { .. } => 3,
            Error::ImageUnavailable { .. } | Error::ToolchainVersion { .. } => 4,
            Error::Io { .. }
            | Error::Runtime(_)
            | Error::Signals { .. }
            | Error::CacheCorrupt { .. } => 5,
            Error::NotReproducible { .. } => 6,
            Error::Interrupted { code, .. } => *code,
        }
    }

    /// A write failed because a disk (or quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(source.raw_os_error(), Some(28) | Some(122)),
            _ => false,
        }
    }

    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

struct Diagnostics<'a>(&'a [Diagnostic]);

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} errors in the configuration", self.0.len())?;
        }
        Ok(())
    }
}

struct TaskFailure<'a> {
    task: &'a str,
    code: &'a i64,
    log_tail: &'a [String],
    killed: &'a Option<String>,
    offline: &'a Option<String>,
}

impl fmt::Display for TaskFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = self.killed {
            write!(
                f,
                "task `{}` was killed: {why} (exit code {})",
                self.task, self.code
            )?;
        } else {
            write!(
                f,
                "task `{}` failed with exit code {}",
                self.task, self.code
            )?;
        }
        if self.log_tail.is_empty() {
            write!(f, " (it printed nothing)")?;
        } else {
            write!(f, "; the last {} lines of its log:", self.log_tail.len())?;
            for line in self.log_tail {
                write!(f, "\n  {}| {line}", self.task)?;
            }
        }
        match self.offline {
            Some(note) => write!(f, "\n{note}"),
            None => Ok(()),
        }
    }
}
