//! What a build did, per task, and how it is told: the `--json` document and the closing line of
//! a failed build.

use std::time::Duration;

use serde_json::json;

use crate::executor::Timings;
use crate::fingerprint::{Manifest, TaskKey};

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
    /// Which tier answered a hit: "local" or "remote".
    pub tier: Option<&'static str>,
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
    /// `--check-reproducible`: what running it once more showed.
    pub repro: Option<super::ReproCheck>,
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

    /// A task that began `began` after the build did, before anything is known of it.
    pub(crate) fn new(task: &str, began: Duration) -> TaskOutcome {
        TaskOutcome {
            task: task.to_string(),
            index: 0,
            began,
            result: CacheResult::Ran,
            tier: None,
            key: None,
            outputs: Manifest::new(),
            key_time: Duration::ZERO,
            run: Timings::default(),
            restore_time: Duration::ZERO,
            save_time: Duration::ZERO,
            total: Duration::ZERO,
            wait: Duration::ZERO,
            wait_at: Duration::ZERO,
            repro: None,
        }
    }
}

/// How a task of a build ended.
#[derive(Debug, Clone)]
pub enum TaskState {
    Done(Box<TaskOutcome>),
    /// Why, and the task's own exit code when it was the task that failed.
    Failed(String, Option<i64>),
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
            TaskState::Failed(..) => "failed",
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

    /// The tasks that ended with `label`, in plan order.
    pub fn with_label(&self, label: &str) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|(_, s)| s.label() == label)
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// After a failure in `build-optimized`: what failed, and what was cancelled, skipped or never
    /// started because of it.
    pub fn failure_parts(&self) -> String {
        let mut parts = vec![format!("failed: {}", self.with_label("failed").join(", "))];
        for (label, what) in [
            ("cancelled", "cancelled"),
            ("skipped", "skipped (a dependency failed)"),
            ("not-started", "not started"),
        ] {
            let l = self.with_label(label);
            if !l.is_empty() {
                parts.push(format!("{what}: {}", l.join(", ")));
            }
        }
        parts.join("; ")
    }

    /// The `--json` document: per task its status, key, cache result and phase times.
    /// `--check-reproducible`'s closing report: a line per task checked, one per file that
    /// differed, and a total; and how many files differed.
    pub fn reproducibility(&self) -> (Vec<String>, usize) {
        let (mut lines, mut files, mut differ, mut tasks) = (Vec::new(), 0, 0, 0);
        for (name, state) in &self.tasks {
            let TaskState::Done(o) = state else { continue };
            let Some(r) = &o.repro else { continue };
            tasks += 1;
            files += r.files;
            differ += r.differences.len();
            match r.differences.len() {
                0 => lines.push(format!(
                    "reproducible: {name}: {}, identical in both runs",
                    files_text(r.files)
                )),
                n => {
                    lines.push(format!(
                        "NOT reproducible: {name}: {n} of {} differ:",
                        files_text(r.files)
                    ));
                    lines.extend(r.differences.iter().map(|d| format!("    {d}")));
                }
            }
        }
        lines.push(format!(
            "Reproducibility: {tasks} task{} checked, {files} files compared, {differ} differ",
            if tasks == 1 { "" } else { "s" }
        ));
        (lines, differ)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let tasks: Vec<serde_json::Value> = self
            .tasks
            .iter()
            .map(|(name, state)| task_json(name, state))
            .collect();
        let ok = self
            .tasks
            .iter()
            .all(|(_, s)| matches!(s, TaskState::Done(_)));
        // The build began `wall` ago.
        let started = std::time::SystemTime::now()
            .checked_sub(self.wall)
            .unwrap_or(std::time::UNIX_EPOCH);
        json!({
            "schema": JSON_SCHEMA,
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": humantime::format_rfc3339_millis(started).to_string(),
            "status": if ok { "ok" } else { "failed" },
            "wall_ms": ms(self.wall),
            "jobs": self.jobs,
            "tasks": tasks,
        })
    }
}

fn files_text(n: usize) -> String {
    match n {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    }
}

/// The version of `--json`'s layout: a dashboard can tell what it reads. 2: integer
/// milliseconds, `schema`, `version`, `started_at`.
pub const JSON_SCHEMA: u32 = 2;

/// Whole milliseconds, rounded: what a dashboard wants, not `0.049564000000000004`.
fn ms(d: Duration) -> u64 {
    (d.as_secs_f64() * 1000.0).round() as u64
}

fn task_json(name: &str, state: &TaskState) -> serde_json::Value {
    let mut v = json!({ "task": name, "status": state.label() });
    match state {
        TaskState::Done(o) => {
            v["key"] = json!(o.key.as_ref().map(|k| k.hash.clone()));
            if let Some(tier) = o.tier {
                v["tier"] = json!(tier);
            }
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
            if let Some(r) = &o.repro {
                v["reproducible"] = r.to_json();
            }
            if let Some(w) = &o.run.worker {
                v["worker"] = json!(w);
            }
            if o.run.engine_cached {
                // Nothing ran: the remote engine's action cache held the result.
                v["engine_cache"] = json!("hit");
            }
        }
        TaskState::Failed(e, code) => {
            v["error"] = json!(e);
            if let Some(code) = code {
                v["exit_code"] = json!(code);
            }
        }
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_its_schema_version_and_whole_milliseconds() {
        let summary = BuildSummary {
            tasks: vec![
                (
                    "a".to_string(),
                    TaskState::Failed("boom".to_string(), Some(3)),
                ),
                ("b".to_string(), TaskState::Skipped),
            ],
            wall: Duration::from_micros(49_564),
            jobs: 2,
        };
        let v = summary.to_json();
        assert_eq!(v["schema"], JSON_SCHEMA);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["wall_ms"].as_u64(), Some(50), "{v}");
        assert_eq!(v["status"], "failed");
        let started = v["started_at"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(started).is_ok(), "{started}");
        assert_eq!(v["tasks"][0]["error"], "boom");
        assert_eq!(v["tasks"][0]["exit_code"], 3);
        assert_eq!(v["tasks"][1]["status"], "skipped");
    }
}
