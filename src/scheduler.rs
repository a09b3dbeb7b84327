//! Runs a plan of tasks: for each, its key → up to date / restore / run → save, and the outputs
//! put in place. The one module that knows config, fingerprint, cache, executor and report.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::LocalCache;
use crate::config::{Config, Task};
use crate::error::{Error, Result};
use crate::executor::{Executor, TaskJob, Timings, tarball};
use crate::fingerprint::{
    FileDigest, InputFile, InputFiles, KEY_FORMAT, KeyRecipe, Manifest, StatCache, TaskKey,
    env_value_hash, manifest_hash,
};
use crate::report::Reporter;

/// Variables a task may declare that flamenco-build derives when the host does not set them.
pub const DERIVED_ENV: &[&str] = &["GITHASH"];

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
    pub result: CacheResult,
    pub key: Option<TaskKey>,
    /// The task's outputs as they now are in the workspace (cached modes only).
    pub outputs: Manifest,
    pub key_time: Duration,
    pub run: Timings,
    pub restore_time: Duration,
    pub save_time: Duration,
    pub total: Duration,
}

/// How a build treats the artifact cache.
pub struct CacheMode {
    pub cache: LocalCache,
    pub stat_cache: StatCache,
    /// Print, per task, hit or miss and why.
    pub explain: bool,
}

/// What a finished build did, per task.
#[derive(Debug, Default)]
pub struct BuildSummary {
    pub tasks: Vec<TaskOutcome>,
    pub wall: Duration,
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
        }
    }

    /// Every task of the plan, one at a time in dependency order: `build` (no cache) and
    /// `build-incremental`.
    pub async fn run_sequential(&self, plan: &[String]) -> Result<BuildSummary> {
        let total = plan.len();
        self.reporter.start(total, 1);
        let mut summary = BuildSummary::default();
        let mut outputs: BTreeMap<String, Manifest> = BTreeMap::new();
        let result = async {
            for (i, name) in plan.iter().enumerate() {
                let task = &self.config.tasks[name];
                let started = Instant::now();
                match self.build_task(task, &outputs, i + 1, total).await {
                    Ok(outcome) => {
                        match outcome.result {
                            CacheResult::UpToDate | CacheResult::Restored => {
                                self.reporter.task_cached(
                                    i + 1,
                                    total,
                                    name,
                                    outcome.result == CacheResult::Restored,
                                    outcome.total,
                                )
                            }
                            CacheResult::Built | CacheResult::Ran => {
                                self.reporter
                                    .task_completed(i + 1, total, name, outcome.total)
                            }
                        }
                        outputs.insert(name.clone(), outcome.outputs.clone());
                        summary.tasks.push(outcome);
                    }
                    Err(e) => {
                        self.reporter
                            .task_failed(i + 1, total, name, started.elapsed());
                        let rest = &plan[i + 1..];
                        if !rest.is_empty() {
                            self.reporter.line(&format!(
                                "{}: not started: {}",
                                self.reporter.mode(),
                                rest.join(", ")
                            ));
                        }
                        return Err(e);
                    }
                }
            }
            Ok(())
        }
        .await;
        self.finish();
        result?;
        let task_time = summary.tasks.iter().map(|t| t.total).sum();
        self.reporter.finished(task_time);
        summary.wall = self.reporter.elapsed();
        Ok(summary)
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
                let (inputs, _) = self.task_inputs(task)?;
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
                        let why = match meta.as_ref().and_then(|m| m.last_recipe()) {
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
        if let Some(c) = &self.cache {
            if let Err(e) = c.stat_cache.save() {
                self.reporter
                    .warn(&format!("cannot save the stat cache: {e}"));
            }
            let s = &self.config.settings;
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
        index: usize,
        total: usize,
    ) -> Result<TaskOutcome> {
        let started = Instant::now();
        let Some(mode) = &self.cache else {
            self.reporter.task_started(index, total, &task.name);
            let files = self.task_files(task)?;
            let staging = self.staging(task)?;
            let run = self.run_task(task, files, staging.path()).await?;
            self.place(staging.path(), task)?;
            return Ok(TaskOutcome {
                task: task.name.clone(),
                result: CacheResult::Ran,
                key: None,
                outputs: Manifest::new(),
                key_time: Duration::ZERO,
                run,
                restore_time: Duration::ZERO,
                save_time: Duration::ZERO,
                total: started.elapsed(),
            });
        };

        let (inputs, files) = self.task_inputs(task)?;
        let digests = mode
            .stat_cache
            .digest_all(&inputs)
            .map_err(Error::io("cannot hash the inputs of", task.name.as_str()))?;
        let recipe = self.recipe(task, &inputs, digests, dep_outputs);
        let key = recipe.key();
        let key_time = started.elapsed();
        tracing::debug!(task = %task.name, took = ?key_time, files = inputs.len(), "computed the key");
        let mut outcome = TaskOutcome {
            task: task.name.clone(),
            result: CacheResult::Built,
            key: Some(key.clone()),
            outputs: Manifest::new(),
            key_time,
            run: Timings::default(),
            restore_time: Duration::ZERO,
            save_time: Duration::ZERO,
            total: Duration::ZERO,
        };

        let meta = mode.cache.load(&task.name);
        if let Some(entry) = meta.as_ref().and_then(|m| m.entries.get(&key)) {
            let here = self.workspace_outputs(task, &mode.stat_cache)?;
            if here == entry.outputs {
                self.explain(mode, task, "hit, outputs up to date", &key);
                mode.cache.record_hit(&task.name, &key, false);
                outcome.result = CacheResult::UpToDate;
                outcome.outputs = here;
                outcome.total = started.elapsed();
                return Ok(outcome);
            }
            let t = Instant::now();
            let staging = self.staging(task)?;
            match mode.cache.restore(&task.name, entry, staging.path()) {
                Ok(()) => {
                    self.place(staging.path(), task)?;
                    self.explain(mode, task, "hit, restored from the cache", &key);
                    mode.cache.record_hit(&task.name, &key, true);
                    outcome.result = CacheResult::Restored;
                    outcome.outputs = entry.outputs.clone();
                    outcome.restore_time = t.elapsed();
                    outcome.total = started.elapsed();
                    return Ok(outcome);
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
            let why = match meta.as_ref().and_then(|m| m.last_recipe()) {
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

        self.reporter.task_started(index, total, &task.name);
        let staging = self.staging(task)?;
        outcome.run = self.run_task(task, files, staging.path()).await?;
        let staged = InputFiles::from_outputs(staging.path(), &task.outputs)?;
        let manifest = to_manifest(&staged, &StatCache::in_memory())?;
        let t = Instant::now();
        if let Err(e) = mode.cache.save(
            &task.name,
            &recipe,
            staging.path(),
            &manifest,
            outcome.run.total(),
        ) {
            self.reporter.warn(&format!("not cached: {e}"));
        }
        outcome.save_time = t.elapsed();
        self.place(staging.path(), task)?;
        outcome.outputs = manifest;
        outcome.total = started.elapsed();
        Ok(outcome)
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
        let files = InputFiles::from_outputs(&self.config.root, &task.outputs)?;
        to_manifest(&files, stat_cache)
    }

    fn staging(&self, task: &Task) -> Result<tempfile::TempDir> {
        let parent = self.config.cache_dir().join("tmp");
        std::fs::create_dir_all(&parent)
            .map_err(Error::io("cannot create the staging folder", &parent))?;
        tempfile::Builder::new()
            .prefix(&format!("{}-", task.name))
            .tempdir_in(&parent)
            .map_err(Error::io("cannot create the staging folder", &parent))
    }

    /// Puts staged outputs in place, under the cache lock so that two builds of one project
    /// never interleave their renames.
    fn place(&self, staging: &Path, task: &Task) -> Result<()> {
        let _lock = match &self.cache {
            Some(c) => Some(c.cache.lock()?),
            None => None,
        };
        tarball::place_outputs(staging, &self.config.root, &task.outputs)
    }

    /// The task's declared input files, and everything it receives (inputs plus its direct
    /// dependencies' outputs, which win over any input at the same place).
    pub fn task_inputs(&self, task: &Task) -> Result<(Vec<InputFile>, Vec<InputFile>)> {
        let root = &self.config.root;
        let skip = [self.config.cache_dir(), root.join(".git")];
        let found = InputFiles::collect(root, &task.inputs, &skip)?;
        for i in &found.unmatched {
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
        let covered = |rel: &str| {
            task.deps
                .iter()
                .any(|d| self.config.tasks[d].outputs.iter().any(|o| o.contains(rel)))
        };
        let inputs: Vec<InputFile> = found
            .files
            .into_iter()
            .filter(|f| !covered(&f.rel))
            .collect();
        let mut files = inputs.clone();
        for dep in &task.deps {
            files.extend(InputFiles::from_outputs(
                root,
                &self.config.tasks[dep].outputs,
            )?);
        }
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        Ok((inputs, files))
    }

    /// Everything a task receives.
    pub fn task_files(&self, task: &Task) -> Result<Vec<InputFile>> {
        Ok(self.task_inputs(task)?.1)
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

fn to_manifest(files: &[InputFile], stat_cache: &StatCache) -> Result<Manifest> {
    let digests = stat_cache
        .digest_all(files)
        .map_err(Error::io("cannot hash outputs", "<outputs>"))?;
    Ok(files.iter().map(|f| f.rel.clone()).zip(digests).collect())
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
