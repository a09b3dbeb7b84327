//! What every task of one build shares: the configuration, the executor, the resolved images,
//! the cache, the workspace, the reporter and the container slots. Held in an `Arc`, so each
//! task runs as a task of its own on the runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::CacheMode;
use super::slots::Slots;
use super::summary::{CacheResult, TaskOutcome};
use crate::config::{Config, Task};
use crate::fingerprint::TaskKey;
use crate::report::{Reporter, Trace};
use crate::workspace::Workspace;

pub(crate) struct Context<E> {
    pub(crate) config: Arc<Config>,
    pub(crate) executor: Arc<E>,
    /// Toolchain name → resolved image ID.
    pub(crate) images: BTreeMap<String, String>,
    pub(crate) reporter: Reporter,
    pub(crate) cache: Option<CacheMode>,
    pub(crate) workspace: Workspace,
    pub(crate) jobs: usize,
    pub(crate) slots: Slots,
    pub(crate) trace: Option<Arc<Trace>>,
    /// The plan being built, by task id (the walk's positions).
    pub(crate) plan: Vec<String>,
    /// Progress numbers handed out so far, and the number each task got.
    counter: AtomicUsize,
    indices: Mutex<HashMap<String, usize>>,
    /// Tasks whose container was started (a cancelled one was running; others never started).
    pub(crate) in_container: Mutex<BTreeSet<String>>,
    /// Whether this build saved anything to the cache.
    pub(crate) saved: AtomicBool,
    /// `--check-reproducible`: every task of the plan runs once more and is compared.
    pub(crate) check_reproducible: bool,
    /// Each task's start and wait for a slot.
    clocks: Mutex<HashMap<String, TaskClock>>,
}

/// When a task began and how long it waited for a slot: its time is from its start, without
/// the wait (a task queued behind others is not slow).
#[derive(Debug, Clone, Copy)]
struct TaskClock {
    began: Instant,
    wait: Duration,
    wait_at: Duration,
}

impl<E> Context<E> {
    pub(crate) fn new(
        config: Arc<Config>,
        executor: Arc<E>,
        images: BTreeMap<String, String>,
        reporter: Reporter,
        cache: Option<CacheMode>,
    ) -> Self {
        let workspace = Workspace::new(&config);
        Context {
            config,
            executor,
            images,
            reporter,
            cache,
            workspace,
            jobs: 1,
            slots: Slots::new(1),
            trace: None,
            plan: Vec::new(),
            counter: AtomicUsize::new(0),
            indices: Mutex::default(),
            in_container: Mutex::default(),
            saved: AtomicBool::new(false),
            check_reproducible: false,
            clocks: Mutex::default(),
        }
    }

    /// Starts a task's clock.
    pub(crate) fn clock_in(&self, task: &str, began: Instant) {
        let clock = TaskClock {
            began,
            wait: Duration::ZERO,
            wait_at: Duration::ZERO,
        };
        self.clocks
            .lock()
            .expect("clocks")
            .insert(task.to_string(), clock);
    }

    /// Adds a wait for a container slot, which began at `queued`, to the task's clock.
    pub(crate) fn clock_wait(&self, task: &str, queued: Instant) {
        if let Some(c) = self.clocks.lock().expect("clocks").get_mut(task) {
            if c.wait.is_zero() {
                c.wait_at = queued.saturating_duration_since(c.began);
            }
            c.wait += queued.elapsed();
        }
    }

    /// A task's time so far: from its start, without its wait for a slot.
    pub(crate) fn task_time(&self, task: &str) -> Duration {
        match self.clocks.lock().expect("clocks").get(task) {
            Some(c) => c.began.elapsed().saturating_sub(c.wait),
            None => Duration::ZERO,
        }
    }

    /// Sets the outcome's total time and its wait from the task's clock.
    pub(crate) fn clock_out(&self, outcome: &mut TaskOutcome) {
        outcome.total = self.task_time(&outcome.task);
        if let Some(c) = self.clocks.lock().expect("clocks").get(&outcome.task) {
            outcome.wait = c.wait;
            outcome.wait_at = c.wait_at;
        }
    }

    pub(crate) fn task(&self, name: &str) -> &Task {
        &self.config.tasks[name]
    }

    /// The task's progress number, handed out the first time it is asked for.
    pub(crate) fn index(&self, task: &str) -> usize {
        *self
            .indices
            .lock()
            .expect("indices")
            .entry(task.to_string())
            .or_insert_with(|| self.counter.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub(crate) fn total(&self) -> usize {
        self.plan.len()
    }

    pub(crate) fn span(&self, name: String, cat: &str, row: usize, start: Instant, dur: Duration) {
        if let Some(t) = &self.trace {
            t.span(&name, cat, row, start, dur, json!({}));
        }
    }

    /// When the build began (the reporter's clock).
    pub(crate) fn origin(&self) -> Instant {
        Instant::now() - self.reporter.elapsed()
    }

    /// Reports a finished task in the seed's form.
    pub(crate) fn report_done(&self, o: &TaskOutcome) {
        let total = self.total();
        match o.result {
            CacheResult::UpToDate | CacheResult::Restored => self.reporter.task_cached(
                o.index,
                total,
                &o.task,
                o.result == CacheResult::Restored,
                o.total,
            ),
            CacheResult::Built | CacheResult::Ran => self.reporter.task_completed(
                o.index,
                total,
                &o.task,
                o.total,
                o.run.worker.as_deref(),
            ),
        }
    }

    /// `--explain`: a line per task saying what the cache answered.
    pub(crate) fn explain(&self, task: &Task, what: &str, key: &TaskKey) {
        if self.cache.as_ref().is_some_and(|c| c.explain) {
            let (epoch, origin) = super::recipe::epoch_origin(&self.config, task);
            self.reporter.line(&format!(
                "explain: {}: {what} (key {}; SOURCE_DATE_EPOCH {epoch}: {origin})",
                task.name,
                key.short()
            ));
        }
    }
}
