//! The one door to the cache: look a task's key up, restore what it names, save a run, say why a
//! key missed. Under it, tiers that each implement [`Storage`]: the local store first; remote
//! tiers (the remote-cache issue) are read through after it and written through after it, so
//! nothing above this file knows which tier answered.

use std::path::Path;
use std::time::Duration;

use super::local_store::LocalStore;
use super::metadata::{Entry, TaskMetadata};
use super::{CacheError, Corrupt, materialize};
use crate::error::Result;
use crate::fingerprint::{KeyRecipe, Manifest, TaskKey};

/// What the cache holds for a task's key.
#[derive(Debug)]
pub enum Lookup {
    /// A hit, and the workspace already holds the recorded outputs.
    UpToDate(Hit),
    /// A hit whose outputs must be put back.
    Restorable(Hit),
    /// No entry for this key.
    Miss(Miss),
}

/// An entry found for a key, with the task's metadata it came from.
#[derive(Debug)]
pub struct Hit {
    pub entry: Entry,
    meta: TaskMetadata,
}

/// A miss; [`Cache::why_missed`] says why, when anyone asks.
#[derive(Debug)]
pub struct Miss {
    meta: Option<TaskMetadata>,
}

/// The cache of one build: the local store and, later, remote tiers.
#[derive(Debug, Clone)]
pub struct Cache {
    local: LocalStore,
}

impl Cache {
    /// Opens (creating) the local store at `dir`.
    pub fn open(dir: &Path) -> Result<Cache> {
        Ok(Cache {
            local: LocalStore::open(dir)?,
        })
    }

    /// The local store, for what only it does: locking, status, cleanup, verification.
    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// Looks `key` up. `here` gives the task's outputs as they are in the workspace; it is only
    /// asked on a hit.
    pub fn lookup(
        &self,
        task: &str,
        key: &TaskKey,
        here: impl FnOnce() -> Result<Manifest>,
    ) -> Result<Lookup> {
        let meta = self.local.load(task);
        let Some(entry) = meta.as_ref().and_then(|m| m.entries.get(key)).cloned() else {
            return Ok(Lookup::Miss(Miss { meta }));
        };
        let hit = Hit {
            entry,
            meta: meta.expect("an entry comes from metadata"),
        };
        if here()? == hit.entry.outputs {
            Ok(Lookup::UpToDate(hit))
        } else {
            Ok(Lookup::Restorable(hit))
        }
    }

    /// Why `recipe`'s key missed: what changed since the task's last recorded run, cause by
    /// cause, or that it never ran with this cache. The one place a miss is explained.
    pub fn why_missed(&self, task: &str, recipe: &KeyRecipe, miss: &Miss) -> String {
        let last = miss
            .meta
            .as_ref()
            .and_then(|m| m.last_key())
            .and_then(|k| self.local.recipe(task, k));
        match last {
            Some(old) => {
                let reasons = recipe.explain_against(&old);
                if reasons.is_empty() {
                    "no entry for this key".to_string()
                } else {
                    reasons.join("; ")
                }
            }
            None => "never built with this cache".to_string(),
        }
    }

    /// Records a hit's use (its last use, the time it saved).
    pub fn record_hit(&self, task: &str, hit: &Hit, restored: bool) {
        self.local
            .record_hit(task, &hit.meta, &hit.entry.key, restored);
    }

    /// Puts a hit's outputs into `staging`, every file checked against its digest, on a blocking
    /// thread. A damaged entry is evicted (with the blob found bad) and reported to the caller,
    /// which runs the task instead.
    pub async fn restore(&self, task: &str, hit: &Hit, staging: &Path) -> Result<(), CacheError> {
        let (local, task, entry, staging) = (
            self.local.clone(),
            task.to_string(),
            hit.entry.clone(),
            staging.to_path_buf(),
        );
        tokio::task::spawn_blocking(move || {
            local.restore(&task, &entry, &staging).map_err(|c| {
                local.evict(&c.task, &c.key, c.blob.as_deref());
                CacheError::Corrupt(c)
            })
        })
        .await
        .map_err(|e| CacheError::Internal(format!("restoring ended abnormally: {e}")))?
    }

    /// Saves a run's staged outputs under `recipe`'s key, on a blocking thread.
    pub async fn save(
        &self,
        task: &str,
        recipe: &KeyRecipe,
        staging: &Path,
        outputs: &Manifest,
        run: Duration,
    ) -> Result<(), CacheError> {
        let (local, task, recipe, staging, outputs) = (
            self.local.clone(),
            task.to_string(),
            recipe.clone(),
            staging.to_path_buf(),
            outputs.clone(),
        );
        tokio::task::spawn_blocking(move || {
            local
                .save(&task, &recipe, &staging, &outputs, run)
                .map(|_| ())
                .map_err(CacheError::Local)
        })
        .await
        .map_err(|e| CacheError::Internal(format!("saving ended abnormally: {e}")))?
    }

    /// Checks a record from any tier as hostile input (the boundary rules of a task's outputs).
    pub fn check_record(outputs: &Manifest) -> Result<(), String> {
        materialize::check(outputs)
    }
}

impl Hit {
    /// Turns a corrupt restore into the warning the build prints.
    pub fn corrupt_warning(c: &Corrupt) -> String {
        format!("{c}; evicted, running the task")
    }
}
