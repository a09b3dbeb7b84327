//! The one door to the cache: look a task's key up, restore what it names, save a run, say why a
//! key missed. Under it, tiers that each implement [`Storage`]: the local store first; remote
//! tiers (the remote-cache issue) are read through after it and written through after it, so
//! nothing above this file knows which tier answered.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::cas::BlobError;
use super::local_store::LocalStore;
use super::metadata::{Entry, TaskMetadata};
use super::storage::{ActionRecord, BlobWrite, Storage};
use super::uses::Use;
use super::{CacheError, Corrupt, materialize};
use crate::error::Result;
use crate::fingerprint::{KeyRecipe, Manifest, TaskKey};
use crate::remote::RemoteError;

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

/// The cache of one build: the local store and the remote tiers after it.
#[derive(Clone)]
pub struct Cache {
    local: LocalStore,
    /// Every tier, the local store first: read in this order, written to each that takes writes.
    tiers: Vec<Arc<dyn Storage>>,
    /// Per tier: whether this build writes to it (a remote tier is read-only unless uploads are on).
    writes: Vec<bool>,
    /// Where warnings about remote tiers go.
    warn: Option<crate::remote::Warn>,
    /// `--recache`: saves send every blob again, whatever a tier says it holds.
    recache: bool,
    /// Whether an action result a remote tier answered was refused already in this build: that is
    /// told once (an unsigned cache says so for every task).
    refused_told: Arc<std::sync::atomic::AtomicBool>,
    /// The hits of this build, of every kind, written in one go when it ends ([`Cache::flush_uses`]).
    used: Arc<std::sync::Mutex<Vec<Use>>>,
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
            writes: vec![true],
            local,
            warn: None,
            recache: false,
            refused_told: Default::default(),
            used: Default::default(),
        })
    }

    /// Saves send every blob again, so a damaged entry on a server is overwritten whole.
    pub(crate) fn recache(mut self) -> Cache {
        self.recache = true;
        self
    }

    /// Adds a remote tier after the others, read through and, when `upload`, written through;
    /// its problems are told through `warn`.
    pub(crate) fn with_remote(
        mut self,
        tier: Arc<dyn Storage>,
        upload: bool,
        warn: crate::remote::Warn,
    ) -> Cache {
        self.tiers.push(tier);
        self.writes.push(upload);
        self.warn = Some(warn);
        self
    }

    /// Tells a remote tier's problem, unless the tier is off (it said so once already).
    fn warn_remote(&self, tier: usize, what: &str, e: &CacheError) {
        if matches!(e, CacheError::TierOff) {
            return;
        }
        if let Some(warn) = &self.warn {
            let server = self.tiers[tier].describe();
            let text = match e {
                CacheError::Remote(_) => format!("remote cache: {e}; {what}"),
                _ => format!("remote cache {server}: {e}; {what}"),
            };
            warn(text);
        }
    }

    /// The server a hit came from, for messages (None for the local store).
    pub fn tier_name(&self, hit: &Hit) -> Option<String> {
        (!hit.is_local()).then(|| self.tiers[hit.tier].describe())
    }

    /// The local store, for what only it does: locking, status, cleanup, verification.
    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// Looks `key` up, the local store first, then each remote tier. `here` gives the task's
    /// outputs as they are in the workspace; it is only asked on a hit.
    pub async fn lookup<F: Future<Output = Result<Manifest>>>(
        &self,
        task: &str,
        key: &TaskKey,
        here: impl FnOnce() -> F,
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
        if here().await? == hit.entry.outputs {
            Ok(Lookup::UpToDate(hit))
        } else {
            Ok(Lookup::Restorable(hit))
        }
    }

    /// The first remote tier that holds a well-formed result for `key` whose blobs it all holds.
    async fn remote_lookup(&self, task: &str, key: &TaskKey) -> Option<Hit> {
        for (tier, storage) in self.tiers.iter().enumerate().skip(1) {
            let record = match storage.get_action(task, key).await {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e @ CacheError::Remote(RemoteError::BadAnswer { .. })) => {
                    if !self
                        .refused_told
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        let what = format!(
                            "not restored, running {task} (and any other task it answers so for)"
                        );
                        self.warn_remote(tier, &what, &e);
                    }
                    continue;
                }
                Err(e) => {
                    self.warn_remote(tier, &format!("not using it for {task}"), &e);
                    continue;
                }
            };
            if let Err(why) = materialize::check(&record.outputs) {
                let e = CacheError::Internal(format!("the result for {task} {why}"));
                self.warn_remote(tier, "not restored, running the task", &e);
                continue;
            }
            match storage.find_missing(record.blobs()).await {
                Ok(missing) if missing.is_empty() => {}
                Ok(missing) => {
                    let e = CacheError::Internal(format!(
                        "the result for {task} names {} blob(s) the server does not hold ({})",
                        missing.len(),
                        missing[0].sha256
                    ));
                    self.warn_remote(tier, "running the task", &e);
                    continue;
                }
                Err(e) => {
                    self.warn_remote(tier, &format!("not using it for {task}"), &e);
                    continue;
                }
            }
            let entry = Entry::new(key.clone(), record, super::now());
            return Some(Hit {
                entry,
                meta: None,
                tier,
            });
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

    /// Records a hit's use, of any kind (up to date, restored, or from a remote tier and kept in
    /// the local store): its last use and the run time it saved. Noted in memory; the metadata is
    /// written now only when the local entry's last use is stale (see [`LocalStore::record_hit`]).
    pub fn record_hit(&self, task: &str, hit: &Hit) {
        if let Some(meta) = &hit.meta {
            self.local.record_hit(task, meta, &hit.entry.key);
        }
        self.used.lock().expect("uses").push(Use {
            task: task.to_string(),
            key: hit.entry.key.clone(),
            t: super::now(),
            saved_ms: hit.entry.run_ms,
        });
    }

    /// Writes the hits this build made to the local store's journal of uses, in one write, before
    /// the cache is trimmed.
    pub fn flush_uses(&self) -> Result<()> {
        let used = std::mem::take(&mut *self.used.lock().expect("uses"));
        self.local.note_uses(&used)
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
                Err(CacheError::Blob(BlobError::Interrupted)) => {
                    return Err(CacheError::Blob(BlobError::Interrupted));
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
    /// each tier this build writes to the blobs it lacks and, after them, the action result that
    /// names them. A remote tier's failure is told and never fails the build.
    pub async fn save(
        &self,
        task: &str,
        recipe: &KeyRecipe,
        staging: &Path,
        outputs: &Manifest,
        run: Duration,
    ) -> Result<(), CacheError> {
        let record = ActionRecord {
            outputs: outputs.clone(),
            image_id: recipe.toolchain.clone(),
            run_ms: run.as_millis() as u64,
        };
        self.save_record(task, recipe, staging, &record, |i| self.writes[i])
            .await
    }

    /// After a restore from a remote tier: keeps the outputs in the local store too, so the next
    /// build finds them here.
    pub async fn adopt(
        &self,
        task: &str,
        recipe: &KeyRecipe,
        staging: &Path,
        hit: &Hit,
    ) -> Result<(), CacheError> {
        let record = ActionRecord {
            outputs: hit.entry.outputs.clone(),
            image_id: hit.entry.image_id.clone(),
            run_ms: hit.entry.run_ms,
        };
        self.save_record(task, recipe, staging, &record, |i| i == 0)
            .await
    }

    /// After a local hit, with uploads on: sends the entry to each remote tier that lacks it, so
    /// a CI runner that keeps its local cache still fills the shared one. `files` holds the
    /// outputs (the workspace, once they are in place).
    pub async fn share(&self, task: &str, recipe: &KeyRecipe, hit: &Hit, files: &Path) {
        // On the no-change path with no upload tier: nothing to clone, nothing to ask.
        if !hit.is_local() || !self.writes.iter().skip(1).any(|w| *w) {
            return;
        }
        let key = recipe.key();
        let record = ActionRecord {
            outputs: hit.entry.outputs.clone(),
            image_id: hit.entry.image_id.clone(),
            run_ms: hit.entry.run_ms,
        };
        for (i, tier) in self.tiers.iter().enumerate().skip(1) {
            if !self.writes[i] {
                continue;
            }
            let shared = match tier.get_action(task, &key).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) | Err(CacheError::Remote(RemoteError::BadAnswer { .. })) => {
                    save_to(tier.as_ref(), task, &key, files, &record, self.recache).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = shared {
                self.warn_remote(i, &format!("{task} was not uploaded"), &e);
            }
        }
    }

    async fn save_record(
        &self,
        task: &str,
        recipe: &KeyRecipe,
        staging: &Path,
        record: &ActionRecord,
        writes: impl Fn(usize) -> bool,
    ) -> Result<(), CacheError> {
        let key = recipe.key();
        let (local, name, r, k) = (
            self.local.clone(),
            task.to_string(),
            recipe.clone(),
            key.clone(),
        );
        blocking(move || local.save_recipe(&name, &k, &r)).await??;
        for (i, tier) in self.tiers.iter().enumerate() {
            if !writes(i) {
                continue;
            }
            match save_to(tier.as_ref(), task, &key, staging, record, self.recache).await {
                Ok(()) => {}
                Err(e) if i == 0 => return Err(e),
                Err(e) => self.warn_remote(i, &format!("{task} was not uploaded"), &e),
            }
        }
        Ok(())
    }
}

/// One tier's part of a save: the blobs it lacks, then the action result.
async fn save_to(
    tier: &dyn Storage,
    task: &str,
    key: &TaskKey,
    staging: &Path,
    record: &ActionRecord,
    every_blob: bool,
) -> Result<(), CacheError> {
    // One file per blob to read it from (many files may share a blob): looked up, not searched,
    // so an output of many files costs no more than its size.
    let file_of: HashMap<&str, &String> = record
        .outputs
        .iter()
        .filter(|(_, d)| d.link.is_none() && !d.dir)
        .map(|(rel, d)| (d.sha256.as_str(), rel))
        .collect();
    let missing = if every_blob {
        record.blobs()
    } else {
        tier.find_missing(record.blobs()).await?
    };
    let writes = missing
        .into_iter()
        .filter_map(|b| {
            let rel = *file_of.get(b.sha256.as_str())?;
            Some(BlobWrite {
                from: staging.join(rel),
                blob: b,
            })
        })
        .collect();
    tier.write_blobs(writes).await?;
    tier.put_action(task, key, record).await
}

/// Runs blocking cache work (hashing, copying, fsync) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CacheError::Internal(format!("a cache task ended abnormally: {e}")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::OutputPath;
    use crate::fingerprint::{InputFiles, KEY_FORMAT, StatCache};

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn set(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn manifest_of(root: &Path) -> Manifest {
        let files = InputFiles::output_tree(root, &[OutputPath::new("o").unwrap()]).unwrap();
        StatCache::in_memory().manifest(&files).unwrap()
    }

    fn recipe() -> KeyRecipe {
        KeyRecipe {
            format: KEY_FORMAT,
            task: "t".into(),
            run: "true".into(),
            workdir: ".".into(),
            outputs: vec!["o".into()],
            network: false,
            memory: None,
            cpus: None,
            image: "img".into(),
            toolchain: "img".into(),
            toolchain_env: Default::default(),
            env: Default::default(),
            inputs: Default::default(),
            deps: Default::default(),
            key: TaskKey::new("ab".repeat(32), 140),
        }
    }

    async fn restorable(cache: &Cache, key: &TaskKey) -> Hit {
        match cache
            .lookup("t", key, || async { Ok(Manifest::new()) })
            .await
            .unwrap()
        {
            Lookup::Restorable(hit) => hit,
            other => panic!("expected a hit to restore, got {other:?}"),
        }
    }

    // Issue 10 findings 8 and 12, kept through the move to content blobs: an entry keeps folders
    // (empty ones too), links and every mode, and its restore gives them back exactly.
    #[tokio::test]
    async fn folders_links_and_modes_survive_a_save_and_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let work = dir.path().join("work");
        let o = work.join("o");
        std::fs::create_dir_all(o.join("empty")).unwrap();
        std::fs::create_dir_all(o.join("private")).unwrap();
        for (f, mode) in [
            ("a", 0o600),
            ("b", 0o444),
            ("x", 0o755),
            ("private/p", 0o640),
        ] {
            std::fs::write(o.join(f), f).unwrap();
            set(&o.join(f), mode);
        }
        std::fs::write(o.join("same-as-a"), "a").unwrap();
        std::os::unix::fs::symlink("a", o.join("l")).unwrap();
        set(&o.join("private"), 0o700);
        set(&o.join("empty"), 0o750);
        let manifest = manifest_of(&work);
        let r = recipe();
        cache
            .save("t", &r, &work, &manifest, Duration::from_millis(5))
            .await
            .unwrap();
        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        let hit = restorable(&cache, &r.key()).await;
        cache.restore("t", &hit, &back).await.unwrap();
        for (rel, mode) in [
            ("o/a", 0o600),
            ("o/b", 0o444),
            ("o/x", 0o755),
            ("o/private", 0o700),
            ("o/private/p", 0o640),
            ("o/empty", 0o750),
        ] {
            assert_eq!(mode_of(&back.join(rel)), mode, "{rel}");
        }
        assert_eq!(manifest_of(&back), manifest);
        let blobs = cache.local().dir().join("artifacts/sha256");
        let stored: usize = std::fs::read_dir(&blobs)
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(stored, 4, "a, b, x, p; same-as-a shares a's blob");
    }

    // Issue 10 finding 1, kept through the move to content blobs: a record is hostile input; its
    // links are resolved through its own links, and nothing is written below a link.
    #[tokio::test]
    async fn an_edited_record_cannot_lead_a_restore_out() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("o/sub")).unwrap();
        std::fs::write(work.join("o/sub/f"), "f").unwrap();
        let mut manifest = manifest_of(&work);
        // The folder recorded as a link: its file would be written through the link.
        let sub = manifest.get_mut("o/sub").unwrap();
        sub.dir = false;
        sub.link = Some("../..".into());
        let r = recipe();
        let staged = manifest_of(&work);
        cache
            .save("t", &r, &work, &staged, Duration::ZERO)
            .await
            .unwrap();
        let mut hit = restorable(&cache, &r.key()).await;
        hit.entry.outputs = manifest;
        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        let err = cache.restore("t", &hit, &back).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("a symbolic link stands where a folder is expected"),
            "{err}"
        );
        assert!(!back.join("o/sub").exists());
        assert!(
            cache.local().load("t").is_none(),
            "the bad entry is evicted"
        );
    }

    // A blob damaged on disk is found on restore; the entry and that blob go, so the next save
    // stores the blob anew instead of trusting the damaged one.
    #[tokio::test]
    async fn a_damaged_blob_evicts_its_entry_and_itself() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("o")).unwrap();
        std::fs::write(work.join("o/a"), "alpha").unwrap();
        let manifest = manifest_of(&work);
        let r = recipe();
        cache
            .save("t", &r, &work, &manifest, Duration::ZERO)
            .await
            .unwrap();
        let sha = &manifest["o/a"].sha256;
        let blob = cache
            .local()
            .dir()
            .join("artifacts/sha256")
            .join(&sha[..2])
            .join(sha);
        set(&blob, 0o644);
        std::fs::write(&blob, "alphA").unwrap();
        let hit = restorable(&cache, &r.key()).await;
        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        let err = cache.restore("t", &hit, &back).await.unwrap_err();
        assert!(
            err.to_string().contains("does not match its SHA-256"),
            "{err}"
        );
        assert!(!blob.exists());
        assert!(cache.local().load("t").is_none());
        cache
            .save("t", &r, &work, &manifest, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&blob).unwrap(), b"alpha");
    }

    /// A remote tier in memory: action results and blobs in maps.
    #[derive(Default)]
    struct Memory {
        actions: std::sync::Mutex<HashMap<TaskKey, ActionRecord>>,
        blobs: std::sync::Mutex<HashMap<String, Vec<u8>>>,
    }

    #[async_trait::async_trait]
    impl Storage for Memory {
        fn describe(&self) -> String {
            "memory://".into()
        }
        async fn get_action(
            &self,
            _: &str,
            key: &TaskKey,
        ) -> Result<Option<ActionRecord>, CacheError> {
            Ok(self.actions.lock().unwrap().get(key).cloned())
        }
        async fn put_action(
            &self,
            _: &str,
            key: &TaskKey,
            r: &ActionRecord,
        ) -> Result<(), CacheError> {
            self.actions.lock().unwrap().insert(key.clone(), r.clone());
            Ok(())
        }
        async fn find_missing(
            &self,
            blobs: Vec<super::super::BlobRef>,
        ) -> Result<Vec<super::super::BlobRef>, CacheError> {
            let held = self.blobs.lock().unwrap();
            Ok(blobs
                .into_iter()
                .filter(|b| !held.contains_key(&b.sha256))
                .collect())
        }
        async fn write_blobs(&self, blobs: Vec<BlobWrite>) -> Result<(), CacheError> {
            for b in blobs {
                let bytes = std::fs::read(&b.from).unwrap();
                self.blobs.lock().unwrap().insert(b.blob.sha256, bytes);
            }
            Ok(())
        }
        async fn read_blobs(&self, blobs: Vec<super::super::BlobRead>) -> Result<(), CacheError> {
            for b in blobs {
                let bytes = self.blobs.lock().unwrap()[&b.blob.sha256].clone();
                std::fs::write(&b.to, bytes).unwrap();
                set(&b.to, b.mode);
            }
            Ok(())
        }
    }

    // Read-through, write-through: A saves into the remote tier (uploads on); B, with its own
    // empty local store, finds the key remotely, restores it, and keeps it locally, so its next
    // lookup is answered by its local store.
    #[tokio::test]
    async fn a_remote_hit_restores_and_is_kept_locally() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Arc::new(Memory::default());
        let quiet: crate::remote::Warn = Arc::new(|w| panic!("no warning expected: {w}"));
        let a = Cache::open(&dir.path().join("a")).unwrap().with_remote(
            remote.clone(),
            true,
            quiet.clone(),
        );
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("o")).unwrap();
        std::fs::write(work.join("o/f"), "content").unwrap();
        let manifest = manifest_of(&work);
        let r = recipe();
        a.save("t", &r, &work, &manifest, Duration::from_millis(7))
            .await
            .unwrap();
        assert_eq!(remote.actions.lock().unwrap().len(), 1);
        let b =
            Cache::open(&dir.path().join("b"))
                .unwrap()
                .with_remote(remote.clone(), false, quiet);
        let hit = restorable(&b, &r.key()).await;
        assert!(!hit.is_local());
        assert_eq!(b.tier_name(&hit).as_deref(), Some("memory://"));
        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        b.restore("t", &hit, &back).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(back.join("o/f")).unwrap(),
            "content"
        );
        b.adopt("t", &r, &back, &hit).await.unwrap();
        // A remote hit counts like any other: its run time saved, once kept locally.
        b.record_hit("t", &hit);
        b.flush_uses().unwrap();
        let status = b.local().status(u64::MAX, Duration::from_secs(3600));
        assert_eq!(status.tasks[0].saved_ms, 7);
        assert!(restorable(&b, &r.key()).await.is_local());
        // B is read-only: a save of its own does not reach the remote tier.
        let mut r2 = recipe();
        r2.key = TaskKey::new("ef".repeat(32), 140);
        b.save("t", &r2, &work, &manifest, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(remote.actions.lock().unwrap().len(), 1);
    }
}
