//! `flamenco-build.toml`, or the built-in Flamenco graph: parsed once and validated before anything
//! runs. Every error names the file, line and column it comes from.

mod cache_dir;
mod file;
pub mod flamenco;
pub(crate) mod go_version;
mod output_index;
mod path_pattern;
pub(crate) mod remote;
mod toml_message;
mod validate;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use crate::diagnostic::{Diagnostic, Source};
pub use output_index::OutputIndex;
pub use path_pattern::{InputSet, OutputPath};
pub use remote::RemoteConfig;

use crate::error::{Error, Result};

/// The file a project describes its graph in.
pub const CONFIG_FILE: &str = "flamenco-build.toml";

/// A validated project: its settings, toolchains and tasks.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project root: every path in the config is relative to it.
    pub root: PathBuf,
    pub source: Source,
    /// True when no flamenco-build.toml was found and Flamenco's own graph is used.
    pub builtin: bool,
    pub settings: Settings,
    /// The `[remote]` table as written (the command line may override it, see
    /// `crate::remote::RemoteSettings`).
    pub remote: RemoteConfig,
    pub toolchains: BTreeMap<String, Toolchain>,
    pub tasks: BTreeMap<String, Task>,
    /// Every task's outputs, indexed when first needed (see [`Config::all_outputs`]).
    pub(crate) all_outputs: std::sync::OnceLock<std::sync::Arc<OutputIndex>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The artifact cache, relative to the root unless absolute.
    pub cache_dir: PathBuf,
    /// The named volume mounted at /cache in every task container: by default one per project
    /// ([`Settings::default_cache_volume`]); a name shared by several projects is explicit.
    pub cache_volume: String,
    pub jobs: usize,
    /// `uid:gid` to run tasks as, parsed; by default the invoking user's ([`Settings::user_ids`]).
    pub user: Option<(u32, u32)>,
    /// The artifact cache is trimmed to this size after each build, least recently used first.
    pub cache_max_size: u64,
    /// Entries unused this long are dropped after each build.
    pub cache_max_age: std::time::Duration,
}

impl Settings {
    pub const DEFAULT_MAX_SIZE: u64 = 5 * 1024 * 1024 * 1024;
    pub const DEFAULT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

    /// The uid and gid tasks run as: the setting, else the invoking user's.
    pub fn user_ids(&self) -> (u32, u32) {
        self.user.unwrap_or_else(|| {
            (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )
        })
    }

    /// The cache volume of a project that names none: its own, named from its root (the
    /// canonical path), so that no other project's tasks can read or poison it.
    pub fn default_cache_volume(root: &Path) -> String {
        let digest = crate::fingerprint::hash_bytes(root.as_os_str().as_encoded_bytes());
        format!("flamenco-build-cache-{}", &digest[..12])
    }

    pub fn default_jobs() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub name: String,
    /// The pinned image reference; resolved to an image ID at build time.
    pub image: String,
    /// Why this image: where it is set, or what picked it ("go 1.26.2 in go.mod"); `graph`
    /// shows it.
    pub why: String,
    /// How to build the image when it is missing (relative to the root).
    pub dockerfile: Option<PathBuf>,
    pub context: Option<PathBuf>,
    pub build_args: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    /// With the local executor (inside a build container), the command whose output identifies
    /// the toolchain in task keys instead of the image ID (`go version`, `node --version`).
    pub version_command: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub description: Option<String>,
    pub toolchain: String,
    pub deps: Vec<String>,
    /// Run with `sh -c` in the working directory.
    pub run: String,
    /// The working directory, relative to /workspace.
    pub workdir: String,
    pub inputs: InputSet,
    pub outputs: Vec<OutputPath>,
    /// Host variables passed into the task (their values enter the key, never stored in clear).
    pub env: Vec<String>,
    pub network: bool,
    /// Memory limit in bytes (no swap beyond it), passed to the container.
    pub memory: Option<u64>,
    /// CPU limit, in CPUs (1.5 = one and a half), passed to the container.
    pub cpus: Option<f64>,
    /// Runs on this machine's engine even under `--executor remote`: its env values never go to
    /// a remote engine.
    pub local_only: bool,
    /// Where the task is declared, and where each dependency is named, for diagnostics.
    pub span: Option<Range<usize>>,
    pub dep_spans: Vec<Option<Range<usize>>>,
    /// Where each input pattern is written.
    pub input_spans: Vec<Option<Range<usize>>>,
}

impl Config {
    /// Reads `flamenco-build.toml` from `root`, or takes the built-in Flamenco graph when there is
    /// none.
    pub fn load(root: &Path) -> Result<Config> {
        let root = root
            .canonicalize()
            .map_err(Error::io("cannot open the project folder", root))?;
        let path = root.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(root, Source::new(path.display().to_string(), text), false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut config = Config::parse(
                    root,
                    Source::new(flamenco::SOURCE_NAME, flamenco::GRAPH),
                    true,
                )?;
                go_version::follow_go_mod(&mut config);
                Ok(config)
            }
            Err(e) => Err(Error::io("cannot read the configuration", path)(e)),
        }
    }

    /// Parses and validates a configuration; all problems are reported together.
    pub fn parse(root: PathBuf, source: Source, builtin: bool) -> Result<Config> {
        validate::validate(file::ConfigFile::parse(&source)?, root, source, builtin)
    }

    /// The artifact cache folder, absolute.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(&self.settings.cache_dir)
    }

    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.get(name)
    }

    /// The outputs of every task, and whose they are.
    pub fn all_outputs(&self) -> std::sync::Arc<OutputIndex> {
        self.all_outputs
            .get_or_init(|| std::sync::Arc::new(OutputIndex::new(self.tasks.values())))
            .clone()
    }
}

#[cfg(test)]
mod tests;
