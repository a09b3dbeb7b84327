//! The dependency walk: starts each task of a plan once all its dependencies are done, at most
//! `limit` at a time, and applies the failure policy. It knows nothing of what a task does (keys,
//! cache, containers): a [`RunTask`] does that. So one walk serves `build`, `build-incremental`
//! (one slot, plan order) and `build-optimized`, and it is tested with fakes, without Docker.

// Wired into the scheduler later; until then only the tests use it.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A task's position in the plan. The plan is in dependency order, so every dependency of a
/// task has a smaller id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TaskId(pub(crate) usize);

impl TaskId {
    pub(crate) fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A plan the walk cannot follow.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    /// A dependency at or after its task: not a dependency order (or a cycle).
    #[error("task {task} depends on {dep}, which does not come before it in the plan")]
    OutOfOrder { task: TaskId, dep: TaskId },
}

/// The plan as the walk sees it: each task's dependencies within the plan, and the reverse index
/// built once, so a finished task finds its dependents without rescanning the plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    deps: Vec<Vec<TaskId>>,
    dependents: Vec<Vec<TaskId>>,
}

impl Plan {
    /// `deps[i]`: the dependencies of task `i`, each an earlier task of the plan.
    pub(crate) fn new(mut deps: Vec<Vec<TaskId>>) -> Result<Plan, PlanError> {
        let mut dependents = vec![Vec::new(); deps.len()];
        for (i, ds) in deps.iter_mut().enumerate() {
            // Sorted and once each: a dependency counts once, and outputs arrive in plan order.
            ds.sort_unstable();
            ds.dedup();
            for &dep in ds.iter() {
                if dep.0 >= i {
                    let task = TaskId(i);
                    return Err(PlanError::OutOfOrder { task, dep });
                }
                dependents[dep.0].push(TaskId(i));
            }
        }
        Ok(Plan { deps, dependents })
    }

    /// The plan of named tasks in dependency order; dependencies outside the plan are left out
    /// (they are not part of this build).
    pub(crate) fn from_names<S, I>(
        names: &[S],
        mut deps_of: impl FnMut(&str) -> I,
    ) -> Result<Plan, PlanError>
    where
        S: AsRef<str>,
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let ids: HashMap<&str, TaskId> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_ref(), TaskId(i)))
            .collect();
        let deps = names
            .iter()
            .map(|n| {
                deps_of(n.as_ref())
                    .into_iter()
                    .filter_map(|d| ids.get(d.as_ref()).copied())
                    .collect()
            })
            .collect();
        Plan::new(deps)
    }

    pub(crate) fn len(&self) -> usize {
        self.deps.len()
    }

    pub(crate) fn deps(&self, id: TaskId) -> &[TaskId] {
        &self.deps[id.0]
    }
}

/// What the rest of the plan does after a task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Cancel the running tasks, start nothing new.
    FailFast,
    /// Skip only what depends on the failure (`--keep-going`).
    KeepGoing,
}

/// How to walk.
#[derive(Debug, Clone)]
pub(crate) struct WalkOptions {
    /// The most tasks in flight at once (0 counts as 1). `build` and `build-incremental` pass 1;
    /// the parallel mode passes a large number, as its container slots live in the per-task work
    /// (a cache hit takes none).
    pub(crate) limit: usize,
    pub(crate) policy: Policy,
    /// Fired on Ctrl-C: every running task is aborted and nothing new starts.
    pub(crate) cancel: CancellationToken,
}

/// What runs one task. The walk spawns each run on the runtime, so a task that is slow to poll
/// never holds up the others.
pub(crate) trait RunTask: Send + Sync + 'static {
    /// What a done task hands its dependents (shared: several may depend on it).
    type Output: Send + Sync + 'static;
    type Error: Send + 'static;

    /// Runs task `id`, given the outputs of its direct dependencies (all done), in plan order.
    fn run(
        self: Arc<Self>,
        id: TaskId,
        deps: Vec<(TaskId, Arc<Self::Output>)>,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send + 'static;

    /// The error of a task that panicked: a failure like any other, never a panic of the walk.
    fn panicked(&self, id: TaskId, message: String) -> Self::Error;
}

/// How a task of the walk ended; exactly one per task.
#[derive(Debug)]
pub(crate) enum TaskState<O, E> {
    Done(Arc<O>),
    Failed(E),
    /// Running when the walk stopped (another task failed, or the build was cancelled).
    Cancelled,
    /// Never started: a dependency failed (`--keep-going`).
    Skipped,
    /// Never started: the walk stopped first.
    NotStarted,
}

/// One task of a finished walk.
#[derive(Debug)]
pub(crate) struct TaskRun<O, E> {
    pub(crate) state: TaskState<O, E>,
    /// When it started and ended, after the walk began (None: it never started). The summary
    /// times a task from its start, not from when it became ready.
    pub(crate) started: Option<Duration>,
    pub(crate) ended: Option<Duration>,
}

/// What a walk did.
#[derive(Debug)]
pub(crate) struct Walked<O, E> {
    /// Per task, in plan order.
    pub(crate) tasks: Vec<TaskRun<O, E>>,
    /// The first task to fail, in time: its error is the build's error.
    pub(crate) first_failure: Option<TaskId>,
    /// The cancel token fired.
    pub(crate) interrupted: bool,
}

/// Told to the caller as it happens, so progress is numbered in the order tasks really start.
#[derive(Debug)]
pub(crate) enum Event<'a, O, E> {
    Started(TaskId),
    /// A started task ended: done, failed or cancelled.
    Ended(TaskId, &'a TaskState<O, E>),
}

/// What a spawned task hands back: which task, its result, when it ended.
type Finished<R> = (
    TaskId,
    Result<<R as RunTask>::Output, <R as RunTask>::Error>,
    Instant,
);
type Joined<R> = Result<(tokio::task::Id, Finished<R>), JoinError>;

/// Walks `plan`, running each task with `runner`; `on_event` hears of each start and end.
/// Returns once no task it started is still running. Dropping the walk unfinished aborts its
/// tasks too (they live in its `JoinSet`).
pub(crate) async fn walk<R: RunTask>(
    plan: &Plan,
    runner: Arc<R>,
    options: &WalkOptions,
    mut on_event: impl FnMut(Event<'_, R::Output, R::Error>),
) -> Walked<R::Output, R::Error> {
    let mut walk = Walk::new(plan, runner, options);
    loop {
        walk.start_ready(&mut on_event);
        let Some(joined) = walk.next().await else {
            break;
        };
        walk.settle(joined, &mut on_event);
    }
    walk.stop(&mut on_event).await;
    walk.into_result()
}

/// The state of one walk.
struct Walk<'p, R: RunTask> {
    plan: &'p Plan,
    options: &'p WalkOptions,
    runner: Arc<R>,
    origin: Instant,
    /// Per task, how many of its dependencies are not done yet.
    waiting: Vec<usize>,
    /// Tasks whose dependencies are all done, lowest plan position first (so one slot walks the
    /// plan in order).
    ready: BTreeSet<TaskId>,
    running: JoinSet<Finished<R>>,
    /// Which task each runtime task runs: a panicked or aborted one reports only its runtime id.
    ids: HashMap<tokio::task::Id, TaskId>,
    tasks: Vec<TaskRun<R::Output, R::Error>>,
    first_failure: Option<TaskId>,
    /// Nothing new starts: a task failed (fail-fast) or the build was cancelled.
    stopping: bool,
    interrupted: bool,
}

impl<'p, R: RunTask> Walk<'p, R> {
    fn new(plan: &'p Plan, runner: Arc<R>, options: &'p WalkOptions) -> Self {
        let waiting: Vec<usize> = plan.deps.iter().map(Vec::len).collect();
        let ready = (0..plan.len())
            .filter(|&i| waiting[i] == 0)
            .map(TaskId)
            .collect();
        let tasks = (0..plan.len())
            .map(|_| TaskRun {
                state: TaskState::NotStarted,
                started: None,
                ended: None,
            })
            .collect();
        Walk {
            plan,
            options,
            runner,
            origin: Instant::now(),
            waiting,
            ready,
            running: JoinSet::new(),
            ids: HashMap::new(),
            tasks,
            first_failure: None,
            stopping: false,
            interrupted: false,
        }
    }

    /// Starts ready tasks while there is room and the walk is not stopping.
    fn start_ready(&mut self, on_event: &mut impl FnMut(Event<'_, R::Output, R::Error>)) {
        if self.options.cancel.is_cancelled() {
            self.interrupted = true;
            self.stopping = true;
        }
        while !self.stopping && self.running.len() < self.options.limit.max(1) {
            let Some(id) = self.ready.pop_first() else {
                break;
            };
            self.start(id, on_event);
        }
    }

    fn start(&mut self, id: TaskId, on_event: &mut impl FnMut(Event<'_, R::Output, R::Error>)) {
        let deps: Vec<(TaskId, Arc<R::Output>)> = self.plan.deps[id.0]
            .iter()
            .filter_map(|&d| match &self.tasks[d.0].state {
                TaskState::Done(out) => Some((d, Arc::clone(out))),
                _ => None,
            })
            .collect();
        self.tasks[id.0].started = Some(self.origin.elapsed());
        on_event(Event::Started(id));
        let runner = Arc::clone(&self.runner);
        // `run` is called inside the spawned task, so even a panic before its first await is the
        // task's own.
        let handle = self.running.spawn(async move {
            let result = runner.run(id, deps).await;
            (id, result, Instant::now())
        });
        self.ids.insert(handle.id(), id);
    }

    /// The next task to end; None when nothing runs, or the walk is to stop (failure, cancel).
    async fn next(&mut self) -> Option<Joined<R>> {
        if self.stopping || self.running.is_empty() {
            return None;
        }
        let cancel = &self.options.cancel;
        let joined = tokio::select! {
            // A cancel wins over tasks that ended at the same moment.
            biased;
            () = cancel.cancelled() => None,
            joined = self.running.join_next_with_id() => joined,
        };
        if joined.is_none() {
            self.interrupted = true;
            self.stopping = true;
        }
        joined
    }

    /// Records how a started task ended, and what that means for the rest of the plan.
    fn settle(
        &mut self,
        joined: Joined<R>,
        on_event: &mut impl FnMut(Event<'_, R::Output, R::Error>),
    ) {
        let (id, state, ended) = match joined {
            Ok((runtime_id, (id, result, ended))) => {
                self.ids.remove(&runtime_id);
                (id, self.judge(id, result), ended)
            }
            Err(e) => {
                let Some(id) = self.ids.remove(&e.id()) else {
                    return; // Not ours: the walk spawns every task of its set.
                };
                (id, self.judge_join_error(id, e), Instant::now())
            }
        };
        let run = &mut self.tasks[id.0];
        run.state = state;
        run.ended = Some(ended.saturating_duration_since(self.origin));
        on_event(Event::Ended(id, &run.state));
    }

    fn judge(
        &mut self,
        id: TaskId,
        result: Result<R::Output, R::Error>,
    ) -> TaskState<R::Output, R::Error> {
        match result {
            Ok(out) => {
                self.release_dependents(id);
                TaskState::Done(Arc::new(out))
            }
            Err(e) => {
                self.failed(id);
                TaskState::Failed(e)
            }
        }
    }

    fn judge_join_error(&mut self, id: TaskId, e: JoinError) -> TaskState<R::Output, R::Error> {
        match e.try_into_panic() {
            Ok(payload) => {
                self.failed(id);
                TaskState::Failed(self.runner.panicked(id, panic_message(payload)))
            }
            Err(_) => TaskState::Cancelled,
        }
    }

    /// A dependency is done: dependents with none left waiting become ready.
    fn release_dependents(&mut self, id: TaskId) {
        for &t in &self.plan.dependents[id.0] {
            self.waiting[t.0] -= 1;
            if self.waiting[t.0] == 0 {
                self.ready.insert(t);
            }
        }
    }

    fn failed(&mut self, id: TaskId) {
        self.first_failure.get_or_insert(id);
        match self.options.policy {
            Policy::FailFast => self.stopping = true,
            Policy::KeepGoing => self.skip_dependents(id),
        }
    }

    /// Marks everything downstream of a failure skipped. None of it can have started (it waits
    /// for the failed task), and each task is marked once: O(V+E) over the whole walk.
    fn skip_dependents(&mut self, failed: TaskId) {
        let mut stack = vec![failed];
        while let Some(t) = stack.pop() {
            for &d in &self.plan.dependents[t.0] {
                let run = &mut self.tasks[d.0];
                if run.started.is_none() && matches!(run.state, TaskState::NotStarted) {
                    run.state = TaskState::Skipped;
                    stack.push(d);
                }
            }
        }
    }

    /// Aborts what still runs and waits until each has ended, so that when the walk returns
    /// none of its tasks touches anything any more.
    async fn stop(&mut self, on_event: &mut impl FnMut(Event<'_, R::Output, R::Error>)) {
        self.running.abort_all();
        while let Some(joined) = self.running.join_next_with_id().await {
            self.settle(joined, on_event);
        }
    }

    fn into_result(self) -> Walked<R::Output, R::Error> {
        Walked {
            tasks: self.tasks,
            first_failure: self.first_failure,
            interrupted: self.interrupted,
        }
    }
}

/// The text a panic was raised with.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "panicked".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use proptest::prelude::*;
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    /// How a fake task ends, once the test lets it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum End {
        Ok,
        Fail,
        Panic,
    }

    #[derive(Debug, PartialEq, Eq)]
    struct FakeError(String);

    /// How many fake tasks are in flight now, and the most at once.
    #[derive(Default)]
    struct Flight {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    /// Counts a fake task in flight for as long as its future lives (so an aborted one too).
    struct InFlight(Arc<Flight>);

    impl InFlight {
        fn enter(flight: &Arc<Flight>) -> InFlight {
            let now = flight.now.fetch_add(1, SeqCst) + 1;
            flight.max.fetch_max(now, SeqCst);
            InFlight(Arc::clone(flight))
        }
    }

    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.now.fetch_sub(1, SeqCst);
        }
    }

    type Given = Vec<(usize, Vec<(usize, usize)>)>;

    /// A task that tells the test it started, then waits for the test to say how it ends
    /// (forever, if the test never does). A done task's output is its id times ten.
    struct Fake {
        gates: Mutex<Vec<Option<oneshot::Receiver<End>>>>,
        started: mpsc::UnboundedSender<TaskId>,
        flight: Arc<Flight>,
        /// Per started task, the dependency outputs it was given.
        given: Arc<Mutex<Given>>,
    }

    impl RunTask for Fake {
        type Output = usize;
        type Error = FakeError;

        async fn run(
            self: Arc<Self>,
            id: TaskId,
            deps: Vec<(TaskId, Arc<usize>)>,
        ) -> Result<usize, FakeError> {
            let _in_flight = InFlight::enter(&self.flight);
            let got = deps.iter().map(|(d, out)| (d.index(), **out)).collect();
            self.given.lock().unwrap().push((id.index(), got));
            let gate = self.gates.lock().unwrap()[id.index()].take();
            let _ = self.started.send(id);
            match gate.expect("a task runs once").await {
                Ok(End::Ok) => Ok(id.index() * 10),
                Ok(End::Fail) => Err(FakeError(format!("{id} failed"))),
                Ok(End::Panic) => panic!("boom in {id}"),
                Err(_) => std::future::pending().await,
            }
        }

        fn panicked(&self, id: TaskId, message: String) -> FakeError {
            FakeError(format!("{id} panicked: {message}"))
        }
    }

    /// A walk event as the tests record it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ev {
        Started(usize),
        Ended(usize, &'static str),
    }

    fn label<O, E>(state: &TaskState<O, E>) -> &'static str {
        match state {
            TaskState::Done(_) => "done",
            TaskState::Failed(_) => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Skipped => "skipped",
            TaskState::NotStarted => "not-started",
        }
    }

    fn plan_of(deps: &[Vec<usize>]) -> Plan {
        Plan::new(
            deps.iter()
                .map(|ds| ds.iter().map(|&d| TaskId(d)).collect())
                .collect(),
        )
        .expect("a plan in dependency order")
    }

    /// A walk running on the runtime, and the test's handles on its fake tasks.
    struct Run {
        deps: Vec<Vec<usize>>,
        options: WalkOptions,
        walk: tokio::task::JoinHandle<(Walked<usize, FakeError>, Vec<Ev>)>,
        started: mpsc::UnboundedReceiver<TaskId>,
        seen: BTreeSet<usize>,
        ends: Vec<Option<oneshot::Sender<End>>>,
        flight: Arc<Flight>,
        given: Arc<Mutex<Given>>,
    }

    fn spawn_walk(deps: &[Vec<usize>], limit: usize, policy: Policy) -> Run {
        let plan = plan_of(deps);
        let (ends, gates): (Vec<_>, Vec<_>) = deps
            .iter()
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            })
            .unzip();
        let (tx, started) = mpsc::unbounded_channel();
        let (flight, given) = (Arc::<Flight>::default(), Arc::<Mutex<Given>>::default());
        let fake = Arc::new(Fake {
            gates: Mutex::new(gates),
            started: tx,
            flight: Arc::clone(&flight),
            given: Arc::clone(&given),
        });
        let cancel = CancellationToken::new();
        let options = WalkOptions {
            limit,
            policy,
            cancel,
        };
        let walk = tokio::spawn(walk_recording(plan, fake, options.clone()));
        let deps = deps.to_vec();
        let seen = BTreeSet::new();
        Run {
            deps,
            options,
            walk,
            started,
            seen,
            ends,
            flight,
            given,
        }
    }

    async fn walk_recording(
        plan: Plan,
        fake: Arc<Fake>,
        options: WalkOptions,
    ) -> (Walked<usize, FakeError>, Vec<Ev>) {
        let mut events = Vec::new();
        let walked = walk(&plan, fake, &options, |e| {
            events.push(match e {
                Event::Started(id) => Ev::Started(id.index()),
                Event::Ended(id, state) => Ev::Ended(id.index(), label(state)),
            })
        })
        .await;
        (walked, events)
    }

    /// What a finished walk did, as the fakes saw it too.
    struct Report {
        deps: Vec<Vec<usize>>,
        options: WalkOptions,
        walked: Walked<usize, FakeError>,
        events: Vec<Ev>,
        max_in_flight: usize,
        in_flight_after: usize,
        given: Given,
    }

    impl Report {
        fn states(&self) -> Vec<&'static str> {
            self.walked.tasks.iter().map(|t| label(&t.state)).collect()
        }

        fn starts(&self) -> Vec<usize> {
            let started = self.events.iter().filter_map(|e| match e {
                Ev::Started(i) => Some(*i),
                Ev::Ended(..) => None,
            });
            started.collect()
        }

        fn error(&self, i: usize) -> &str {
            match &self.walked.tasks[i].state {
                TaskState::Failed(FakeError(e)) => e,
                other => panic!("task {i} is {}, not failed", label(other)),
            }
        }
    }

    impl Run {
        /// Waits until task `id` has started; fails the test if the walk ends first.
        async fn until_started(&mut self, id: usize) {
            while !self.seen.contains(&id) {
                let Some(got) = self.started.recv().await else {
                    panic!("task #{id} never started");
                };
                self.seen.insert(got.index());
            }
        }

        async fn end(&mut self, id: usize, how: End) {
            self.until_started(id).await;
            let gate = self.ends[id].take().expect("each task is ended once");
            let _ = gate.send(how);
        }

        async fn cancel_once_started(&mut self, id: usize) {
            self.until_started(id).await;
            self.options.cancel.cancel();
        }

        /// Ends started tasks (`how`; None leaves one hanging), picking among those waiting
        /// with `picks`, and cancels after `cancel_after` ends; then waits for the walk.
        async fn end_all(
            mut self,
            how: impl Fn(usize) -> Option<End>,
            picks: &[usize],
            cancel_after: Option<usize>,
        ) -> Report {
            let (mut waiting, mut ended) = (Vec::new(), 0);
            loop {
                while let Ok(id) = self.started.try_recv() {
                    waiting.push(id.index());
                }
                if waiting.is_empty() {
                    match self.started.recv().await {
                        Some(id) => waiting.push(id.index()),
                        None => break,
                    }
                    continue;
                }
                let pick = picks.get(ended % picks.len().max(1)).copied().unwrap_or(0);
                let id = waiting.remove(pick % waiting.len());
                if let Some(end) = how(id) {
                    let _ = self.ends[id].take().expect("ended once").send(end);
                }
                ended += 1;
                if cancel_after == Some(ended) {
                    self.options.cancel.cancel();
                }
                tokio::task::yield_now().await;
            }
            self.finish().await
        }

        async fn finish(self) -> Report {
            let (walked, events) = self.walk.await.expect("the walk never panics");
            let given = std::mem::take(&mut *self.given.lock().unwrap());
            let report = Report {
                deps: self.deps,
                options: self.options,
                walked,
                events,
                max_in_flight: self.flight.max.load(SeqCst),
                in_flight_after: self.flight.now.load(SeqCst),
                given,
            };
            assert_consistent(&report);
            report
        }
    }

    /// What holds after every walk: each task in exactly one state, agreeing with the events,
    /// its dependencies, the limit and the policy.
    fn assert_consistent(r: &Report) {
        let limit = r.options.limit.max(1);
        assert_eq!(r.walked.tasks.len(), r.deps.len());
        assert_eq!(
            r.in_flight_after, 0,
            "a task still ran after the walk returned"
        );
        assert!(r.max_in_flight <= limit, "{} in flight", r.max_in_flight);
        assert!(max_in_flight(&r.events) <= limit, "events: {:?}", r.events);
        for i in 0..r.deps.len() {
            assert_task_consistent(r, i);
        }
        assert_failures_consistent(r);
    }

    /// The most tasks between their start and end at once, as the walk reported them.
    fn max_in_flight(events: &[Ev]) -> usize {
        let (mut now, mut max) = (0, 0);
        for e in events {
            match e {
                Ev::Started(_) => {
                    now += 1;
                    max = max.max(now);
                }
                Ev::Ended(..) => now -= 1,
            }
        }
        max
    }

    fn ended_at(events: &[Ev], i: usize) -> Option<usize> {
        events
            .iter()
            .position(|e| matches!(e, Ev::Ended(j, _) if *j == i))
    }

    fn assert_task_consistent(r: &Report, i: usize) {
        let run = &r.walked.tasks[i];
        let state = label(&run.state);
        let ran = matches!(state, "done" | "failed" | "cancelled");
        assert_eq!(run.started.is_some(), ran, "task {i} is {state}");
        assert_eq!(run.ended.is_some(), ran, "task {i} is {state}");
        let starts: Vec<usize> = (0..r.events.len())
            .filter(|&p| r.events[p] == Ev::Started(i))
            .collect();
        let ends: Vec<&Ev> = r
            .events
            .iter()
            .filter(|e| matches!(e, Ev::Ended(j, _) if *j == i))
            .collect();
        let Some(&start) = starts.first() else {
            assert!(!ran && ends.is_empty(), "task {i}: {:?}", r.events);
            return;
        };
        assert_eq!((starts.len(), ends), (1, vec![&Ev::Ended(i, state)]));
        assert!(ended_at(&r.events, i) > Some(start));
        for &d in &r.deps[i] {
            let dep = &r.walked.tasks[d];
            assert_eq!(
                label(&dep.state),
                "done",
                "task {i} started before {d} was done"
            );
            assert!(
                dep.ended <= run.started,
                "task {i} started before {d} ended"
            );
            assert!(ended_at(&r.events, d) < Some(start), "{:?}", r.events);
        }
        if let Some((_, got)) = r.given.iter().find(|(t, _)| *t == i) {
            let mut want: Vec<(usize, usize)> = r.deps[i].iter().map(|&d| (d, d * 10)).collect();
            want.sort();
            assert_eq!(got, &want, "the dependency outputs task {i} was given");
        }
    }

    fn assert_failures_consistent(r: &Report) {
        let w = &r.walked;
        let fail_fast = r.options.policy == Policy::FailFast;
        let stopped_early = w.interrupted || (fail_fast && w.first_failure.is_some());
        let first_failed_event = r
            .events
            .iter()
            .position(|e| matches!(e, Ev::Ended(_, "failed")));
        match (w.first_failure, first_failed_event) {
            (Some(f), Some(p)) => assert_eq!(r.events[p], Ev::Ended(f.index(), "failed")),
            (None, None) => {}
            other => panic!("first failure and events disagree: {other:?}"),
        }
        for (i, t) in w.tasks.iter().enumerate() {
            match label(&t.state) {
                "skipped" => {
                    assert!(!fail_fast, "task {i} skipped under fail-fast");
                    let dep_broke = r.deps[i]
                        .iter()
                        .any(|&d| matches!(label(&w.tasks[d].state), "failed" | "skipped"));
                    assert!(dep_broke, "task {i} skipped, yet no dependency failed");
                }
                "cancelled" | "not-started" => {
                    assert!(stopped_early, "task {i} is {}", label(&t.state));
                }
                _ => {}
            }
        }
        if let (true, Some(p)) = (fail_fast, first_failed_event) {
            let late = r.events[p..].iter().any(|e| matches!(e, Ev::Started(_)));
            assert!(!late, "a task started after the failure: {:?}", r.events);
        }
    }

    fn deps(list: &[&[usize]]) -> Vec<Vec<usize>> {
        list.iter().map(|d| d.to_vec()).collect()
    }

    const MANY: usize = usize::MAX;

    #[tokio::test]
    async fn a_task_starts_only_once_all_its_dependencies_are_done() {
        // A diamond with a tail: 3 needs 1 and 2, which both need 0.
        let mut run = spawn_walk(
            &deps(&[&[], &[0], &[0], &[1, 2], &[3]]),
            MANY,
            Policy::FailFast,
        );
        run.end(0, End::Ok).await;
        run.end(2, End::Ok).await;
        run.end(1, End::Ok).await;
        run.end(3, End::Ok).await;
        run.end(4, End::Ok).await;
        let r = run.finish().await;
        assert_eq!(r.states(), ["done"; 5]);
        assert_eq!(r.starts(), [0, 1, 2, 3, 4]);
        let ended_2 = ended_at(&r.events, 2).unwrap();
        let started_3 = r.events.iter().position(|e| *e == Ev::Started(3)).unwrap();
        assert!(ended_at(&r.events, 1).unwrap() < started_3 && ended_2 < started_3);
        let given_3 = r.given.iter().find(|(t, _)| *t == 3).unwrap();
        assert_eq!(given_3.1, [(1, 10), (2, 20)]);
        assert_eq!(r.walked.first_failure, None);
        assert!(!r.walked.interrupted);
    }

    #[tokio::test]
    async fn never_more_than_the_limit_in_flight() {
        for limit in [1, 2, 3] {
            let run = spawn_walk(&vec![vec![]; 8], limit, Policy::FailFast);
            let r = run.end_all(|_| Some(End::Ok), &[2, 0, 1], None).await;
            assert_eq!(r.states(), ["done"; 8]);
            // Reached, and never passed (assert_consistent checks the latter).
            assert_eq!(max_in_flight(&r.events), limit);
        }
    }

    #[tokio::test]
    async fn one_slot_starts_tasks_in_plan_order() {
        // 2 is ready before 1, yet 1 comes first in the plan.
        let plan = deps(&[&[], &[0], &[], &[1], &[], &[2, 3]]);
        let run = spawn_walk(&plan, 1, Policy::FailFast);
        let r = run.end_all(|_| Some(End::Ok), &[], None).await;
        assert_eq!(r.starts(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(r.max_in_flight, 1);
    }

    #[tokio::test]
    async fn fail_fast_cancels_what_runs_and_starts_nothing_new() {
        // Two slots: 0 and 1 run, 2 waits for a slot, 3 waits for 0.
        let mut run = spawn_walk(&deps(&[&[], &[], &[], &[0]]), 2, Policy::FailFast);
        run.until_started(1).await;
        run.end(0, End::Fail).await;
        let r = run.finish().await;
        assert_eq!(
            r.states(),
            ["failed", "cancelled", "not-started", "not-started"]
        );
        assert_eq!(r.starts(), [0, 1]);
        assert_eq!(r.error(0), "#0 failed");
        assert_eq!(r.walked.first_failure, Some(TaskId(0)));
        assert!(!r.walked.interrupted);
    }

    #[tokio::test]
    async fn keep_going_skips_only_what_depends_on_a_failure() {
        // 1 and 2 (through 1) and 5 (through 0, though 3 is done) depend on the failed 0; 6 fails
        // too; 3 and 4 depend on nothing that fails.
        let plan = deps(&[&[], &[0], &[1], &[], &[3], &[0, 3], &[]]);
        let mut run = spawn_walk(&plan, MANY, Policy::KeepGoing);
        run.end(6, End::Fail).await;
        run.end(0, End::Fail).await;
        run.end(3, End::Ok).await;
        run.end(4, End::Ok).await;
        let r = run.finish().await;
        let want = [
            "failed", "skipped", "skipped", "done", "done", "skipped", "failed",
        ];
        assert_eq!(r.states(), want);
        assert_eq!(r.walked.first_failure, Some(TaskId(6)));
        assert_eq!(r.error(0), "#0 failed");
    }

    #[tokio::test]
    async fn keep_going_with_one_slot_runs_the_rest_after_a_failure() {
        let mut run = spawn_walk(&deps(&[&[], &[0], &[]]), 1, Policy::KeepGoing);
        run.end(0, End::Fail).await;
        run.end(2, End::Ok).await;
        let r = run.finish().await;
        assert_eq!(r.states(), ["failed", "skipped", "done"]);
        assert_eq!(r.starts(), [0, 2]);
    }

    #[tokio::test]
    async fn cancel_aborts_everything_running_and_starts_nothing_new() {
        // Even with --keep-going. 1 and 4 hang; 2 starts once 0 is done; 3 waits for 2.
        let plan = deps(&[&[], &[], &[0], &[2], &[]]);
        let mut run = spawn_walk(&plan, MANY, Policy::KeepGoing);
        run.end(0, End::Ok).await;
        run.cancel_once_started(2).await;
        let r = run.finish().await;
        let want = ["done", "cancelled", "cancelled", "not-started", "cancelled"];
        assert_eq!(r.states(), want);
        assert!(r.walked.interrupted);
        assert_eq!(r.walked.first_failure, None);
    }

    #[tokio::test]
    async fn cancelled_before_the_walk_starts_nothing() {
        let run = spawn_walk(&deps(&[&[], &[0], &[]]), MANY, Policy::FailFast);
        run.options.cancel.cancel();
        let r = run.finish().await;
        assert_eq!(r.states(), ["not-started"; 3]);
        assert_eq!(r.events, []);
        assert!(r.walked.interrupted);
    }

    #[tokio::test]
    async fn a_panicking_task_fails_like_any_other() {
        for (policy, after) in [
            (Policy::FailFast, ["not-started", "not-started"]),
            (Policy::KeepGoing, ["skipped", "done"]),
        ] {
            let mut run = spawn_walk(&deps(&[&[], &[0], &[]]), 1, policy);
            run.end(0, End::Panic).await;
            if policy == Policy::KeepGoing {
                run.end(2, End::Ok).await;
            }
            let r = run.finish().await;
            assert_eq!(r.states(), [&["failed"][..], &after].concat());
            assert_eq!(r.error(0), "#0 panicked: boom in #0");
            assert_eq!(r.walked.first_failure, Some(TaskId(0)));
        }
    }

    #[tokio::test]
    async fn an_empty_plan_is_done_at_once() {
        let r = spawn_walk(&[], 4, Policy::FailFast).finish().await;
        assert!(r.walked.tasks.is_empty() && r.events.is_empty());
        assert_eq!(r.walked.first_failure, None);
    }

    #[test]
    fn a_plan_is_in_dependency_order() {
        let out_of_order = Plan::new(vec![vec![TaskId(1)], vec![]]).unwrap_err();
        let want = PlanError::OutOfOrder {
            task: TaskId(0),
            dep: TaskId(1),
        };
        assert_eq!(out_of_order, want);
        assert!(
            Plan::new(vec![vec![TaskId(0)]]).is_err(),
            "a task needing itself"
        );
        assert!(
            Plan::from_names(&["b", "a"], |t| if t == "b" { vec!["a"] } else { vec![] }).is_err()
        );
    }

    #[test]
    fn a_plan_from_names_keeps_the_dependencies_within_it() {
        let names = ["a", "b", "c"].map(String::from);
        let deps_of = |t: &str| -> Vec<&str> {
            match t {
                "b" => vec!["a", "elsewhere"],
                "c" => vec!["b", "a", "a"],
                _ => vec![],
            }
        };
        let plan = Plan::from_names(&names, deps_of).unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(plan.deps(TaskId(0)), []);
        assert_eq!(plan.deps(TaskId(1)), [TaskId(0)]);
        assert_eq!(plan.deps(TaskId(2)), [TaskId(0), TaskId(1)]);
    }

    /// A random plan and a random course of events.
    #[derive(Debug, Clone)]
    struct Scenario {
        deps: Vec<Vec<usize>>,
        fails: Vec<bool>,
        limit: usize,
        policy: Policy,
        picks: Vec<usize>,
        cancel_after: Option<usize>,
        multi_thread: bool,
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        let task = (any::<u16>(), any::<u16>(), 0..8u8);
        (
            proptest::collection::vec(task, 0..10),
            prop_oneof![1..4usize, Just(MANY)],
            any::<bool>(),
            proptest::collection::vec(any::<usize>(), 0..12),
            proptest::option::weighted(0.3, 0..10usize),
            any::<bool>(),
        )
            .prop_map(
                |(tasks, limit, keep_going, picks, cancel_after, multi_thread)| {
                    // About a quarter of the earlier tasks as dependencies; one task in four fails.
                    let deps = (0..tasks.len())
                        .map(|i| {
                            let mask = tasks[i].0 & tasks[i].1;
                            (0..i).filter(|&j| mask >> j & 1 == 1).collect()
                        })
                        .collect();
                    Scenario {
                        deps,
                        fails: tasks.iter().map(|t| t.2 < 2).collect(),
                        limit,
                        policy: if keep_going {
                            Policy::KeepGoing
                        } else {
                            Policy::FailFast
                        },
                        picks,
                        cancel_after,
                        multi_thread,
                    }
                },
            )
    }

    impl Scenario {
        fn run(self) -> Report {
            let mut rt = if self.multi_thread {
                tokio::runtime::Builder::new_multi_thread()
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let rt = rt.worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let run = spawn_walk(&self.deps, self.limit, self.policy);
                let how = |i| Some(if self.fails[i] { End::Fail } else { End::Ok });
                run.end_all(how, &self.picks, self.cancel_after).await
            })
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any plan, limit, policy, order of endings and moment of cancel: every task ends in
        /// exactly one state, consistent with the rest (assert_consistent), and without a
        /// cancel or a fail-fast stop every task is done, failed or skipped.
        #[test]
        fn every_task_ends_in_exactly_one_consistent_state(s in scenario()) {
            let (policy, cancel) = (s.policy, s.cancel_after.is_some());
            let fails = s.fails.clone();
            let r = s.run();
            let any_failed = fails.iter().any(|f| *f);
            let stopped = cancel || (policy == Policy::FailFast && any_failed);
            if !stopped {
                let ended = r.states().iter().all(|s| matches!(*s, "done" | "failed" | "skipped"));
                prop_assert!(ended, "{:?}", r.states());
            }
            if !cancel && !any_failed {
                prop_assert!(r.states().iter().all(|s| *s == "done"));
            }
        }
    }
}
