//! The one door to the cache: look a task's key up, restore what it names, save a run, say why a
//! key missed. Under it, tiers that each implement [`Storage`]: the local store first; remote
//! tiers (the remote-cache issue) are read through after it and written through after it, so
//! nothing above this file knows which tier answered.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::local_store::LocalStore;
use super::metadata::{Entry, TaskMetadata};
use super::storage::{ActionRecord, BlobWrite, Storage};
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

/// An entry found for a key: which tier holds it, and the local metadata it came from (none
/// when a remote tier answered).
#[derive(Debug)]
pub struct Hit {
    pub entry: Entry,
    meta: Option<TaskMetadata>,
    tier: usize,
}

impl Hit {
    /// Whether the local store answered (else a remote tier did).
    pub fn is_local(&self) -> bool {
        self.tier == 0
    }
}

/// A miss; [`Cache::why_missed`] says why, when anyone asks.
#[derive(Debug)]
pub struct Miss {
    meta: Option<TaskMetadata>,
}

/// The cache of one build: the local store and, later, remote tiers.
#[derive(Clone)]
pub struct Cache {
    local: LocalStore,
    /// Every tier, the local store first: read in this order, written to each.
    tiers: Vec<Arc<dyn Storage>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tiers: Vec<String> = self.tiers.iter().map(|t| t.describe()).collect();
        f.debug_struct("Cache").field("tiers", &tiers).finish()
    }
}

impl Cache {
    /// Opens (creating) the local store at `dir`.
    pub fn open(dir: &Path) -> Result<Cache> {
        let local = LocalStore::open(dir)?;
        Ok(Cache {
            tiers: vec![Arc::new(local.clone())],
            local,
        })
    }

    /// The local store, for what only it does: locking, status, cleanup, verification.
    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// Looks `key` up, the local store first, then each remote tier. `here` gives the task's
    /// outputs as they are in the workspace; it is only asked on a hit.
    pub async fn lookup(
        &self,
        task: &str,
        key: &TaskKey,
        here: impl FnOnce() -> Result<Manifest>,
    ) -> Result<Lookup> {
        // The local store's metadata is one small file: read here, it costs less than a hop to
        // the blocking pool, and a no-change build reads nothing else.
        let meta = self.local.load(task);
        let hit = match meta.as_ref().and_then(|m| m.entries.get(key)).cloned() {
            Some(entry) => Hit {
                entry,
                meta,
                tier: 0,
            },
            None => match self.remote_lookup(task, key).await {
                Some(hit) => hit,
                None => return Ok(Lookup::Miss(Miss { meta })),
            },
        };
        if here()? == hit.entry.outputs {
            Ok(Lookup::UpToDate(hit))
        } else {
            Ok(Lookup::Restorable(hit))
        }
    }

    /// The first remote tier that holds a well-formed result for `key`.
    async fn remote_lookup(&self, task: &str, key: &TaskKey) -> Option<Hit> {
        for (tier, storage) in self.tiers.iter().enumerate().skip(1) {
            match storage.get_action(task, key).await {
                Ok(Some(record)) if materialize::check(&record.outputs).is_ok() => {
                    let entry = Entry::new(key.clone(), record, super::now());
                    return Some(Hit {
                        entry,
                        meta: None,
                        tier,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{}: {e}", storage.describe()),
            }
        }
        None
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
        if let Some(meta) = &hit.meta {
            self.local
                .record_hit(task, meta, &hit.entry.key, restored);
        }
    }

    /// Puts a hit's outputs into `staging`: the record checked as hostile input, its folders and
    /// links laid out, its files read from the tier's blobs (each checked against its digest),
    /// the folders' modes set. A damaged entry is evicted (with the blob found bad) and reported
    /// to the caller, which runs the task instead.
    pub async fn restore(&self, task: &str, hit: &Hit, staging: &Path) -> Result<(), CacheError> {
        let corrupt = |reason: String, blob: Option<String>| Corrupt {
            task: task.to_string(),
            key: hit.entry.key.clone(),
            reason,
            blob,
        };
        let outputs = Arc::new(hit.entry.outputs.clone());
        let dir = staging.to_path_buf();
        let files = blocking({
            let outputs = outputs.clone();
            move || materialize::check(&outputs).and_then(|()| materialize::lay_out(&outputs, &dir))
        })
        .await?
        .map_err(|r| corrupt(r, None));
        let result = match files {
            Ok(files) => match self.tiers[hit.tier].read_blobs(files).await {
                Ok(()) => {
                    let dir = staging.to_path_buf();
                    blocking(move || materialize::finish(&outputs, &dir))
                        .await?
                        .map_err(|r| corrupt(r, None))
                }
                Err(CacheError::Blob(e)) => Err(corrupt(e.to_string(), e.bad_blob())),
                Err(e) => return Err(e),
            },
            Err(c) => Err(c),
        };
        result.map_err(|c| {
            if hit.is_local() {
                self.local.evict(&c.task, &c.key, c.blob.as_deref());
            }
            CacheError::Corrupt(c)
        })
    }

    /// Saves a run's staged outputs under `recipe`'s key: the recipe (for `--explain`), then in
    /// each tier the blobs it lacks and, after them, the action result that names them.
    pub async fn save(
        &self,
        task: &str,
        recipe: &KeyRecipe,
        staging: &Path,
        outputs: &Manifest,
        run: Duration,
    ) -> Result<(), CacheError> {
        let key = recipe.key();
        let record = ActionRecord {
            outputs: outputs.clone(),
            image_id: recipe.toolchain.clone(),
            run_ms: run.as_millis() as u64,
        };
        let (local, name, r, k) = (self.local.clone(), task.to_string(), recipe.clone(), key.clone());
        blocking(move || local.save_recipe(&name, &k, &r)).await??;
        for tier in &self.tiers {
            let missing = tier.find_missing(record.blobs()).await?;
            let writes = missing
                .into_iter()
                .filter_map(|b| {
                    let rel = outputs.iter().find(|(_, d)| d.sha256 == b.sha256)?.0;
                    Some(BlobWrite {
                        from: staging.join(rel),
                        blob: b,
                    })
                })
                .collect();
            tier.write_blobs(writes).await?;
            tier.put_action(task, &key, &record).await?;
        }
        Ok(())
    }

    /// Checks a record from any tier as hostile input (the boundary rules of a task's outputs).
    pub fn check_record(outputs: &Manifest) -> Result<(), String> {
        materialize::check(outputs)
    }
}

/// Runs blocking cache work (hashing, copying, fsync) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CacheError::Internal(format!("a cache task ended abnormally: {e}")))
}
