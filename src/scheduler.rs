//! Runs a plan of tasks: for each, its key → up to date / restore / run → save, and the outputs
//! put in place. The one module that knows config, fingerprint, cache, executor and report.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::json;

use crate::cache::{Corrupt, Entry, LocalCache};
use crate::config::{Config, Task};
use crate::error::{Error, Result};
use crate::executor::{Executor, TaskJob, Timings, tarball};
use crate::fingerprint::{
    FileDigest, InputFile, InputFiles, KEY_FORMAT, KeyRecipe, Manifest, Skipped, StatCache,
    TaskKey, TaskSnapshot, WorkspaceSnapshot, changed_since_read, env_value_hash, manifest_hash,
};
use crate::interrupt;
use crate::report::{CACHE_ROW, Reporter, Trace};

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheResult {
    /// Key hit, and the workspace already held the recorded outputs.
    UpToDate,
    /// Key hit; the outputs came from the artifact cache.
    Restored,
    /// Key miss: run in its container, then saved.
    Built,
    /// Run without the cache (`build`).
    Ran,
}

/// One finished task.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub task: String,
    /// Its number in the progress lines (`[3/6]`).
    pub index: usize,
    /// When it began, after the build began.
    pub began: Duration,
    pub result: CacheResult,
    pub key: Option<TaskKey>,
    /// The task's outputs as they now are in the workspace (cached modes only).
    pub outputs: Manifest,
    pub key_time: Duration,
    pub run: Timings,
    pub restore_time: Duration,
    pub save_time: Duration,
    /// Its time from its start to its end, but for its wait for a container slot.
    pub total: Duration,
    /// How long it waited for a container slot, and when (after it began) that wait began.
    pub wait: Duration,
    pub wait_at: Duration,
}

impl TaskOutcome {
    /// When it worked, after the build began: from its start to its end, but for its wait.
    fn spans(&self) -> Vec<(Duration, Duration)> {
        let end = self.began + self.wait + self.total;
        if self.wait.is_zero() {
            return vec![(self.began, end)];
        }
        let waited = self.began + self.wait_at;
        vec![(self.began, waited), (waited + self.wait, end)]
    }
}

/// When a task began and how long it waited for a slot: its time is from its start, without
/// the wait (a task queued behind others is not slow).
#[derive(Debug, Clone, Copy)]
struct TaskClock {
    began: Instant,
    wait: Duration,
    wait_at: Duration,
}

/// How a build treats the artifact cache.
pub struct CacheMode {
    pub cache: LocalCache,
    pub stat_cache: StatCache,
    /// Print, per task, hit or miss and why.
    pub explain: bool,
    /// The tasks' inputs and outputs read ahead, when the build began.
    pub snapshot: Option<WorkspaceSnapshot>,
    /// When the build began reading the workspace: a file changed about then may have been
    /// changed again without its stat showing it (see [`changed_since_read`]).
    pub reading_began: std::time::SystemTime,
}

/// How a task of a build ended.
#[derive(Debug, Clone)]
pub enum TaskState {
    Done(Box<TaskOutcome>),
    Failed(String),
    /// Stopped while running because another task failed.
    Cancelled,
    /// Not started: a dependency failed (`--keep-going`).
    Skipped,
    /// Not started: the build stopped first.
    NotStarted,
}

impl TaskState {
    pub fn label(&self) -> &'static str {
        match self {
            TaskState::Done(o) => match o.result {
                CacheResult::UpToDate => "up-to-date",
                CacheResult::Restored => "restored",
                CacheResult::Built => "built",
                CacheResult::Ran => "ran",
            },
            TaskState::Failed(_) => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Skipped => "skipped",
            TaskState::NotStarted => "not-started",
        }
    }
}

/// What a build did, per task in plan order.
#[derive(Debug, Default)]
pub struct BuildSummary {
    pub tasks: Vec<(String, TaskState)>,
    pub wall: Duration,
    pub jobs: usize,
}

impl BuildSummary {
    /// The parallel efficiency in percent: the finished tasks' time over `wall × jobs`, at most
    /// `jobs` tasks counted at once (see [`crate::report::efficiency`]).
    pub fn efficiency(&self) -> f64 {
        let spans: Vec<(Duration, Duration)> = self
            .tasks
            .iter()
            .filter_map(|(_, s)| match s {
                TaskState::Done(o) => Some(o.spans()),
                _ => None,
            })
            .flatten()
            .collect();
        crate::report::efficiency(&spans, self.wall, self.jobs)
    }

    /// The time of all finished tasks added up.
    pub fn task_time(&self) -> Duration {
        self.tasks
            .iter()
            .filter_map(|(_, s)| match s {
                TaskState::Done(o) => Some(o.total),
                _ => None,
            })
            .sum()
    }

    /// The `--json` document: per task its status, key, cache result and phase times.
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let tasks: Vec<serde_json::Value> = self
            .tasks
            .iter()
            .map(|(name, state)| {
                let mut v = json!({ "task": name, "status": state.label() });
                match state {
                    TaskState::Done(o) => {
                        v["key"] = json!(o.key.as_ref().map(|k| k.0.clone()));
                        v["cache"] = json!(match o.result {
                            CacheResult::UpToDate | CacheResult::Restored => "hit",
                            CacheResult::Built => "miss",
                            CacheResult::Ran => "not-used",
                        });
                        v["times_ms"] = json!({
                            "key": ms(o.key_time),
                            "create": ms(o.run.create),
                            "upload": ms(o.run.upload),
                            "run": ms(o.run.run),
                            "download": ms(o.run.download),
                            "remove": ms(o.run.remove),
                            "restore": ms(o.restore_time),
                            "save": ms(o.save_time),
                            "total": ms(o.total),
                            "wait": ms(o.wait),
                        });
                        v["started_ms"] = json!(ms(o.began));
                    }
                    TaskState::Failed(e) => v["error"] = json!(e),
                    _ => {}
                }
                v
            })
            .collect();
        let ok = self
            .tasks
            .iter()
            .all(|(_, s)| matches!(s, TaskState::Done(_)));
        json!({
            "status": if ok { "ok" } else { "failed" },
            "wall_ms": ms(self.wall),
            "jobs": self.jobs,
            "tasks": tasks,
        })
    }
}

/// The container slots of a build: a task holds one only while its container exists.
struct Slots {
    permits: tokio::sync::Semaphore,
    free: Mutex<Vec<usize>>,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            permits: tokio::sync::Semaphore::new(n),
            free: Mutex::new((1..=n).rev().collect()),
        }
    }

    async fn acquire(&self) -> (tokio::sync::SemaphorePermit<'_>, SlotId<'_>) {
        let permit = self.permits.acquire().await.expect("never closed");
        let id = self
            .free
            .lock()
            .expect("slots")
            .pop()
            .expect("a permit means a free slot");
        (permit, SlotId { slots: self, id })
    }
}

/// A slot's number (the trace's row), given back on drop.
struct SlotId<'a> {
    slots: &'a Slots,
    id: usize,
}

impl Drop for SlotId<'_> {
    fn drop(&mut self) {
        self.slots.free.lock().expect("slots").push(self.id);
    }
}

/// Runs tasks of one config on one executor.
pub struct Scheduler<'a, E: Executor> {
    config: &'a Config,
    executor: &'a E,
    /// Toolchain name → resolved image ID.
    images: BTreeMap<String, String>,
    user: (u32, u32),
    reporter: Reporter,
    cache: Option<CacheMode>,
    jobs: usize,
    slots: Slots,
    trace: Option<Trace>,
    /// Progress numbers handed out so far, and the number each task got.
    counter: AtomicUsize,
    total: AtomicUsize,
    indices: Mutex<HashMap<String, usize>>,
    /// Tasks whose container was started (a cancelled one was running; others never started).
    in_container: Mutex<BTreeSet<String>>,
    /// Whether this build saved anything to the cache.
    saved: std::sync::atomic::AtomicBool,
    /// The cache folder's disk ran full: stage next to the workspace, do not save.
    disk_full: std::sync::atomic::AtomicBool,
    /// How many tasks' outputs this build has put in the workspace.
    placed: AtomicUsize,
    /// The project folder's (device, inode) when the build began.
    root_id: Option<(u64, u64)>,
    /// Each task's start and wait for a slot.
    clocks: Mutex<HashMap<String, TaskClock>>,
}

impl<'a, E: Executor> Scheduler<'a, E> {
    pub fn new(
        config: &'a Config,
        executor: &'a E,
        images: BTreeMap<String, String>,
        reporter: Reporter,
        cache: Option<CacheMode>,
    ) -> Self {
        let user = match &config.settings.user {
            Some(u) => {
                let (a, b) = u.split_once(':').expect("validated uid:gid");
                (a.parse().expect("validated"), b.parse().expect("validated"))
            }
            None => (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
        };
        Scheduler {
            config,
            executor,
            images,
            user,
            reporter,
            cache,
            jobs: 1,
            slots: Slots::new(1),
            trace: None,
            counter: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            indices: Mutex::default(),
            in_container: Mutex::default(),
            saved: Default::default(),
            disk_full: Default::default(),
            placed: AtomicUsize::new(0),
            root_id: folder_id(&config.root),
            clocks: Mutex::default(),
        }
    }

    /// At most `jobs` containers at once (parallel mode).
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self.slots = Slots::new(self.jobs);
        self
    }

    /// Records a span per task phase.
    pub fn with_trace(mut self, trace: Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    pub fn trace(&self) -> Option<&Trace> {
        self.trace.as_ref()
    }

    /// The task's progress number, handed out the first time it is asked for.
    fn index(&self, task: &str) -> usize {
        *self
            .indices
            .lock()
            .expect("indices")
            .entry(task.to_string())
            .or_insert_with(|| self.counter.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn span(&self, name: String, cat: &str, row: usize, start: Instant, dur: Duration) {
        if let Some(t) = &self.trace {
            t.span(&name, cat, row, start, dur, json!({}));
        }
    }

    /// Reports a finished task in the seed's form.
    fn report_done(&self, o: &TaskOutcome) {
        let total = self.total.load(Ordering::Relaxed);
        match o.result {
            CacheResult::UpToDate | CacheResult::Restored => self.reporter.task_cached(
                o.index,
                total,
                &o.task,
                o.result == CacheResult::Restored,
                o.total,
            ),
            CacheResult::Built | CacheResult::Ran => self
                .reporter
                .task_completed(o.index, total, &o.task, o.total),
        }
    }

    /// `build-optimized`: every task starts the moment its dependencies are done and a slot is
    /// free (cache hits and restores need no slot). On the first failure nothing new starts and
    /// running tasks are cancelled; with `keep_going`, everything not depending on a failure runs.
    pub async fn run_parallel(
        &self,
        plan: &[String],
        keep_going: bool,
    ) -> (BuildSummary, Result<()>) {
        let total = plan.len();
        self.total.store(total, Ordering::Relaxed);
        self.reporter.start(total, self.jobs);
        let in_plan: BTreeSet<&str> = plan.iter().map(String::as_str).collect();
        let mut waiting: HashMap<&str, usize> = plan
            .iter()
            .map(|t| {
                let n = self.config.tasks[t]
                    .deps
                    .iter()
                    .filter(|d| in_plan.contains(d.as_str()))
                    .count();
                (t.as_str(), n)
            })
            .collect();
        let mut ready: VecDeque<&str> = plan
            .iter()
            .map(String::as_str)
            .filter(|t| waiting[t] == 0)
            .collect();
        let mut states: HashMap<String, TaskState> = HashMap::new();
        let mut outputs: BTreeMap<String, Manifest> = BTreeMap::new();
        let mut running = FuturesUnordered::new();
        let mut in_flight: BTreeSet<String> = BTreeSet::new();
        let mut first_error: Option<Error> = None;
        loop {
            if first_error.is_none() || keep_going {
                while let Some(name) = ready.pop_front() {
                    let task = &self.config.tasks[name];
                    let deps: BTreeMap<String, Manifest> = task
                        .deps
                        .iter()
                        .filter_map(|d| outputs.get(d).map(|m| (d.clone(), m.clone())))
                        .collect();
                    in_flight.insert(name.to_string());
                    running.push(async move {
                        let r = self.build_task(task, &deps).await;
                        (name, r)
                    });
                }
            }
            let Some((name, result)) = running.next().await else {
                break;
            };
            in_flight.remove(name);
            match result {
                Ok(outcome) => {
                    self.report_done(&outcome);
                    outputs.insert(name.to_string(), outcome.outputs.clone());
                    states.insert(name.to_string(), TaskState::Done(Box::new(outcome)));
                    for dep in plan
                        .iter()
                        .filter(|t| self.config.tasks[*t].deps.iter().any(|d| d == name))
                    {
                        let n = waiting.get_mut(dep.as_str()).expect("in plan");
                        *n -= 1;
                        if *n == 0 {
                            ready.push_back(dep);
                        }
                    }
                }
                Err(e) => {
                    let took = self.task_time(name);
                    self.reporter
                        .task_failed(self.index(name), total, name, took);
                    // The first failure is the build's error (printed at the end); later ones
                    // (--keep-going) are shown as they happen.
                    if first_error.is_some() {
                        self.reporter.warn(&e.to_string());
                    }
                    states.insert(name.to_string(), TaskState::Failed(e.to_string()));
                    first_error.get_or_insert(e);
                    if !keep_going {
                        break;
                    }
                    // Everything downstream of the failure is skipped.
                    let mut stack = vec![name.to_string()];
                    while let Some(f) = stack.pop() {
                        for t in plan
                            .iter()
                            .filter(|t| self.config.tasks[*t].deps.contains(&f))
                        {
                            if !states.contains_key(t) {
                                states.insert(t.clone(), TaskState::Skipped);
                                stack.push(t.clone());
                            }
                        }
                    }
                    ready.retain(|t| !states.contains_key(*t));
                }
            }
        }
        // Fail-fast: dropping the futures stops their tasks; the caller removes the containers.
        drop(running);
        let started = self.in_container.lock().expect("lock").clone();
        for t in &in_flight {
            self.reporter.task_cancelled(t);
            if started.contains(t) {
                states.insert(t.clone(), TaskState::Cancelled);
            }
        }
        self.finish();
        let summary = BuildSummary {
            tasks: plan
                .iter()
                .map(|t| (t.clone(), states.remove(t).unwrap_or(TaskState::NotStarted)))
                .collect(),
            wall: self.reporter.elapsed(),
            jobs: self.jobs,
        };
        let task_time = summary.task_time();
        match first_error {
            None => {
                self.reporter.finished(task_time, summary.efficiency());
                (summary, Ok(()))
            }
            Some(e) => {
                let list = |label: &str| -> Vec<&str> {
                    summary
                        .tasks
                        .iter()
                        .filter(|(_, s)| s.label() == label)
                        .map(|(t, _)| t.as_str())
                        .collect()
                };
                let mut parts = vec![format!("failed: {}", list("failed").join(", "))];
                for (label, what) in [
                    ("cancelled", "cancelled"),
                    ("skipped", "skipped (a dependency failed)"),
                    ("not-started", "not started"),
                ] {
                    let l = list(label);
                    if !l.is_empty() {
                        parts.push(format!("{what}: {}", l.join(", ")));
                    }
                }
                self.reporter.line(&format!(
                    "{}: Build failed in {}; {}",
                    self.reporter.mode(),
                    crate::report::secs(summary.wall),
                    parts.join("; ")
                ));
                (summary, Err(e))
            }
        }
    }

    /// Every task of the plan, one at a time in dependency order: `build` (no cache) and
    /// `build-incremental`. Stops at the first failure.
    pub async fn run_sequential(&self, plan: &[String]) -> (BuildSummary, Result<()>) {
        let total = plan.len();
        self.total.store(total, Ordering::Relaxed);
        self.reporter.start(total, 1);
        let mut outputs: BTreeMap<String, Manifest> = BTreeMap::new();
        let mut states: Vec<(String, TaskState)> = Vec::new();
        let mut error = None;
        for name in plan {
            if error.is_some() {
                states.push((name.clone(), TaskState::NotStarted));
                continue;
            }
            let task = &self.config.tasks[name];
            match self.build_task(task, &outputs).await {
                Ok(outcome) => {
                    self.report_done(&outcome);
                    outputs.insert(name.clone(), outcome.outputs.clone());
                    states.push((name.clone(), TaskState::Done(Box::new(outcome))));
                }
                Err(e) => {
                    self.reporter
                        .task_failed(self.index(name), total, name, self.task_time(name));
                    states.push((name.clone(), TaskState::Failed(e.to_string())));
                    error = Some(e);
                }
            }
        }
        self.finish();
        let summary = BuildSummary {
            tasks: states,
            wall: self.reporter.elapsed(),
            jobs: 1,
        };
        match error {
            None => {
                self.reporter
                    .finished(summary.task_time(), summary.efficiency());
                (summary, Ok(()))
            }
            Some(e) => {
                let rest: Vec<&str> = summary
                    .tasks
                    .iter()
                    .filter(|(_, s)| matches!(s, TaskState::NotStarted))
                    .map(|(t, _)| t.as_str())
                    .collect();
                if !rest.is_empty() {
                    self.reporter.line(&format!(
                        "{}: not started: {}",
                        self.reporter.mode(),
                        rest.join(", ")
                    ));
                }
                (summary, Err(e))
            }
        }
    }

    /// What a build would do, without running, restoring or writing anything.
    pub fn dry_run(&self, plan: &[String]) -> Result<()> {
        let mut outputs: BTreeMap<String, Manifest> = BTreeMap::new();
        let mut runs: Vec<&str> = Vec::new();
        for name in plan {
            let task = &self.config.tasks[name];
            let after = task.deps.iter().find(|d| runs.contains(&d.as_str()));
            let verdict = if !self.images.contains_key(&task.toolchain) {
                format!(
                    "would run (toolchain image {} is not present and would be made first)",
                    self.config.toolchains[&task.toolchain].image
                )
            } else if let Some(dep) = after {
                format!("would run after {dep} (the key depends on what {dep} produces)")
            } else if let Some(mode) = &self.cache {
                let inputs = self.task_inputs(task)?;
                let digests = mode
                    .stat_cache
                    .digest_all(&inputs)
                    .map_err(Error::io("cannot hash the inputs of", task.name.as_str()))?;
                let recipe = self.recipe(task, &inputs, digests, &outputs);
                let key = recipe.key();
                let meta = mode.cache.load(name);
                match meta.as_ref().and_then(|m| m.entries.get(&key)) {
                    Some(entry) => {
                        outputs.insert(name.clone(), entry.outputs.clone());
                        if self.workspace_outputs(task, &mode.stat_cache)? == entry.outputs {
                            "up to date".to_string()
                        } else {
                            "would restore from the cache".to_string()
                        }
                    }
                    None => {
                        let last = meta
                            .as_ref()
                            .and_then(|m| m.last_key())
                            .and_then(|k| mode.cache.recipe(name, k));
                        let why = match last.as_ref() {
                            Some(old) => recipe.explain_against(old).join("; "),
                            None => "never built with this cache".into(),
                        };
                        format!("would run: {why}")
                    }
                }
            } else {
                "would run (`build` always runs)".to_string()
            };
            if verdict.starts_with("would run") {
                runs.push(name);
            }
            self.reporter.line(&format!("dry-run: {name}: {verdict}"));
        }
        self.reporter.line(&format!(
            "dry-run: {} of {} tasks would run; nothing was changed",
            runs.len(),
            plan.len()
        ));
        Ok(())
    }

    /// After a build, failed or not: remember file hashes, trim the cache.
    fn finish(&self) {
        let t = Instant::now();
        let _done = DropLog(t);
        if self.check_root().is_err() {
            return;
        }
        if let Some(c) = &self.cache {
            if let Err(e) = c.stat_cache.save() {
                self.reporter
                    .warn(&format!("cannot save the stat cache: {e}"));
            }
            let s = &self.config.settings;
            // Only a build that added entries can push the cache over its size; ages are checked
            // at most hourly. A no-change build so skips reading every task's metadata again.
            if !self.saved.load(Ordering::Relaxed) && !c.cache.gc_due(Duration::from_secs(3600)) {
                return;
            }
            match c.cache.gc(s.cache_max_size, s.cache_max_age) {
                Ok(r) if r.entries > 0 => self.reporter.line(&format!(
                    "Cache: removed {} entries ({}) over the size or age limit",
                    r.entries,
                    crate::cache::human_size(r.bytes)
                )),
                Ok(_) => {}
                Err(e) => self.reporter.warn(&format!("cache cleanup failed: {e}")),
            }
        }
    }

    /// One task: with the cache, up to date / restore / run and save; without, just run.
    pub async fn build_task(
        &self,
        task: &Task,
        dep_outputs: &BTreeMap<String, Manifest>,
    ) -> Result<TaskOutcome> {
        let started = Instant::now();
        let began = started.saturating_duration_since(self.reporter_origin());
        self.clocks.lock().expect("clocks").insert(
            task.name.clone(),
            TaskClock {
                began: started,
                wait: Duration::ZERO,
                wait_at: Duration::ZERO,
            },
        );
        let mut outcome = TaskOutcome {
            task: task.name.clone(),
            index: 0,
            began,
            result: CacheResult::Ran,
            key: None,
            outputs: Manifest::new(),
            key_time: Duration::ZERO,
            run: Timings::default(),
            restore_time: Duration::ZERO,
            save_time: Duration::ZERO,
            total: Duration::ZERO,
            wait: Duration::ZERO,
            wait_at: Duration::ZERO,
        };
        let Some(mode) = &self.cache else {
            let files = self.task_files(task)?;
            let ran = self.run_staged(task, files).await;
            self.check_root()?;
            let (run, staging) = ran?;
            outcome.run = run;
            self.place(staging.path(), task)?;
            outcome.index = self.index(&task.name);
            self.clock_out(&mut outcome);
            return Ok(outcome);
        };

        let (inputs, digests, here) = match self.snapshot_of(mode, task) {
            Some(s) => {
                self.warn_unmatched(task, &s.unmatched);
                self.warn_skipped(task, &s.skipped);
                (s.inputs, s.digests, Some(s.outputs))
            }
            None => {
                let inputs = self.task_inputs(task)?;
                let digests =
                    tokio::task::block_in_place(|| mode.stat_cache.digest_all(&inputs))
                        .map_err(Error::io("cannot hash the inputs of", task.name.as_str()))?;
                (inputs, digests, None)
            }
        };
        let recipe = self.recipe(task, &inputs, digests, dep_outputs);
        let key = recipe.key();
        outcome.key_time = started.elapsed();
        outcome.key = Some(key.clone());
        self.span(
            format!("{}: key", task.name),
            "phase",
            CACHE_ROW,
            started,
            outcome.key_time,
        );
        tracing::debug!(task = %task.name, took = ?outcome.key_time, files = inputs.len(), "computed the key");

        let meta = mode.cache.load(&task.name);
        if let Some((meta, entry)) = meta
            .as_ref()
            .and_then(|m| m.entries.get(&key).map(|e| (m, e)))
        {
            let here = match here {
                Some(h) => h,
                None => self.workspace_outputs(task, &mode.stat_cache)?,
            };
            if here == entry.outputs {
                self.explain(mode, task, "hit, outputs up to date", &key);
                mode.cache.record_hit(&task.name, meta, &key, false);
                outcome.result = CacheResult::UpToDate;
                outcome.outputs = here;
                return Ok(self.finish_outcome(outcome, started, CACHE_ROW));
            }
            let t = Instant::now();
            let (restored, staging) = self.restore_staged(mode, task, entry).await?;
            match restored {
                Ok(()) => {
                    self.place(staging.path(), task)?;
                    self.explain(mode, task, "hit, restored from the cache", &key);
                    mode.cache.record_hit(&task.name, meta, &key, true);
                    outcome.result = CacheResult::Restored;
                    outcome.outputs = entry.outputs.clone();
                    outcome.restore_time = t.elapsed();
                    self.span(
                        format!("{}: restore", task.name),
                        "phase",
                        CACHE_ROW,
                        t,
                        outcome.restore_time,
                    );
                    return Ok(self.finish_outcome(outcome, started, CACHE_ROW));
                }
                Err(c) => {
                    self.reporter.warn(&format!(
                        "corrupt cache entry for {} (key {}): {}; evicted, running the task",
                        c.task,
                        c.key.short(),
                        c.reason
                    ));
                    mode.cache.evict(&task.name, &key);
                }
            }
        } else if mode.explain {
            let last = meta
                .as_ref()
                .and_then(|m| m.last_key())
                .and_then(|k| mode.cache.recipe(&task.name, k));
            let why = match last.as_ref() {
                Some(old) => {
                    let reasons = recipe.explain_against(old);
                    if reasons.is_empty() {
                        "no entry for this key".to_string()
                    } else {
                        reasons.join("; ")
                    }
                }
                None => "never built with this cache".to_string(),
            };
            self.explain(mode, task, &format!("miss: {why}"), &key);
        }

        let files = self.with_dep_outputs(task, inputs)?;
        let given = files.clone();
        let ran = self.run_staged(task, files).await;
        self.check_root()?;
        let (run, staging) = ran?;
        outcome.run = run;
        let changed = self.given_files_changed(mode, task, &given, &recipe, dep_outputs);
        let staged = InputFiles::output_tree(staging.path(), &task.outputs)?;
        let manifest =
            tokio::task::block_in_place(|| to_manifest(&staged, &StatCache::in_memory()))?;
        let t = Instant::now();
        if !self.disk_full.load(Ordering::Relaxed) && !changed {
            self.saved.store(true, Ordering::Relaxed);
            if let Err(e) = mode.cache.save(
                &task.name,
                &recipe,
                staging.path(),
                &manifest,
                outcome.run.total(),
            ) {
                self.reporter.warn(&format!("not cached: {e}"));
            }
        }
        outcome.save_time = t.elapsed();
        self.span(
            format!("{}: save", task.name),
            "phase",
            CACHE_ROW,
            t,
            outcome.save_time,
        );
        self.place(staging.path(), task)?;
        outcome.result = CacheResult::Built;
        outcome.outputs = manifest;
        outcome.index = self.index(&task.name);
        self.clock_out(&mut outcome);
        Ok(outcome)
    }

    /// Whether a file the task was given may not be what its key was computed from (it changed
    /// while the build ran): then what the task saw is not what the key says, and its result
    /// must not be cached under that key. Warns, naming the files.
    fn given_files_changed(
        &self,
        mode: &CacheMode,
        task: &Task,
        given: &[InputFile],
        recipe: &KeyRecipe,
        dep_outputs: &BTreeMap<String, Manifest>,
    ) -> bool {
        let mut expected = recipe.inputs.clone();
        for dep in &task.deps {
            expected.extend(dep_outputs.get(dep).cloned().unwrap_or_default());
        }
        let since = mode
            .reading_began
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let changed = tokio::task::block_in_place(|| changed_since_read(given, &expected, since));
        if changed.is_empty() {
            return false;
        }
        let mut names = changed[..changed.len().min(5)].join(", ");
        if changed.len() > 5 {
            names.push_str(&format!(" and {} more", changed.len() - 5));
        }
        self.reporter.warn(&format!(
            "task `{}`: {names} changed while the build ran; not cached",
            task.name
        ));
        true
    }

    fn reporter_origin(&self) -> Instant {
        Instant::now() - self.reporter.elapsed()
    }

    /// A cache answer: its number, its time, its span on the cache row.
    fn finish_outcome(
        &self,
        mut outcome: TaskOutcome,
        started: Instant,
        row: usize,
    ) -> TaskOutcome {
        outcome.index = self.index(&outcome.task);
        self.clock_out(&mut outcome);
        self.span(outcome.task.clone(), "task", row, started, outcome.total);
        outcome
    }

    /// A task's time so far: from its start, without its wait for a slot.
    fn task_time(&self, task: &str) -> Duration {
        match self.clocks.lock().expect("clocks").get(task) {
            Some(c) => c.began.elapsed().saturating_sub(c.wait),
            None => Duration::ZERO,
        }
    }

    /// Sets the outcome's total time and its wait from the task's clock.
    fn clock_out(&self, outcome: &mut TaskOutcome) {
        outcome.total = self.task_time(&outcome.task);
        if let Some(c) = self.clocks.lock().expect("clocks").get(&outcome.task) {
            outcome.wait = c.wait;
            outcome.wait_at = c.wait_at;
        }
    }

    /// Runs the task's container in a slot: the only part of a task that holds one.
    async fn run_in_slot(
        &self,
        task: &Task,
        files: Vec<InputFile>,
        staging: &Path,
    ) -> Result<Timings> {
        let queued = Instant::now();
        let (_permit, slot) = self.slots.acquire().await;
        if let Some(c) = self.clocks.lock().expect("clocks").get_mut(&task.name) {
            if c.wait.is_zero() {
                c.wait_at = queued.saturating_duration_since(c.began);
            }
            c.wait += queued.elapsed();
        }
        self.in_container
            .lock()
            .expect("lock")
            .insert(task.name.clone());
        let total = self.total.load(Ordering::Relaxed);
        self.reporter
            .task_started(self.index(&task.name), total, &task.name);
        let start = Instant::now();
        let result = self.run_task(task, files, staging).await;
        let took = start.elapsed();
        if let Ok(t) = &result {
            let mut at = start;
            for (phase, d) in [
                ("create", t.create),
                ("upload", t.upload),
                ("run", t.run),
                ("download", t.download),
                ("remove", t.remove),
            ] {
                self.span(format!("{}: {phase}", task.name), "phase", slot.id, at, d);
                at += d;
            }
        }
        self.span(task.name.clone(), "task", slot.id, start, took);
        result
    }

    fn explain(&self, mode: &CacheMode, task: &Task, what: &str, key: &TaskKey) {
        if mode.explain {
            self.reporter.line(&format!(
                "explain: {}: {what} (key {})",
                task.name,
                key.short()
            ));
        }
    }

    /// The key recipe of a task from its input digests and its dependencies' output manifests.
    fn recipe(
        &self,
        task: &Task,
        inputs: &[InputFile],
        digests: Vec<FileDigest>,
        dep_outputs: &BTreeMap<String, Manifest>,
    ) -> KeyRecipe {
        let tc = &self.config.toolchains[&task.toolchain];
        KeyRecipe {
            format: KEY_FORMAT,
            task: task.name.clone(),
            run: task.run.clone(),
            workdir: task.workdir.clone(),
            outputs: task.outputs.iter().map(|o| o.path.clone()).collect(),
            network: task.network,
            toolchain: self.images[&task.toolchain].clone(),
            toolchain_env: tc.env.clone(),
            env: self
                .declared_env(task)
                .into_iter()
                .map(|(k, v)| {
                    let h = v.map(|v| env_value_hash(&k, &v));
                    (k, h)
                })
                .collect(),
            inputs: inputs.iter().map(|f| f.rel.clone()).zip(digests).collect(),
            deps: task
                .deps
                .iter()
                .map(|d| {
                    (
                        d.clone(),
                        dep_outputs.get(d).map(manifest_hash).unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    /// The outputs of a task as they are in the workspace now.
    fn workspace_outputs(&self, task: &Task, stat_cache: &StatCache) -> Result<Manifest> {
        let files = InputFiles::output_tree(&self.config.root, &task.outputs)?;
        to_manifest(&files, stat_cache)
    }

    /// Runs the task with its outputs staged in the cache folder; when that folder's disk is
    /// full, runs it again staged next to the workspace, and stays there for the rest of the build.
    async fn run_staged(
        &self,
        task: &Task,
        files: Vec<InputFile>,
    ) -> Result<(Timings, tempfile::TempDir)> {
        let staging = self.staging(task)?;
        match self.run_in_slot(task, files.clone(), staging.path()).await {
            Err(e) if e.is_disk_full() && !self.disk_full.swap(true, Ordering::Relaxed) => {
                self.reporter.warn(&format!(
                    "the cache folder's disk is full ({e}); building without caching, staging outputs in the project folder"
                ));
                drop(staging);
                let staging = self.staging(task)?;
                Ok((
                    self.run_in_slot(task, files, staging.path()).await?,
                    staging,
                ))
            }
            r => Ok((r?, staging)),
        }
    }

    fn staging(&self, task: &Task) -> Result<tempfile::TempDir> {
        self.check_root()?;
        if self.disk_full.load(Ordering::Relaxed) {
            return tempfile::Builder::new()
                .prefix(&format!(".flamenco-build-staging-{}-", task.name))
                .tempdir_in(&self.config.root)
                .map_err(Error::io(
                    "cannot create the staging folder",
                    &self.config.root,
                ));
        }
        let parent = self.config.cache_dir().join("tmp");
        std::fs::create_dir_all(&parent)
            .map_err(Error::io("cannot create the staging folder", &parent))?;
        tempfile::Builder::new()
            .prefix(&format!("{}-", task.name))
            .tempdir_in(&parent)
            .map_err(Error::io("cannot create the staging folder", &parent))
    }

    /// Fails when the project folder is not the one the build began in (deleted or replaced):
    /// writing on would create its paths anew.
    fn check_root(&self) -> Result<()> {
        let now = folder_id(&self.config.root);
        if now.is_some() && now == self.root_id {
            return Ok(());
        }
        Err(Error::Io {
            context: "the project folder was deleted or replaced during the build; nothing more \
                      is written to it",
            path: self.config.root.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// Restores `entry` into a new staging folder on a blocking thread, so that a signal can
    /// drop the build meanwhile (the restore itself stops at its next file, and its staging
    /// folder goes with it).
    async fn restore_staged(
        &self,
        mode: &CacheMode,
        task: &Task,
        entry: &Entry,
    ) -> Result<(std::result::Result<(), Corrupt>, tempfile::TempDir)> {
        let staging = self.staging(task)?;
        let (cache, name, entry) = (mode.cache.clone(), task.name.clone(), entry.clone());
        let (restored, staging) = tokio::task::spawn_blocking(move || {
            (cache.restore(&name, &entry, staging.path()), staging)
        })
        .await
        .expect("the restore panicked");
        // An interrupted restore is not a corrupt entry.
        interrupt::check()?;
        Ok((restored, staging))
    }

    /// Puts staged outputs in place, under the cache lock so that two builds of one project
    /// never interleave their renames.
    fn place(&self, staging: &Path, task: &Task) -> Result<()> {
        let _lock = match &self.cache {
            Some(c) => Some(c.cache.lock()?),
            None => None,
        };
        // Nothing is placed once the build was told to stop, and a forced stop waits for a
        // placing under way: outputs are never left half placed.
        let _placing = interrupt::workspace_lock();
        interrupt::check()?;
        self.check_root()?;
        // Counted before the first rename: from here on the snapshot may be out of date.
        self.placed.fetch_add(1, Ordering::SeqCst);
        tarball::place_outputs(staging, &self.config.root, &task.outputs)
    }

    /// The task's part of the snapshot taken when the build began, while it still holds: until
    /// this build puts any outputs in the workspace (which could be another task's inputs).
    /// Outputs of different tasks never overlap, so a task's own outputs change only when it
    /// places them itself.
    fn snapshot_of(&self, mode: &CacheMode, task: &Task) -> Option<TaskSnapshot> {
        let snapshot = mode.snapshot.as_ref()?;
        if self.placed.load(Ordering::SeqCst) > 0 {
            return None;
        }
        snapshot.claim(&task.name)
    }

    /// The task's declared input files (without what its dependencies' outputs cover).
    pub fn task_inputs(&self, task: &Task) -> Result<Vec<InputFile>> {
        let found = InputFiles::of_task(self.config, task)?;
        self.warn_unmatched(task, &found.unmatched);
        self.warn_skipped(task, &found.skipped);
        Ok(found.files)
    }

    /// A warning for each path the task's globs cover that is never an input.
    fn warn_skipped(&self, task: &Task, skipped: &[Skipped]) {
        for s in skipped {
            self.reporter.warn(&format!(
                "task `{}`: skipped `{}` ({})",
                task.name, s.rel, s.why
            ));
        }
    }

    /// A warning for each include pattern of the task that matched no file.
    fn warn_unmatched(&self, task: &Task, unmatched: &[usize]) {
        for i in unmatched {
            let span = task.input_spans.get(*i).cloned().flatten();
            let d = self
                .config
                .source
                .diagnostic(
                    span,
                    format!(
                        "task `{}`: input `{}` matches no file",
                        task.name, task.inputs.patterns[*i]
                    ),
                )
                .as_warning();
            eprintln!("{d}");
        }
    }

    /// Everything a task receives: its inputs plus its direct dependencies' outputs (which win
    /// over any input at the same place). Only gathered when the task runs.
    fn with_dep_outputs(&self, task: &Task, inputs: Vec<InputFile>) -> Result<Vec<InputFile>> {
        let root = &self.config.root;
        let mut files = inputs;
        for dep in &task.deps {
            files.extend(InputFiles::output_tree(
                root,
                &self.config.tasks[dep].outputs,
            )?);
        }
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        Ok(files)
    }

    /// Everything a task receives.
    pub fn task_files(&self, task: &Task) -> Result<Vec<InputFile>> {
        let inputs = self.task_inputs(task)?;
        self.with_dep_outputs(task, inputs)
    }

    /// The declared host variables and their values (None: unset).
    fn declared_env(&self, task: &Task) -> Vec<(String, Option<String>)> {
        task.env
            .iter()
            .map(|var| {
                let v = std::env::var(var)
                    .ok()
                    .or_else(|| derived_env(var, &self.config.root));
                (var.clone(), v)
            })
            .collect()
    }

    /// The environment of a task: its toolchain's, then the host variables it declares.
    pub fn task_env(&self, task: &Task) -> Vec<(String, String)> {
        let tc = &self.config.toolchains[&task.toolchain];
        let mut env: Vec<(String, String)> =
            tc.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.extend(
            self.declared_env(task)
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v))),
        );
        env
    }

    async fn run_task(
        &self,
        task: &Task,
        files: Vec<InputFile>,
        staging: &Path,
    ) -> Result<Timings> {
        let reporter = self.reporter.clone();
        let name = task.name.clone();
        let job = TaskJob {
            task,
            image_id: self.images[&task.toolchain].clone(),
            env: self.task_env(task),
            files,
            user: self.user,
            cache_volume: self.config.settings.cache_volume.clone(),
            log: Arc::new(move |line: &str| reporter.log(&name, line)),
        };
        self.executor.run(&job, staging).await
    }
}

/// A folder's (device, inode): what tells it from another one made at the same path.
fn folder_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn to_manifest(files: &[InputFile], stat_cache: &StatCache) -> Result<Manifest> {
    stat_cache
        .manifest(files)
        .map_err(Error::io("cannot hash outputs", "<outputs>"))
}

/// The value flamenco-build gives a derived variable: GITHASH is `git rev-parse --short HEAD`
/// (asked once per process).
fn derived_env(var: &str, root: &Path) -> Option<String> {
    static GITHASH: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match var {
        "GITHASH" => GITHASH.get_or_init(|| git_hash(root)).clone(),
        _ => None,
    }
}

/// Starts working out, in the background, the derived variables that `plan`'s tasks declare and
/// the host does not set, so that their first key need not wait for `git`.
pub fn derive_env_ahead(config: &Config, plan: &[String]) {
    let wanted = plan
        .iter()
        .filter_map(|t| config.tasks.get(t))
        .any(|t| t.env.iter().any(|v| v == "GITHASH"));
    if wanted && std::env::var_os("GITHASH").is_none() {
        let root = config.root.clone();
        std::thread::spawn(move || derived_env("GITHASH", &root));
    }
}

fn git_hash(root: &Path) -> Option<String> {
    {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["rev-parse", "--short", "HEAD"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

/// Logs how long the end-of-build bookkeeping took.
struct DropLog(Instant);

impl Drop for DropLog {
    fn drop(&mut self) {
        tracing::debug!(took = ?self.0.elapsed(), "saved the stat cache and trimmed the cache");
    }
}
