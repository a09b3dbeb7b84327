//! The work of one task, as the walk runs it: its key → the cache's answer → up to date, restored,
//! or run in a container slot → saved → its outputs placed. Hashing, copying and extraction run
//! on the blocking pool, never on the async workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::CacheMode;
use super::context::Context;
use super::summary::{CacheResult, TaskOutcome};
use super::walk::{RunTask, TaskId};
use crate::cache::{CacheError, Hit, Lookup, outside_outputs};
use crate::config::Task;
use crate::error::{Error, Result};
use crate::executor::{Executor, TaskJob, Timings, off_async_workers};
use crate::fingerprint::action::TaskAction;
use crate::fingerprint::{
    InputFile, InputFiles, KeyRecipe, Manifest, StatCache, changed_since_read,
};
use crate::report::CACHE_ROW;

/// A task's key and what it was computed from.
struct Keyed {
    inputs: Vec<InputFile>,
    recipe: KeyRecipe,
    /// The task's `Action`, whose digest is the key.
    action: Arc<TaskAction>,
    /// The task's outputs in the workspace, when the read-ahead already has them.
    here: Option<Manifest>,
}

impl<E: Executor + Send + Sync + 'static> RunTask for Context<E> {
    type Output = TaskOutcome;
    type Error = Error;

    async fn run(
        self: Arc<Self>,
        id: TaskId,
        deps: Vec<(TaskId, Arc<TaskOutcome>)>,
    ) -> Result<TaskOutcome> {
        let dep_outputs: BTreeMap<String, Manifest> = deps
            .iter()
            .map(|(_, o)| (o.task.clone(), o.outputs.clone()))
            .collect();
        let name = self.plan[id.index()].clone();
        self.build_task(&name, &dep_outputs).await
    }

    fn panicked(&self, id: TaskId, message: String) -> Error {
        Error::TaskPanicked {
            task: self.plan[id.index()].clone(),
            message,
        }
    }
}

impl<E: Executor + Send + Sync + 'static> Context<E> {
    /// One task: with the cache, up to date / restore / run and save; without, just run.
    pub(crate) async fn build_task(
        self: &Arc<Self>,
        name: &str,
        dep_outputs: &BTreeMap<String, Manifest>,
    ) -> Result<TaskOutcome> {
        let task = self.task(name);
        let started = Instant::now();
        self.clock_in(name, started);
        let mut outcome = TaskOutcome::new(name, started.saturating_duration_since(self.origin()));
        let Some(mode) = &self.cache else {
            return self.run_uncached(task, outcome).await;
        };
        let mut keyed = self.key_of(mode, task, dep_outputs).await?;
        let key = keyed.recipe.key();
        outcome.key_time = started.elapsed();
        outcome.key = Some(key);
        let span = format!("{name}: key");
        self.span(span, "phase", CACHE_ROW, started, outcome.key_time);
        tracing::debug!(task = %name, took = ?outcome.key_time, files = keyed.inputs.len(), "computed the key");
        if self
            .from_cache(mode, task, &mut keyed, &mut outcome)
            .await?
        {
            if self.check_reproducible {
                self.check_hit(task, &keyed, &mut outcome).await?;
            }
            return Ok(self.finish_outcome(outcome, started, CACHE_ROW));
        }
        self.run_and_save(mode, task, keyed, dep_outputs, outcome)
            .await
    }

    /// `build`: gather the task's files, run it, place its outputs; no key, no cache.
    async fn run_uncached(
        self: &Arc<Self>,
        task: &Task,
        mut outcome: TaskOutcome,
    ) -> Result<TaskOutcome> {
        let ctx = self.clone();
        let name = task.name.clone();
        let files = off_async_workers(&task.name, move || {
            let task = ctx.task(&name);
            let inputs = ctx.task_inputs(task)?;
            ctx.with_dep_outputs(task, inputs)
        })
        .await?;
        let action = match self.executor.needs_action() {
            true => Some(self.uncached_action(task, &files).await?),
            false => None,
        };
        let again = self
            .check_reproducible
            .then(|| (files.clone(), action.clone()));
        let ran = self.run_staged(task, files, action, false).await;
        self.workspace.check_root()?;
        let (run, staging) = ran?;
        outcome.run = run;
        if let Some((files, action)) = again {
            let first = staged_manifest(task, staging.path()).await?;
            let check = self.check_again(task, files, action, staging.path(), &first);
            outcome.repro = Some(check.await?);
        }
        self.place(staging.path(), task).await?;
        outcome.index = self.index(&task.name);
        self.clock_out(&mut outcome);
        Ok(outcome)
    }

    /// `--check-reproducible` on a hit: the task runs once more and its outputs are compared with
    /// the cached ones, which the workspace now holds.
    async fn check_hit(
        self: &Arc<Self>,
        task: &Task,
        keyed: &Keyed,
        outcome: &mut TaskOutcome,
    ) -> Result<()> {
        let (ctx, name, inputs) = (self.clone(), task.name.clone(), keyed.inputs.clone());
        let files = off_async_workers(&task.name, move || {
            ctx.with_dep_outputs(ctx.task(&name), inputs)
        })
        .await?;
        let (action, root) = (Some(keyed.action.clone()), self.config.root.clone());
        let check = self.check_again(task, files, action, &root, &outcome.outputs);
        outcome.repro = Some(check.await?);
        Ok(())
    }

    /// `build` on an executor that needs the task's `Action`: every file it is given hashed now
    /// (no stat cache), its dependencies' outputs among them.
    async fn uncached_action(
        self: &Arc<Self>,
        task: &Task,
        files: &[InputFile],
    ) -> Result<Arc<TaskAction>> {
        let (given, name) = (files.to_vec(), task.name.clone());
        let digests = off_async_workers(&task.name, move || {
            StatCache::in_memory()
                .digest_all(&given)
                .map_err(Error::io("cannot hash the inputs of", name.as_str()))
        })
        .await?;
        let (_, action) = self.recipe(task, files, digests, &BTreeMap::new());
        Ok(action)
    }

    /// The task's inputs, their digests and its key recipe: from the read-ahead while it holds,
    /// else read now on the blocking pool.
    async fn key_of(
        self: &Arc<Self>,
        mode: &CacheMode,
        task: &Task,
        dep_outputs: &BTreeMap<String, Manifest>,
    ) -> Result<Keyed> {
        let (inputs, digests, here) = match self.snapshot_of(mode, task) {
            Some(s) => {
                self.warn_unmatched(task, &s.unmatched);
                self.warn_skipped(task, &s.skipped);
                (s.inputs, s.digests, Some(s.outputs))
            }
            None => {
                let (inputs, digests) = self.read_inputs(mode, task).await?;
                (inputs, digests, None)
            }
        };
        let (recipe, action) = self.recipe(task, &inputs, digests, dep_outputs);
        Ok(Keyed {
            inputs,
            recipe,
            action,
            here,
        })
    }

    /// A task's input files and their digests, read now on the blocking pool.
    pub(crate) async fn read_inputs(
        self: &Arc<Self>,
        mode: &CacheMode,
        task: &Task,
    ) -> Result<(Vec<InputFile>, Vec<crate::fingerprint::FileDigest>)> {
        let (ctx, stat_cache, name) = (self.clone(), mode.stat_cache.clone(), task.name.clone());
        off_async_workers(&task.name, move || {
            let inputs = ctx.task_inputs(ctx.task(&name))?;
            let digests = stat_cache
                .digest_all(&inputs)
                .map_err(Error::io("cannot hash the inputs of", name.as_str()))?;
            Ok((inputs, digests))
        })
        .await
    }

    /// Answers the task from the cache when its key hits: up to date, or restored (a corrupt
    /// entry is evicted with a warning and the task runs). True when the cache answered.
    async fn from_cache(
        self: &Arc<Self>,
        mode: &CacheMode,
        task: &Task,
        keyed: &mut Keyed,
        outcome: &mut TaskOutcome,
    ) -> Result<bool> {
        let key = keyed.recipe.key();
        if mode.recache {
            self.explain(task, "runs: --recache", &key);
            return Ok(false);
        }
        let here = keyed.here.take();
        let workspace = || async {
            match here {
                Some(h) => Ok(h),
                None => self.workspace_outputs(task, &mode.stat_cache).await,
            }
        };
        let hit = match mode.cache.lookup(&task.name, &key, workspace).await? {
            Lookup::UpToDate(hit) => {
                self.up_to_date(mode, task, keyed, hit, outcome).await;
                return Ok(true);
            }
            Lookup::Restorable(hit) => hit,
            Lookup::Miss(miss) => {
                if mode.explain {
                    let why = mode.cache.why_missed(&task.name, &keyed.recipe, &miss);
                    self.explain(task, &format!("miss: {why}"), &key);
                }
                return Ok(false);
            }
        };
        self.restore_hit(mode, task, keyed, hit, outcome).await
    }

    /// A hit whose outputs the workspace already holds.
    async fn up_to_date(
        &self,
        mode: &CacheMode,
        task: &Task,
        keyed: &Keyed,
        hit: Hit,
        outcome: &mut TaskOutcome,
    ) {
        // The workspace holds the outputs a remote result names: keep them locally.
        self.keep_locally(mode, task, keyed, &hit, &self.config.root)
            .await;
        mode.cache
            .share(&task.name, &keyed.recipe, &hit, &self.config.root)
            .await;
        self.explain(task, "hit, outputs up to date", &keyed.recipe.key());
        mode.cache.record_hit(&task.name, &hit);
        outcome.result = CacheResult::UpToDate;
        outcome.tier = Some(if hit.is_local() { "local" } else { "remote" });
        outcome.outputs = hit.entry.outputs;
    }

    /// After a remote hit: its outputs (in `files`) go into the local store too.
    async fn keep_locally(
        &self,
        mode: &CacheMode,
        task: &Task,
        keyed: &Keyed,
        hit: &Hit,
        files: &std::path::Path,
    ) {
        if hit.is_local() {
            return;
        }
        if let Err(e) = mode
            .cache
            .adopt(&task.name, &keyed.recipe, files, hit)
            .await
        {
            self.reporter.warn(&format!(
                "cannot keep {}'s remote outputs in the local cache: {e}",
                task.name
            ));
        }
    }

    /// A hit whose outputs must be put back: restored into staging, then placed. False (the task
    /// runs) when the entry cannot be trusted or a remote tier failed, with a warning.
    async fn restore_hit(
        self: &Arc<Self>,
        mode: &CacheMode,
        task: &Task,
        keyed: &Keyed,
        hit: Hit,
        outcome: &mut TaskOutcome,
    ) -> Result<bool> {
        let remote = mode.cache.tier_name(&hit);
        if remote.is_some()
            && let Some(stray) = outside_outputs(task, &hit.entry.outputs)
        {
            self.reporter.warn(&format!(
                "remote cache: the result for {} names `{stray}`, which is not among its \
                 declared outputs; not restored, running the task",
                task.name
            ));
            return Ok(false);
        }
        let t = Instant::now();
        let staging = self.workspace.staging(&task.name)?;
        if let Err(e) = mode.cache.restore(&task.name, &hit, staging.path()).await {
            // An interrupted restore is not a corrupt entry.
            crate::interrupt::check()?;
            match (&remote, &e) {
                // The tier said once that it is off.
                (_, CacheError::TierOff) => {}
                (None, _) => self
                    .reporter
                    .warn(&format!("{e}; evicted, running the task")),
                (Some(_), _) => self.reporter.warn(&format!(
                    "remote cache: {e}; not restored, running the task"
                )),
            }
            return Ok(false);
        }
        self.keep_locally(mode, task, keyed, &hit, staging.path())
            .await;
        self.place(staging.path(), task).await?;
        mode.cache
            .share(&task.name, &keyed.recipe, &hit, &self.config.root)
            .await;
        let how = match &remote {
            Some(server) => format!("hit, restored from the remote cache ({server})"),
            None => "hit, restored from the cache".to_string(),
        };
        self.explain(task, &how, &keyed.recipe.key());
        mode.cache.record_hit(&task.name, &hit);
        outcome.result = CacheResult::Restored;
        outcome.tier = Some(if remote.is_some() { "remote" } else { "local" });
        outcome.outputs = hit.entry.outputs;
        outcome.restore_time = t.elapsed();
        let span = format!("{}: restore", task.name);
        self.span(span, "phase", CACHE_ROW, t, outcome.restore_time);
        Ok(true)
    }

    /// A key miss: run the task, save its outputs under the key, place them.
    async fn run_and_save(
        self: &Arc<Self>,
        mode: &CacheMode,
        task: &Task,
        keyed: Keyed,
        dep_outputs: &BTreeMap<String, Manifest>,
        mut outcome: TaskOutcome,
    ) -> Result<TaskOutcome> {
        let (ctx, name, inputs) = (self.clone(), task.name.clone(), keyed.inputs);
        let files = off_async_workers(&task.name, move || {
            ctx.with_dep_outputs(ctx.task(&name), inputs)
        })
        .await?;
        let given = files.clone();
        let again = self.check_reproducible.then(|| files.clone());
        let ran = self
            .run_staged(task, files, Some(keyed.action.clone()), false)
            .await;
        self.workspace.check_root()?;
        let (run, staging) = ran?;
        outcome.run = run;
        let changed = self
            .given_files_changed(mode, task, given, &keyed.recipe, dep_outputs)
            .await?;
        let manifest = staged_manifest(task, staging.path()).await?;
        if let Some(files) = again {
            let action = Some(keyed.action.clone());
            let check = self.check_again(task, files, action, staging.path(), &manifest);
            outcome.repro = Some(check.await?);
        }
        let t = Instant::now();
        if !self.workspace.disk_full() && !changed {
            self.saved.store(true, std::sync::atomic::Ordering::Relaxed);
            let saved = mode.cache.save(
                &task.name,
                &keyed.recipe,
                staging.path(),
                &manifest,
                outcome.run.total(),
            );
            if let Err(e) = saved.await {
                self.reporter.warn(&format!("not cached: {e}"));
            }
        }
        outcome.save_time = t.elapsed();
        let span = format!("{}: save", task.name);
        self.span(span, "phase", CACHE_ROW, t, outcome.save_time);
        self.place(staging.path(), task).await?;
        outcome.result = CacheResult::Built;
        outcome.outputs = manifest;
        outcome.index = self.index(&task.name);
        self.clock_out(&mut outcome);
        Ok(outcome)
    }

    /// Whether a file the task was given may not be what its key was computed from (it changed
    /// while the build ran): then what the task saw is not what the key says, and its result
    /// must not be cached under that key. Warns, naming the files.
    async fn given_files_changed(
        &self,
        mode: &CacheMode,
        task: &Task,
        given: Vec<InputFile>,
        recipe: &KeyRecipe,
        dep_outputs: &BTreeMap<String, Manifest>,
    ) -> Result<bool> {
        let mut expected = recipe.inputs.clone();
        for dep in &task.deps {
            expected.extend(dep_outputs.get(dep).cloned().unwrap_or_default());
        }
        let since = mode
            .reading_began
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let changed = off_async_workers(&task.name, move || {
            let changed = changed_since_read(&given, &expected, since);
            Ok(changed.into_iter().map(String::from).collect::<Vec<_>>())
        })
        .await?;
        if changed.is_empty() {
            return Ok(false);
        }
        let mut names = changed[..changed.len().min(5)].join(", ");
        if changed.len() > 5 {
            names.push_str(&format!(" and {} more", changed.len() - 5));
        }
        self.reporter.warn(&format!(
            "task `{}`: {names} changed while the build ran; not cached",
            task.name
        ));
        Ok(true)
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

    /// The outputs of a task as they are in the workspace now.
    async fn workspace_outputs(
        &self,
        task: &Task,
        stat_cache: &Arc<StatCache>,
    ) -> Result<Manifest> {
        let (root, outputs, stat_cache) = (
            self.config.root.clone(),
            task.outputs.clone(),
            stat_cache.clone(),
        );
        off_async_workers(&task.name, move || {
            let files = InputFiles::output_tree(&root, &outputs)?;
            to_manifest(&files, &stat_cache)
        })
        .await
    }

    /// Runs the task with its outputs staged in the cache folder; when that folder's disk is
    /// full, runs it again staged next to the workspace, and stays there for the rest of the build.
    /// `fresh`: the task must really run (`--check-reproducible`'s second run), never be answered
    /// from a remote engine's own cache.
    pub(super) async fn run_staged(
        &self,
        task: &Task,
        files: Vec<InputFile>,
        action: Option<Arc<TaskAction>>,
        fresh: bool,
    ) -> Result<(Timings, tempfile::TempDir)> {
        let staging = self.workspace.staging(&task.name)?;
        let first = self.run_in_slot(task, files.clone(), (action.clone(), fresh), staging.path());
        match first.await {
            Err(e) if e.is_disk_full() && self.workspace.note_disk_full() => {
                self.reporter.warn(&format!(
                    "the cache folder's disk is full ({e}); building without caching, staging outputs in the project folder"
                ));
                drop(staging);
                let staging = self.workspace.staging(&task.name)?;
                let run = self
                    .run_in_slot(task, files, (action, fresh), staging.path())
                    .await?;
                Ok((run, staging))
            }
            r => Ok((r?, staging)),
        }
    }

    /// Runs the task's container in a slot: the only part of a task that holds one.
    async fn run_in_slot(
        &self,
        task: &Task,
        files: Vec<InputFile>,
        action: (Option<Arc<TaskAction>>, bool),
        staging: &std::path::Path,
    ) -> Result<Timings> {
        let queued = Instant::now();
        let (_permit, slot) = self.slots.acquire().await;
        self.clock_wait(&task.name, queued);
        self.in_container
            .lock()
            .expect("lock")
            .insert(task.name.clone());
        if action.1 {
            // `--check-reproducible`'s second run: the task's "Starting" line was the first's.
            self.reporter.line(&format!(
                "check-reproducible: running {} once more from the same inputs",
                task.name
            ));
        } else {
            self.reporter
                .task_started(self.index(&task.name), self.total(), &task.name);
        }
        let start = Instant::now();
        let result = self.run_task(task, files, action, staging, slot.id).await;
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

    async fn run_task(
        &self,
        task: &Task,
        files: Vec<InputFile>,
        (action, fresh): (Option<Arc<TaskAction>>, bool),
        staging: &std::path::Path,
        row: usize,
    ) -> Result<Timings> {
        let (reporter, trace, name) =
            (self.reporter.clone(), self.trace.clone(), task.name.clone());
        let job = TaskJob {
            task,
            image_id: self.images[&task.toolchain].clone(),
            env: self.task_env(task),
            files,
            user: self.config.settings.user_ids(),
            // With --trace, each line's arrival is a moment on the task's row: it shows that a
            // task's log keeps flowing while other tasks hash, copy or save.
            log: Arc::new(move |line: &str| {
                if let Some(t) = &trace {
                    t.instant(&name, "log", row, Instant::now());
                }
                reporter.log(&name, line)
            }),
            action,
            fresh,
        };
        self.executor.run(&job, staging).await
    }

    /// Puts staged outputs in place, under the cache lock, on the blocking pool.
    async fn place(self: &Arc<Self>, staging: &std::path::Path, task: &Task) -> Result<()> {
        let (ctx, staging, name) = (self.clone(), staging.to_path_buf(), task.name.clone());
        off_async_workers(&task.name, move || {
            let lock = match &ctx.cache {
                Some(c) => Some(c.cache.local().lock()?),
                None => None,
            };
            ctx.workspace
                .place(&staging, &ctx.task(&name).outputs, lock)
        })
        .await
    }
}

/// The manifest of what a run staged, hashed on the blocking pool.
async fn staged_manifest(task: &Task, staging: &std::path::Path) -> Result<Manifest> {
    let (staging, outputs) = (staging.to_path_buf(), task.outputs.clone());
    off_async_workers(&task.name, move || {
        let staged = InputFiles::output_tree(&staging, &outputs)?;
        to_manifest(&staged, &StatCache::in_memory())
    })
    .await
}

fn to_manifest(files: &[InputFile], stat_cache: &StatCache) -> Result<Manifest> {
    stat_cache.manifest(files).map_err(|source| Error::Io {
        context: "cannot hash outputs",
        path: files.first().map(|f| f.abs.clone()).unwrap_or_default(),
        source,
    })
}
