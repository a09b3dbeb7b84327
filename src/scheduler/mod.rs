//! Runs a plan of tasks: the walk ([`walk`]) starts each task once its dependencies are done;
//! the pipeline ([`pipeline`]) does one task's work (key → cache → run → save → place); the
//! summary ([`summary`]) says what happened. The one module that knows config, fingerprint,
//! cache, executor and report.

mod context;
mod dry_run;
mod pipeline;
mod recipe;
mod reproducible;
mod slots;
mod source_date;
mod summary;
mod task_files;
pub(crate) mod walk;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use recipe::derive_env_ahead;
pub use reproducible::ReproCheck;
pub use summary::{BuildSummary, TaskOutcome, TaskState};

use context::Context;
use slots::Slots;
use walk::{Event, Plan, Policy, WalkOptions, Walked};

use crate::cache::Cache;
use crate::config::{Config, Task};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::fingerprint::{StatCache, TaskSnapshot, WorkspaceSnapshot};
use crate::report::{Reporter, Trace};

/// How a build treats the artifact cache.
pub struct CacheMode {
    pub cache: Cache,
    pub stat_cache: Arc<StatCache>,
    /// Print, per task, hit or miss and why.
    pub explain: bool,
    /// `--recache`: every task runs, and its result overwrites what every tier held.
    pub recache: bool,
    /// The tasks' inputs and outputs read ahead, when the build began.
    pub snapshot: Option<WorkspaceSnapshot>,
    /// When the build began reading the workspace: a file changed about then may have been
    /// changed again without its stat showing it (see [`crate::fingerprint::changed_since_read`]).
    pub reading_began: std::time::SystemTime,
}

/// How the walk goes: one task at a time in plan order (`build`, `build-incremental`), or every
/// task as soon as it can (`build-optimized`, with `--keep-going` or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Sequential,
    Parallel { keep_going: bool },
}

/// Runs tasks of one config on one executor.
pub struct Scheduler<E> {
    ctx: Context<E>,
}

impl<E: Executor + Send + Sync + 'static> Scheduler<E> {
    pub fn new(
        config: Arc<Config>,
        executor: Arc<E>,
        images: BTreeMap<String, String>,
        reporter: Reporter,
        cache: Option<CacheMode>,
    ) -> Self {
        Scheduler {
            ctx: Context::new(config, executor, images, reporter, cache),
        }
    }

    /// At most `jobs` containers at once (parallel mode).
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.ctx.jobs = jobs.max(1);
        self.ctx.slots = Slots::new(self.ctx.jobs);
        self
    }

    /// Records a span per task phase.
    /// `--check-reproducible`: each task runs twice (a hit once more) and the runs are compared.
    pub fn with_check_reproducible(mut self, check: bool) -> Self {
        self.ctx.check_reproducible = check;
        self
    }

    pub fn with_trace(mut self, trace: Trace) -> Self {
        self.ctx.trace = Some(Arc::new(trace));
        self
    }

    /// Runs `plan` (in dependency order); returns what happened to each task and the build's
    /// error (the first failure).
    pub async fn run(
        self,
        plan: &[String],
        mode: RunMode,
    ) -> (BuildSummary, Option<Arc<Trace>>, Result<()>) {
        let mut ctx = self.ctx;
        ctx.plan = plan.to_vec();
        let walk_plan = Plan::from_names(plan, |t| ctx.task(t).deps.iter().map(String::as_str))
            .expect("a graph's plan is in dependency order");
        let options = WalkOptions {
            limit: if mode == RunMode::Sequential {
                1
            } else {
                plan.len().max(1)
            },
            policy: match mode {
                RunMode::Parallel { keep_going: true } => Policy::KeepGoing,
                _ => Policy::FailFast,
            },
            cancel: Default::default(),
        };
        let ctx = Arc::new(ctx);
        ctx.reporter.start(plan.len(), ctx.jobs);
        let mut seen_failure = false;
        let walked = walk::walk(&walk_plan, ctx.clone(), &options, |e| {
            ctx.on_event(e, &mut seen_failure)
        })
        .await;
        ctx.finish();
        let (summary, error) = ctx.summarize(walked);
        let result = ctx.close(&summary, error, mode);
        let trace = ctx.trace.clone();
        (summary, trace, result)
    }

    /// What a build would do, without running, restoring or writing anything.
    pub async fn dry_run(self, plan: &[String]) -> Result<()> {
        let mut ctx = self.ctx;
        ctx.plan = plan.to_vec();
        Arc::new(ctx).dry_run().await
    }
}

impl<E> Context<E> {
    /// Tells the reporter of a task that ended, as it ends.
    fn on_event(&self, e: Event<'_, TaskOutcome, Error>, seen_failure: &mut bool) {
        let Event::Ended(id, state) = e else { return };
        let name = &self.plan[id.index()];
        match state {
            walk::TaskState::Done(o) => self.report_done(o),
            walk::TaskState::Failed(err) => {
                let took = self.task_time(name);
                self.reporter
                    .task_failed(self.index(name), self.total(), name, took);
                // The first failure is the build's error (printed at the end); later ones
                // (--keep-going) are shown as they happen.
                if *seen_failure {
                    self.reporter.warn(&err.to_string());
                }
                *seen_failure = true;
            }
            walk::TaskState::Cancelled => self.reporter.task_cancelled(name),
            _ => {}
        }
    }

    /// The walk's result as the build's summary, and the first failure's error.
    fn summarize(&self, walked: Walked<TaskOutcome, Error>) -> (BuildSummary, Option<Error>) {
        let started = self.in_container.lock().expect("lock").clone();
        let mut error = None;
        let tasks = walked
            .tasks
            .into_iter()
            .enumerate()
            .map(|(i, run)| {
                let name = self.plan[i].clone();
                let state = match run.state {
                    walk::TaskState::Done(o) => TaskState::Done(Box::new(Arc::unwrap_or_clone(o))),
                    walk::TaskState::Failed(e) => {
                        let text = e.to_string();
                        let code = match &e {
                            Error::TaskFailed { code, .. } => Some(*code),
                            _ => None,
                        };
                        if walked.first_failure.map(|f| f.index()) == Some(i) {
                            error = Some(e);
                        }
                        TaskState::Failed(text, code)
                    }
                    // A task stopped before it had a container had not really started.
                    walk::TaskState::Cancelled if started.contains(&name) => TaskState::Cancelled,
                    walk::TaskState::Cancelled | walk::TaskState::NotStarted => {
                        TaskState::NotStarted
                    }
                    walk::TaskState::Skipped => TaskState::Skipped,
                };
                (name, state)
            })
            .collect();
        let summary = BuildSummary {
            tasks,
            wall: self.reporter.elapsed(),
            jobs: self.jobs,
        };
        (summary, error)
    }

    /// The closing lines: the seed's totals after a success; what failed and what did not run
    /// after a failure.
    fn close(&self, summary: &BuildSummary, error: Option<Error>, mode: RunMode) -> Result<()> {
        let Some(e) = error else {
            self.reporter
                .finished(summary.task_time(), summary.efficiency());
            return Ok(());
        };
        let line = match mode {
            RunMode::Parallel { .. } => format!(
                "{}: Build failed in {}; {}",
                self.reporter.mode(),
                crate::report::secs(summary.wall),
                summary.failure_parts()
            ),
            RunMode::Sequential => {
                let rest = summary.with_label("not-started");
                if rest.is_empty() {
                    return Err(e);
                }
                format!("{}: not started: {}", self.reporter.mode(), rest.join(", "))
            }
        };
        self.reporter.line(&line);
        Err(e)
    }

    /// After a build, failed or not: remember file hashes, note the cache's hits, trim the cache.
    fn finish(&self) {
        let t = Instant::now();
        if self.workspace.check_root().is_err() {
            return;
        }
        let Some(c) = &self.cache else { return };
        if let Err(e) = c.stat_cache.save() {
            self.reporter
                .warn(&format!("cannot save the stat cache: {e}"));
        }
        // Before trimming, which goes by these uses.
        if let Err(e) = c.cache.flush_uses() {
            self.reporter.warn(&e.to_string());
        }
        let s = &self.config.settings;
        let saved = self.saved.load(std::sync::atomic::Ordering::Relaxed);
        // Only a build that added entries can push the cache over its size; ages are checked
        // at most hourly. A no-change build so skips reading every task's metadata again.
        let local = c.cache.local();
        if saved || local.gc_due(Duration::from_secs(3600)) {
            match local.gc(s.cache_max_size, s.cache_max_age) {
                Ok(r) if r.entries > 0 => self.reporter.line(&format!(
                    "Cache: removed {} entries ({}) over the size or age limit",
                    r.entries,
                    crate::human::size_exact(r.bytes)
                )),
                Ok(_) => {}
                Err(e) => self.reporter.warn(&format!("cache cleanup failed: {e}")),
            }
        }
        tracing::debug!(took = ?t.elapsed(), "saved the stat cache and trimmed the cache");
    }

    /// The task's part of the snapshot taken when the build began, while it still holds: until
    /// this build puts any outputs in the workspace (which could be another task's inputs).
    /// Outputs of different tasks never overlap, so a task's own outputs change only when it
    /// places them itself.
    fn snapshot_of(&self, mode: &CacheMode, task: &Task) -> Option<TaskSnapshot> {
        let snapshot = mode.snapshot.as_ref()?;
        if self.workspace.placed_any() {
            return None;
        }
        snapshot.claim(&task.name)
    }
}
