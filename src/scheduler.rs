//! Runs a plan of tasks: gathers each task's files, runs it through an [`Executor`], and puts its
//! outputs in place. The one module that knows config, graph, fingerprint, executor and report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Task};
use crate::error::{Error, Result};
use crate::executor::{Executor, TaskJob, tarball};
use crate::fingerprint::{InputFile, InputFiles};
use crate::report::Reporter;

/// Variables a task may declare that flamenco-build derives when the host does not set them.
pub const DERIVED_ENV: &[&str] = &["GITHASH"];

/// What a finished build did, per task.
#[derive(Debug, Default)]
pub struct BuildSummary {
    pub tasks: Vec<(String, Duration)>,
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
}

impl<'a, E: Executor> Scheduler<'a, E> {
    pub fn new(
        config: &'a Config,
        executor: &'a E,
        images: BTreeMap<String, String>,
        reporter: Reporter,
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
        }
    }

    /// The original build: every task of the plan, one at a time in dependency order, always run.
    pub async fn run_sequential(&self, plan: &[String]) -> Result<BuildSummary> {
        let total = plan.len();
        self.reporter.start(total, 1);
        let mut summary = BuildSummary::default();
        let mut task_time = Duration::ZERO;
        for (i, name) in plan.iter().enumerate() {
            let task = &self.config.tasks[name];
            self.reporter.task_started(i + 1, total, name);
            let started = Instant::now();
            match self.run_task(task).await {
                Ok(()) => {
                    let took = started.elapsed();
                    task_time += took;
                    self.reporter.task_completed(i + 1, total, name, took);
                    summary.tasks.push((name.clone(), took));
                }
                Err(e) => {
                    self.reporter
                        .task_failed(i + 1, total, name, started.elapsed());
                    let rest = &plan[i + 1..];
                    if !rest.is_empty() {
                        self.reporter.line(&format!(
                            "{}: not started: {}",
                            "Build",
                            rest.join(", ")
                        ));
                    }
                    return Err(e);
                }
            }
        }
        self.reporter.finished(task_time);
        summary.wall = self.reporter.elapsed();
        Ok(summary)
    }

    /// The files a task receives: its declared inputs, then its direct dependencies' outputs
    /// (which win over any input at the same place).
    pub fn task_files(&self, task: &Task) -> Result<Vec<InputFile>> {
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
        let mut dep_outputs = Vec::new();
        for dep in &task.deps {
            let dep_task = &self.config.tasks[dep];
            dep_outputs.extend(InputFiles::from_outputs(root, &dep_task.outputs)?);
        }
        let covered = |rel: &str| {
            task.deps
                .iter()
                .any(|d| self.config.tasks[d].outputs.iter().any(|o| o.contains(rel)))
        };
        let mut files: Vec<InputFile> = found
            .files
            .into_iter()
            .filter(|f| !covered(&f.rel))
            .collect();
        files.extend(dep_outputs);
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        Ok(files)
    }

    /// The environment of a task: its toolchain's, then the host variables it declares.
    pub fn task_env(&self, task: &Task) -> Vec<(String, String)> {
        let tc = &self.config.toolchains[&task.toolchain];
        let mut env: Vec<(String, String)> =
            tc.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for var in &task.env {
            if let Ok(v) = std::env::var(var) {
                env.push((var.clone(), v));
            } else if let Some(v) = derived_env(var, &self.config.root) {
                env.push((var.clone(), v));
            }
        }
        env
    }

    async fn run_task(&self, task: &Task) -> Result<()> {
        let files = self.task_files(task)?;
        let staging_parent = self.config.cache_dir().join("tmp");
        std::fs::create_dir_all(&staging_parent).map_err(Error::io(
            "cannot create the staging folder",
            &staging_parent,
        ))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!("{}-", task.name))
            .tempdir_in(&staging_parent)
            .map_err(Error::io(
                "cannot create the staging folder",
                &staging_parent,
            ))?;
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
        self.executor.run(&job, staging.path()).await?;
        tarball::place_outputs(staging.path(), &self.config.root, &task.outputs)?;
        Ok(())
    }
}

/// The value flamenco-build gives a derived variable: GITHASH is `git rev-parse --short HEAD`.
fn derived_env(var: &str, root: &PathBuf) -> Option<String> {
    match var {
        "GITHASH" => std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["rev-parse", "--short", "HEAD"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        _ => None,
    }
}
