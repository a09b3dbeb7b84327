//! The build modes: resolve the images a plan needs, then run it, with Ctrl-C cleaning up after
//! itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::{Cli, run_id};
use crate::cache::{Cache, LocalStore};
use crate::config::{Config, Toolchain};
use crate::error::{Error, Result};
use crate::executor::{
    DockerEngine, DockerExecutor, DockerSettings, Executor, ImageProvider, LocalExecutor,
    Provenance, Reaper, RunRegistry,
};
use crate::fingerprint::{StatCache, WorkspaceSnapshot};
use crate::graph::Graph;
use crate::interrupt;
use crate::remote::{ExecutorSettings, Guarded, RemoteExecutor, RemoteSettings};
use crate::report::{Progress, Reporter, Trace};
use crate::scheduler::{CacheMode, RunMode, Scheduler};

/// Which of the seed's build modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `build`: every task runs; the cache is neither read nor written.
    Original,
    /// `build-incremental`: the cache, one task at a time.
    Incremental,
    /// `build-optimized`: the cache, and independent tasks at the same time.
    Optimized,
}

/// Options every build mode takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildArgs {
    /// Tasks to build (default: all).
    pub targets: Vec<String>,
    /// For each task: cache hit or miss, and for a miss what changed since its last recorded run.
    #[arg(long)]
    pub explain: bool,
    /// Say what would run, restore or be up to date, without doing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Run every task even on a cache hit, and overwrite what the cache tiers hold for it
    /// (every blob sent again).
    #[arg(long)]
    pub recache: bool,
    /// Run each task twice in two fresh containers (a cached one once more, compared with its
    /// cached outputs) and report every output file that differs; exit code 6 if any does.
    #[arg(long)]
    pub check_reproducible: bool,
    /// Hash every input again instead of trusting the stat cache.
    #[arg(long)]
    pub paranoid: bool,
    /// At most N containers at once (build-optimized; default: settings.jobs, else min(CPUs, 4)).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// After a failure, still build everything that does not depend on it (build-optimized).
    #[arg(long)]
    pub keep_going: bool,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Print a machine-readable summary on stdout at the end (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write a Chrome trace-event file (open it in Perfetto): a span per task phase.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<std::path::PathBuf>,
    /// Where tasks run: `docker` (a container each), `local` (processes, inside a build
    /// container that carries the toolchains, as in Dockerfile.dev) or `remote` (a REAPI
    /// execution engine: `[remote] executor` or --remote-executor).
    #[arg(long, value_enum, default_value_t = ExecutorKind::Docker, env = "FLAMENCO_BUILD_EXECUTOR")]
    pub executor: ExecutorKind,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorKind {
    #[default]
    Docker,
    Local,
    Remote,
}

pub(super) struct Build {
    config: Arc<Config>,
    plan: Vec<String>,
    labels: Vec<(String, String)>,
    verbose: bool,
    mode: Mode,
    args: BuildArgs,
}

impl Build {
    pub(super) async fn new(
        cli: &Cli,
        config: &Arc<Config>,
        graph: &Graph,
        mode: Mode,
        args: &BuildArgs,
    ) -> Result<Build> {
        let plan = graph.plan(config, &args.targets)?;
        let config = config.clone();
        Ok(Build {
            config,
            plan,
            labels: cli.labels.clone(),
            verbose: cli.verbose,
            mode,
            args: args.clone(),
        })
    }

    /// Starts looking up, all at once and in the background, the image of every toolchain the
    /// plan uses (in [`Build::toolchains`] order). On a no-change build these are the only engine
    /// calls: they overlap with reading the workspace.
    fn look_up_images(
        &self,
        engine: &DockerEngine,
    ) -> tokio::task::JoinHandle<Vec<Result<Option<String>>>> {
        let engine = engine.clone();
        let root = self.config.root.clone();
        let images: Vec<String> = self
            .toolchains()
            .into_iter()
            .map(|tc| tc.image.clone())
            .collect();
        tokio::spawn(async move {
            let provider = ImageProvider::new(&engine, &root, false);
            futures_util::future::join_all(images.iter().map(|i| provider.lookup(i))).await
        })
    }

    /// The image ID of every toolchain the plan uses, from what [`Build::look_up_images`] found;
    /// a missing image is pulled or built, unless `lookup_only`.
    async fn images(
        &self,
        engine: &DockerEngine,
        found: Vec<Result<Option<String>>>,
        lookup_only: bool,
    ) -> Result<BTreeMap<String, String>> {
        let provider = ImageProvider::new(engine, &self.config.root, self.verbose);
        let mut images = BTreeMap::new();
        for (tc, id) in self.toolchains().into_iter().zip(found) {
            match id? {
                Some(id) => {
                    images.insert(tc.name.clone(), id);
                }
                None if lookup_only => {}
                None => {
                    let (id, how) = provider.ensure(tc).await?;
                    if how != Provenance::Present {
                        eprintln!("toolchain {}: {} is {id} ({how})", tc.name, tc.image);
                    }
                    images.insert(tc.name.clone(), id);
                }
            }
        }
        Ok(images)
    }

    /// The artifact cache and the stat cache (no cache for `build`), and every task's inputs and
    /// outputs read ahead (but for `--dry-run`, which reads only what it needs).
    async fn cache_mode(&self) -> Result<Option<CacheMode>> {
        if self.mode == Mode::Original {
            return Ok(None);
        }
        let cache = match Cache::open(&self.config.cache_dir()) {
            Ok(c) => c,
            Err(e) if e.is_disk_full() => {
                eprintln!(
                    "warning: the cache folder's disk is full ({e}); building without the cache"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let stat_cache = Arc::new(StatCache::load(
            cache.local().stat_cache_path(),
            self.args.paranoid,
        ));
        let reading_began = std::time::SystemTime::now();
        let snapshot = if self.args.dry_run {
            None
        } else {
            let t = std::time::Instant::now();
            let (config, plan, sc) = (self.config.clone(), self.plan.clone(), stat_cache.clone());
            let s =
                tokio::task::spawn_blocking(move || WorkspaceSnapshot::take(&config, &plan, &sc))
                    .await
                    .map_err(|e| Error::TaskPanicked {
                        task: "(reading the workspace)".into(),
                        message: e.to_string(),
                    })?;
            tracing::debug!(took = ?t.elapsed(), "read the workspace ahead");
            Some(s)
        };
        Ok(Some(CacheMode {
            cache,
            stat_cache,
            explain: self.args.explain,
            recache: self.args.recache,
            snapshot,
            reading_began,
        }))
    }

    /// The cache with the remote tier the settings name, if any. A tier that cannot even be set
    /// up (a malformed bucket URL, say) is told once and left out: the build goes on locally.
    fn with_remote(
        &self,
        cache: Cache,
        reporter: &Reporter,
    ) -> Result<(Cache, Option<Arc<Guarded>>)> {
        let settings = RemoteSettings::resolve(&self.config.remote, &self.args.remote)
            .map_err(Error::RemoteSetting)?;
        let Some(settings) = settings else {
            return Ok((cache, None));
        };
        let r = reporter.clone();
        let warn: crate::remote::Warn = Arc::new(move |text: String| r.warn(&text));
        match crate::remote::open_cache(&settings, warn.clone()) {
            Ok(tier) => Ok((
                cache.with_remote(tier.clone(), settings.upload, warn),
                Some(tier),
            )),
            Err(e) => {
                reporter.warn(&format!("remote cache {e}; building without it"));
                Ok((cache, None))
            }
        }
    }

    /// The toolchains the plan uses, each once.
    fn toolchains(&self) -> Vec<&Toolchain> {
        let mut v: Vec<&Toolchain> = Vec::new();
        for name in &self.plan {
            let tc = &self.config.toolchains[&self.config.tasks[name].toolchain];
            if !v.iter().any(|t| t.name == tc.name) {
                v.push(tc);
            }
        }
        v
    }

    pub(super) async fn run(self) -> Result<()> {
        // Before anything is written in it (runs, staging): the cache folder must be ours.
        LocalStore::claim(&self.config.cache_dir())?;
        crate::scheduler::derive_env_ahead(&self.config);
        match self.args.executor {
            ExecutorKind::Docker | ExecutorKind::Remote => self.run_on_docker().await,
            ExecutorKind::Local => {
                let mut ids = BTreeMap::new();
                for tc in self.toolchains() {
                    ids.insert(tc.name.clone(), LocalExecutor::toolchain_id(tc).await?);
                }
                let executor = LocalExecutor::new(self.config.cache_dir().join("tmp"));
                with_signals(&Cleanup::default(), async {
                    let cache = self.cache_mode().await?;
                    self.drive(Arc::new(executor), ids, cache).await
                })
                .await
            }
        }
    }

    /// The Docker executor (or the remote one, which runs `local_only` tasks on it) and the
    /// toolchain images of this machine's engine: a remote task's platform names the image ID.
    async fn run_on_docker(&self) -> Result<()> {
        let engine = DockerEngine::connect(&run_id(), &self.labels).await?;
        // The one place crashed runs are cleaned up after (see `Reaper` for why there are two
        // records): now by this project's run registry, and before the first container by the
        // labels.
        let registry = RunRegistry::new(self.config.cache_dir().join("runs"));
        let reaper = Reaper::new(&engine, registry);
        let _entry = reaper.reap_before_run().await?;
        let settings = DockerSettings {
            cache_volume: self.config.settings.cache_volume.clone(),
        };
        let docker = DockerExecutor::new(engine.clone(), settings, reaper);
        let mut cleanup = Cleanup {
            engine: Some(engine.clone()),
            remote: None,
        };
        if self.args.executor != ExecutorKind::Remote {
            return self.on_engine(&engine, Arc::new(docker), &cleanup).await;
        }
        let remote = Arc::new(self.remote_executor(docker)?);
        cleanup.remote = Some(remote.clone());
        self.on_engine(&engine, remote, &cleanup).await
    }

    /// The remote executor the settings name, with a note for each task kept local.
    fn remote_executor(&self, docker: DockerExecutor) -> Result<RemoteExecutor> {
        let settings = ExecutorSettings::resolve(&self.config.remote, &self.args.remote)
            .map_err(Error::RemoteSetting)?
            .ok_or_else(|| {
                Error::RemoteSetting(
                    "--executor remote needs a remote executor: `[remote] executor` in \
                     flamenco-build.toml, --remote-executor or FLAMENCO_BUILD_REMOTE_EXECUTOR"
                        .into(),
                )
            })?;
        for t in self
            .plan
            .iter()
            .filter(|t| self.config.tasks[*t].local_only)
        {
            say(&format!(
                "note: task `{t}` is local_only: it runs on this machine's Docker engine"
            ));
        }
        RemoteExecutor::new(&settings, docker, self.config.cache_dir().join("tmp"))
    }

    /// Resolves the images on `engine` and runs the plan on `executor`; whatever the outcome,
    /// `cleanup` then removes what the run left (containers, operations on a remote engine).
    async fn on_engine<E: Executor + Send + Sync + 'static>(
        &self,
        engine: &DockerEngine,
        executor: Arc<E>,
        cleanup: &Cleanup,
    ) -> Result<()> {
        let result = with_signals(cleanup, async {
            let lookups = self.look_up_images(engine);
            let cache = self.cache_mode().await?;
            let found = lookups.await.map_err(|e| Error::DockerUnavailable {
                host: engine.host().to_string(),
                reason: format!("looking up the toolchain images failed: {e}"),
            })?;
            let ids = self.images(engine, found, self.args.dry_run).await?;
            tracing::debug!(images = ids.len(), "resolved the toolchain images");
            self.drive(executor, ids, cache).await
        })
        .await;
        // Containers are removed as each task ends, operations followed to their end; this
        // sweep catches any a failure or a cancellation left behind.
        cleanup.run().await;
        result
    }

    /// Runs the plan on `executor`, with `ids` the identity of each toolchain in task keys.
    async fn drive<E: Executor + Send + Sync + 'static>(
        &self,
        executor: Arc<E>,
        ids: BTreeMap<String, String>,
        cache: Option<CacheMode>,
    ) -> Result<()> {
        let prefix = match self.mode {
            Mode::Original => "Build",
            Mode::Incremental => "Incremental",
            Mode::Optimized => "Parallel",
        };
        let (out, progress): (Box<dyn std::io::Write + Send>, Progress) = if self.args.json {
            (Box::new(std::io::stderr()), Progress::Plain)
        } else {
            (Box::new(std::io::stdout()), self.args.progress)
        };
        let reporter = Reporter::with_writer(prefix, self.verbose, out).with_progress(progress);
        let (cache, remote) = match cache {
            Some(mut mode) => {
                let (c, remote) = self.with_remote(mode.cache, &reporter)?;
                mode.cache = if self.args.recache { c.recache() } else { c };
                (Some(mode), remote)
            }
            None => (None, None),
        };
        if self.args.dry_run {
            let scheduler = Scheduler::new(self.config.clone(), executor, ids, reporter, cache);
            return scheduler.dry_run(&self.plan).await;
        }
        if self.args.explain && self.mode == Mode::Original {
            for t in &self.plan {
                reporter.line(&format!(
                    "explain: {t}: runs: `build` always runs every task and never uses the cache"
                ));
            }
        }
        let jobs = match self.mode {
            Mode::Optimized => self
                .args
                .jobs
                .map_or(self.config.settings.jobs, usize::from),
            _ => 1,
        };
        let origin = std::time::Instant::now() - reporter.elapsed();
        let mut scheduler =
            Scheduler::new(self.config.clone(), executor, ids, reporter.clone(), cache)
                .with_jobs(jobs)
                .with_check_reproducible(self.args.check_reproducible);
        if self.args.trace.is_some() {
            scheduler = scheduler.with_trace(Trace::new(origin));
        }
        let run_mode = match self.mode {
            Mode::Optimized => RunMode::Parallel {
                keep_going: self.args.keep_going,
            },
            _ => RunMode::Sequential,
        };
        let (summary, trace, result) = scheduler.run(&self.plan, run_mode).await;
        let result = self.reproducibility(&summary, &reporter, result);
        if let (Some(path), Some(trace)) = (&self.args.trace, trace)
            && let Err(e) = trace.write(path, jobs)
        {
            reporter.warn(&format!(
                "cannot write the trace to {}: {e}",
                path.display()
            ));
        }
        if self.args.json {
            let mut json = summary.to_json();
            if let Some(r) = &remote {
                json["remote"] = r.stats();
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("summary serialises")
            );
        }
        result
    }
}

impl Build {
    /// `--check-reproducible`'s report after the build; a build that went well but made outputs
    /// that differ fails with [`Error::NotReproducible`].
    fn reproducibility(
        &self,
        summary: &crate::scheduler::BuildSummary,
        reporter: &Reporter,
        result: Result<()>,
    ) -> Result<()> {
        if !self.args.check_reproducible {
            return result;
        }
        let (lines, differ) = summary.reproducibility();
        for line in &lines {
            reporter.line(line);
        }
        match result {
            Ok(()) if differ > 0 => Err(Error::NotReproducible { files: differ }),
            r => r,
        }
    }
}

/// What a run leaves to clean up when it stops: its containers on the local engine, its
/// operations on a remote one.
#[derive(Clone, Default)]
pub(crate) struct Cleanup {
    engine: Option<DockerEngine>,
    remote: Option<Arc<RemoteExecutor>>,
}

impl Cleanup {
    async fn run(&self) {
        if let Some(remote) = &self.remote {
            remote.cancel_all().await;
        }
        if let Some(engine) = &self.engine {
            engine.remove_run_containers().await;
        }
    }
}

/// Runs `fut`; on SIGINT, SIGTERM or SIGHUP drops it (local tasks are killed with it), removes
/// every container of the run, cancels its remote operations and fails with 128 + the signal's
/// number. Blocking work that cannot
/// be dropped (a restore between two files) sees [`interrupt::requested`] and stops; should the
/// build still not have stopped after [`GRACE`], the watcher removes the containers and exits.
pub(crate) async fn with_signals<T>(
    cleanup: &Cleanup,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let mut streams = Vec::new();
    for (signo, name) in interrupt::SIGNALS {
        let s = signal(SignalKind::from_raw(signo)).map_err(|source| Error::Signals {
            signal: name,
            source,
        })?;
        streams.push(s);
    }
    let handled = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_signals(streams, tx, cleanup.clone(), handled.clone()));
    tokio::select! {
        r = fut => {
            watcher.abort();
            return r;
        }
        Ok(_) = rx => {}
    };
    handled.store(true, Ordering::SeqCst);
    let err = interrupt::error().unwrap_or(Error::Interrupted {
        signal: "a signal",
        code: 130,
    });
    if let Error::Interrupted { signal, .. } = &err {
        say(&format!(
            "{signal}: stopping the build and removing its containers"
        ));
    }
    cleanup.run().await;
    watcher.abort();
    Err(err)
}

/// How long the build may take to notice a signal before the watcher stops it the hard way.
const GRACE: Duration = Duration::from_millis(500);

/// Waits for the first stopping signal, records it and tells the build; if the build is still
/// busy after [`GRACE`] (blocking work the signal cannot drop), removes the run's containers and
/// exits, after any placing of outputs under way has finished.
async fn watch_signals(
    mut streams: Vec<tokio::signal::unix::Signal>,
    tx: tokio::sync::oneshot::Sender<i32>,
    cleanup: Cleanup,
    handled: Arc<AtomicBool>,
) {
    let recvs = streams
        .iter_mut()
        .zip(interrupt::SIGNALS)
        .map(|(s, (n, _))| {
            Box::pin(async move {
                s.recv().await;
                n
            })
        });
    let (signo, _, _) = futures_util::future::select_all(recvs).await;
    interrupt::request(signo);
    let _ = tx.send(signo);
    tokio::time::sleep(GRACE).await;
    if handled.load(Ordering::SeqCst) {
        return;
    }
    let Some(Error::Interrupted { signal, code }) = interrupt::error() else {
        return;
    };
    say(&format!(
        "{signal}: stopping the build and removing its containers"
    ));
    cleanup.run().await;
    let _placing = interrupt::workspace_lock();
    say(&format!(
        "error: interrupted by {signal}; removed the run's containers"
    ));
    std::process::exit(code);
}

/// A line on stderr that never panics: after SIGHUP the terminal may be gone.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
