//! `build`: resolve the images a plan needs, then run it with Ctrl-C cleaning up after itself.

use std::collections::BTreeMap;
use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

use super::{Cli, run_id};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::executor::{DockerEngine, ImageProvider, Provenance};
use crate::graph::Graph;
use crate::report::Reporter;
use crate::scheduler::Scheduler;

pub(super) struct Build<'a> {
    config: &'a Config,
    plan: Vec<String>,
    engine: DockerEngine,
    verbose: bool,
}

impl<'a> Build<'a> {
    pub(super) async fn new(
        cli: &Cli,
        config: &'a Config,
        graph: &Graph,
        targets: &[String],
    ) -> Result<Build<'a>> {
        let plan = graph.plan(config, targets)?;
        let engine = DockerEngine::connect(&run_id(), &cli.labels).await?;
        Ok(Build {
            config,
            plan,
            engine,
            verbose: cli.verbose,
        })
    }

    /// Resolves the image of every toolchain the plan uses.
    async fn images(&self) -> Result<BTreeMap<String, String>> {
        let provider = ImageProvider::new(&self.engine, &self.config.root, self.verbose);
        let mut images = BTreeMap::new();
        for name in &self.plan {
            let tc = &self.config.toolchains[&self.config.tasks[name].toolchain];
            if images.contains_key(&tc.name) {
                continue;
            }
            let (id, how) = provider.ensure(tc).await?;
            if how != Provenance::Present {
                eprintln!("toolchain {}: {} is {id} ({how})", tc.name, tc.image);
            }
            images.insert(tc.name.clone(), id);
        }
        Ok(images)
    }

    pub(super) async fn run(self) -> Result<()> {
        let engine = self.engine.clone();
        let result = with_signals(&engine, async {
            let images = self.images().await?;
            let reporter = Reporter::new("Build", self.verbose);
            let scheduler = Scheduler::new(self.config, &self.engine, images, reporter);
            scheduler.run_sequential(&self.plan).await.map(|_| ())
        })
        .await;
        // Containers are removed as each task ends; this sweep catches any a failure left behind.
        engine.remove_run_containers().await;
        result
    }
}

/// Runs `fut`; on SIGINT or SIGTERM drops it and removes every container of the run.
pub(crate) async fn with_signals<T>(
    engine: &DockerEngine,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let mut term = signal(SignalKind::terminate())
        .map_err(Error::io("cannot watch for SIGTERM", "<signal>"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(Error::io("cannot watch for SIGINT", "<signal>"))?;
    let (signal, code) = tokio::select! {
        r = fut => return r,
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    };
    eprintln!("{signal}: stopping the build and removing its containers");
    engine.remove_run_containers().await;
    Err(Error::Interrupted { signal, code })
}
