//! The values flamenco-build derives from the project's git: each task's SOURCE_DATE_EPOCH (the
//! commit time of the last commit that touched that task's inputs, so a commit elsewhere leaves
//! its key alone) and GITHASH. Both depend only on HEAD and the task's input globs, so they are
//! kept in the cache folder by HEAD's id, which is read from git's files: a build whose HEAD did
//! not move spawns no `git` at all. When it moved, `git log` runs once per task, in parallel.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::recipe::SOURCE_DATE_EPOCH;
use crate::config::{Config, Task};
use crate::git::head::{Head, read_head};

/// The file, in the cache folder, that keeps the values of the last HEAD.
const FILE: &str = "source-dates.json";

/// The derived values of one build.
#[derive(Debug, Default)]
pub(crate) struct Derived {
    pub(crate) githash: Option<String>,
    /// Task → SOURCE_DATE_EPOCH; a task not here gets "0".
    epochs: BTreeMap<String, String>,
}

impl Derived {
    pub(crate) fn epoch(&self, task: &str) -> String {
        self.epochs.get(task).cloned().unwrap_or_else(|| "0".into())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    head: String,
    githash: Option<String>,
    tasks: BTreeMap<String, SavedTask>,
}

/// A task's value and the pathspecs it was asked for: other inputs mean asking again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedTask {
    pathspecs: Vec<String>,
    epoch: String,
}

/// The derived values of `config`'s project, worked out once per process (a second caller waits
/// for the first).
pub(crate) fn derived(config: &Config) -> Arc<Derived> {
    type Store = Mutex<HashMap<PathBuf, Arc<OnceLock<Arc<Derived>>>>>;
    static STORE: OnceLock<Store> = OnceLock::new();
    let cell = STORE
        .get_or_init(Store::default)
        .lock()
        .expect("derived values")
        .entry(config.root.clone())
        .or_default()
        .clone();
    cell.get_or_init(|| Arc::new(compute(config))).clone()
}

/// Whether flamenco-build gives `task` its SOURCE_DATE_EPOCH (neither the host nor its
/// toolchain's env sets it).
pub(crate) fn gives_epoch(config: &Config, task: &Task) -> bool {
    std::env::var_os(SOURCE_DATE_EPOCH).is_none()
        && !config.toolchains[&task.toolchain]
            .env
            .contains_key(SOURCE_DATE_EPOCH)
}

fn compute(config: &Config) -> Derived {
    let root = &config.root;
    let head = match read_head(root) {
        Some(Head::Commit(id)) => id,
        Some(Head::NotGit | Head::Unborn) => return Derived::default(),
        None => match crate::git::head_id(root) {
            Some(id) => id,
            None => return Derived::default(),
        },
    };
    let path = config.cache_dir().join(FILE);
    let old = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
        .filter(|s| s.head == head)
        .unwrap_or_default();
    let wanted: BTreeMap<String, Vec<String>> = config
        .tasks
        .values()
        .filter(|t| gives_epoch(config, t))
        .map(|t| (t.name.clone(), crate::git::pathspecs(&t.inputs)))
        .collect();
    let (mut tasks, ask) = kept_and_asked(&old, &wanted);
    let wants_hash = std::env::var_os("GITHASH").is_none()
        && config
            .tasks
            .values()
            .any(|t| t.env.iter().any(|v| v == "GITHASH"));
    let (times, githash) = std::thread::scope(|s| {
        let hash =
            (wants_hash && old.githash.is_none()).then(|| s.spawn(|| crate::git::short_hash(root)));
        let times = commit_times(root, &ask);
        let githash = match hash {
            Some(h) => h.join().ok().flatten(),
            None => old.githash.clone(),
        };
        (times, githash)
    });
    for (name, pathspecs) in wanted {
        if let Some(i) = ask.iter().position(|a| *a == pathspecs) {
            let epoch = times[i].clone();
            tasks.insert(name, SavedTask { pathspecs, epoch });
        }
    }
    let saved = Saved {
        head,
        githash,
        tasks,
    };
    if !ask.is_empty() || saved.githash != old.githash {
        // Only a cache: a failed write asks git again next time.
        if let Ok(bytes) = serde_json::to_vec_pretty(&saved) {
            let _ = crate::cache::write_atomic(&path, &bytes);
        }
    }
    Derived {
        githash: saved.githash,
        epochs: saved.tasks.into_iter().map(|(n, t)| (n, t.epoch)).collect(),
    }
}

/// The saved values still good for this HEAD (same pathspecs, a number), and the distinct sets
/// of pathspecs git must be asked about for the others.
fn kept_and_asked(
    old: &Saved,
    wanted: &BTreeMap<String, Vec<String>>,
) -> (BTreeMap<String, SavedTask>, Vec<Vec<String>>) {
    let mut kept = BTreeMap::new();
    let mut ask: Vec<Vec<String>> = Vec::new();
    for (name, specs) in wanted {
        let saved = old.tasks.get(name).filter(|s| {
            &s.pathspecs == specs
                && !s.epoch.is_empty()
                && s.epoch.bytes().all(|b| b.is_ascii_digit())
        });
        match saved {
            Some(s) => drop(kept.insert(name.clone(), s.clone())),
            None if !ask.contains(specs) => ask.push(specs.clone()),
            None => {}
        }
    }
    (kept, ask)
}

/// `git log` for each set of pathspecs, a few at once (a large graph must not start hundreds of
/// processes together).
fn commit_times(root: &std::path::Path, ask: &[Vec<String>]) -> Vec<String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let times: Vec<Mutex<String>> = ask.iter().map(|_| Mutex::default()).collect();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(2)
        .min(ask.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(specs) = ask.get(i) else { break };
                    *times[i].lock().expect("a time") = crate::git::last_commit_time(root, specs);
                }
            });
        }
    });
    times
        .into_iter()
        .map(|t| t.into_inner().expect("a time"))
        .collect()
}
