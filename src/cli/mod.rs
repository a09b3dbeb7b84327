//! The command line: global options and one subcommand per mode, as the seed names them.

mod build;
mod cache;
mod shell;

pub use build::{BuildArgs, Mode};

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::executor::{DockerEngine, ImageProvider};
use crate::graph::Graph;

/// Builds a Flamenco-shaped project as a graph of tasks in pinned toolchain containers.
#[derive(Debug, Parser)]
#[command(name = "flamenco-build", version, about, propagate_version = true)]
pub struct Cli {
    /// Run as if started in DIR (the project root).
    #[arg(
        short = 'C',
        long = "directory",
        value_name = "DIR",
        global = true,
        default_value = "."
    )]
    pub directory: PathBuf,

    /// Stream every task's log, prefixed with the task name.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Add KEY=VALUE to the labels of every container and volume this run creates.
    #[arg(long = "label", value_name = "KEY=VALUE", global = true, value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The original build: the targets and what they need, one task at a time, no artifact cache.
    Build(BuildArgs),
    /// With the artifact cache, one task at a time: up to date, restored, or run and saved.
    #[command(alias = "buildIncremental")]
    BuildIncremental(BuildArgs),
    /// The artifact cache, and independent tasks at the same time (at most -j containers).
    #[command(alias = "buildOptimized")]
    BuildOptimized(BuildArgs),
    /// Show what the artifact cache holds.
    #[command(alias = "cacheStatus")]
    CacheStatus {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: crate::remote::RemoteArgs,
    },
    /// Remove the artifact cache.
    #[command(alias = "cleanCache")]
    CleanCache,
    /// Re-hash every cache entry against its manifest; report and evict bad ones.
    CacheVerify,
    /// Remove the artifact cache, every task's outputs in the workspace, and the cache volume.
    #[command(alias = "cleanAll")]
    CleanAll,
    /// Make every toolchain image available (present, pulled, or built) and create the cache volume.
    Setup,
    /// Print the task graph.
    Graph {
        /// Graphviz dot instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Run tasks for a remote-execution engine (a Remote Workers API bot, e.g. for BuildGrid).
    Worker(crate::worker::WorkerArgs),
    /// Print the completion script for a shell (e.g. `source <(flamenco-build completions bash)`).
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `flamenco-build man | man -l -`).
    Man,
}

fn parse_label(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

impl Cli {
    /// Runs the command; returns the exit status.
    pub fn execute(self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let result = runtime.block_on(self.run());
        match &result {
            // Blocking work of the dropped build (a restore stops at its next file) gets a
            // moment to wind down and clean up; the process is exiting either way.
            Err(Error::Interrupted { .. }) => {
                runtime.shutdown_timeout(std::time::Duration::from_millis(500))
            }
            // Everything the command started has been awaited: the process exits without first
            // waking and joining every idle thread of the runtime (a quarter of a millisecond of
            // a no-change build).
            Ok(()) => runtime.shutdown_background(),
            // Dropped: waits for blocking work still under way (a cancelled task's extraction).
            Err(_) => drop(runtime),
        }
        result
    }

    async fn run(self) -> Result<()> {
        // A worker has no project: it runs what the engine sends.
        match &self.command {
            Command::Worker(args) => return crate::worker::run(args, &self.labels).await,
            // Neither needs a project.
            Command::Completions { shell } => return shell::completions(*shell),
            Command::Man => return shell::man_page(),
            _ => {}
        }
        let config = std::sync::Arc::new(Config::load(&self.directory)?);
        let graph = Graph::new(&config)?;
        tracing::debug!(tasks = config.tasks.len(), "loaded the config");
        match &self.command {
            Command::Graph { dot } => {
                if *dot {
                    print!("{}", graph.to_dot(&config));
                } else {
                    print!("{}", graph.to_text(&config));
                }
                Ok(())
            }
            Command::Setup => self.setup(&config).await,
            Command::Build(args) => {
                build::Build::new(&self, &config, &graph, Mode::Original, args)
                    .await?
                    .run()
                    .await
            }
            Command::BuildIncremental(args) => {
                build::Build::new(&self, &config, &graph, Mode::Incremental, args)
                    .await?
                    .run()
                    .await
            }
            Command::BuildOptimized(args) => {
                build::Build::new(&self, &config, &graph, Mode::Optimized, args)
                    .await?
                    .run()
                    .await
            }
            Command::CacheStatus { json, remote } => cache::status(&config, *json, remote).await,
            Command::CleanCache => cache::clean_cache(&config),
            Command::CacheVerify => cache::verify(&config),
            Command::CleanAll => cache::clean_all(&config, &self.labels).await,
            Command::Worker(_) | Command::Completions { .. } | Command::Man => {
                unreachable!("handled before the config is loaded")
            }
        }
    }

    async fn setup(&self, config: &Config) -> Result<()> {
        let engine = DockerEngine::connect(&run_id(), &self.labels).await?;
        let provider = ImageProvider::new(&engine, &config.root, self.verbose);
        let mut first = None;
        for tc in config.toolchains.values() {
            let (id, how) = provider.ensure(tc).await?;
            println!(
                "toolchain {}: {} {} ({how})",
                tc.name,
                tc.image,
                short_id(&id)
            );
            first.get_or_insert(id);
        }
        if let Some(image) = first {
            let created = engine
                .ensure_volume(&config.settings.cache_volume, &image)
                .await?;
            println!(
                "cache volume {}: {}",
                config.settings.cache_volume,
                if created { "created" } else { "present" }
            );
        }
        Ok(())
    }
}

/// A fresh id for this run's labels.
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("flamenco-build").chain(args.iter().copied()))
            .expect("parses")
            .command
    }

    /// A Flamenco developer's mage target names carry over.
    #[test]
    fn the_seeds_mage_target_names_are_aliases() {
        match command(&["buildOptimized", "worker"]) {
            Command::BuildOptimized(a) => assert_eq!(a.targets, ["worker"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            command(&["buildIncremental"]),
            Command::BuildIncremental(_)
        ));
        assert!(matches!(
            command(&["cacheStatus"]),
            Command::CacheStatus { .. }
        ));
        assert!(matches!(command(&["cleanCache"]), Command::CleanCache));
        assert!(matches!(command(&["cleanAll"]), Command::CleanAll));
    }
}
