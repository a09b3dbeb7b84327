//! The local store, `.build-cache/` of one project: per task a metadata file of action results
//! (`metadata/<task>.meta.json`, with use times and hits), the recipe each key came from beside
//! it, and the content blobs those results name in `artifacts/sha256/` (see [`Cas`]). Blobs are
//! written first and made durable, then the metadata that names them, under a file lock; every
//! restore re-hashes every blob.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::cas::{BlobError, Cas};
use super::facade::blocking;
use super::metadata::{Entry, METADATA_FORMAT, TaskMetadata};
use super::ownership::{self, OWN_ENTRIES, Ownership, is_safe_file_name, own_folder};
use super::storage::{ActionRecord, BlobRead, BlobRef, BlobWrite, Storage};
use super::uses::{self, Use};
use super::{CacheError, Corrupt, materialize, now, write_atomic};
use crate::error::{Error, Result};
use crate::fingerprint::{KeyRecipe, TaskKey};

/// The layout version of the cache folder; another version's content is cleared on open.
/// 3: output manifests record modes and folders. 4: outputs are content blobs, not archives.
pub const CACHE_FORMAT: u32 = 5;

/// Leftover temp files and staging folders older than this belong to no running build.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A blob no entry names is removed once it is older than this: a save writes its blobs a moment
/// before the metadata that names them, and a cleanup must not take them away in between.
const STALE_BLOB: Duration = Duration::from_secs(60);

/// An entry's last use is written at once only when it is older than this (see
/// [`LocalStore::record_hit`]).
const REFRESH_AFTER: u64 = 3600;

/// `.build-cache/` of one project.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
    cas: Cas,
}

#[derive(Debug, serde::Serialize)]
pub struct TaskStatus {
    pub task: String,
    pub entries: usize,
    /// The bytes of the blobs its entries name (a blob two tasks share counts for both).
    pub bytes: u64,
    pub last_used: Option<u64>,
    pub saved_ms: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct CacheStatus {
    pub dir: PathBuf,
    pub targets_cached: usize,
    pub bytes: u64,
    pub max_size: u64,
    pub max_age_secs: u64,
    pub tasks: Vec<TaskStatus>,
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub entries: usize,
    pub bytes: u64,
}

impl LocalStore {
    pub(crate) fn at(dir: &Path) -> LocalStore {
        LocalStore {
            dir: dir.to_path_buf(),
            cas: Cas::new(dir.join("artifacts").join("sha256")),
        }
    }

    /// Makes sure `dir` is a cache folder of ours before anything is written in it (see
    /// [`ownership`](super::ownership)).
    pub fn claim(dir: &Path) -> Result<()> {
        ownership::claim(dir)
    }

    /// The cache at `dir` when there is one (and it is ours); None when `dir` is absent or
    /// empty, so that reading the cache's status creates nothing.
    pub fn existing(dir: &Path) -> Result<Option<LocalStore>> {
        match ownership::ownership(dir)? {
            Ownership::Ours => LocalStore::open(dir).map(Some),
            Ownership::Free => Ok(None),
        }
    }

    /// Opens (creating) the cache at `dir`, once it is ours; a cache of another format is
    /// cleared first.
    pub fn open(dir: &Path) -> Result<LocalStore> {
        ownership::claim(dir)?;
        let store = LocalStore::at(dir);
        for sub in ["artifacts", "metadata", "tmp"] {
            own_folder(dir, sub)?;
        }
        let version = dir.join("VERSION");
        let want = CACHE_FORMAT.to_string();
        match std::fs::read_to_string(&version) {
            Ok(v) if v.trim() == want => {}
            Ok(v) => {
                eprintln!(
                    "warning: the cache at {} has format {}, this flamenco-build uses {want}: clearing it",
                    dir.display(),
                    v.trim()
                );
                store.clear()?;
                write_atomic(&version, want.as_bytes())
                    .map_err(Error::io("cannot write", &version))?;
            }
            Err(_) => write_atomic(&version, want.as_bytes())
                .map_err(Error::io("cannot write", &version))?,
        }
        Ok(store)
    }

    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where builds stage outputs before placing them (same file system as the cache).
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn stat_cache_path(&self) -> PathBuf {
        self.dir.join("stat-cache.json")
    }

    /// The cache-wide lock, held for metadata updates, renames into place and eviction. The
    /// kernel drops it when the holder dies, so a killed build never blocks the next one.
    pub fn lock(&self) -> Result<File> {
        let path = self.dir.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("cannot open the cache lock", &path))?;
        f.lock()
            .map_err(Error::io("cannot take the cache lock", &path))?;
        Ok(f)
    }

    fn meta_path(&self, task: &str) -> PathBuf {
        self.dir.join("metadata").join(format!("{task}.meta.json"))
    }

    fn recipes_dir(&self, task: &str) -> PathBuf {
        self.dir.join("metadata").join(format!("{task}.recipes"))
    }

    fn recipe_path(&self, task: &str, key: &TaskKey) -> PathBuf {
        self.recipes_dir(task).join(format!("{key}.json"))
    }

    /// The recipe an entry's key was computed from, for explaining a later miss.
    pub fn recipe(&self, task: &str, key: &TaskKey) -> Option<KeyRecipe> {
        let bytes = std::fs::read(self.recipe_path(task, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The metadata of a task as stored: None when there is none, Err when it is not valid
    /// metadata for `task`. Takes no lock (files are only ever replaced by rename).
    fn read_meta(&self, task: &str) -> std::result::Result<Option<TaskMetadata>, String> {
        let path = self.meta_path(task);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot be read: {e}")),
        };
        match serde_json::from_slice::<TaskMetadata>(&bytes) {
            Ok(m) if m.format == METADATA_FORMAT && m.task == task => Ok(Some(m)),
            Ok(_) => Err(format!(
                "is not metadata of `{task}` in format {METADATA_FORMAT}"
            )),
            Err(e) => Err(format!("is not valid JSON metadata ({e})")),
        }
    }

    /// The metadata of a task; a file that is not valid metadata is reported, evicted with the
    /// task's recipes, and treated as absent.
    pub fn load(&self, task: &str) -> Option<TaskMetadata> {
        match self.read_meta(task) {
            Ok(m) => m,
            Err(why) => {
                let path = self.meta_path(task);
                eprintln!(
                    "warning: corrupt cache metadata {} {why}: evicted",
                    path.display()
                );
                if let Ok(_lock) = self.lock() {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_dir_all(self.recipes_dir(task));
                }
                None
            }
        }
    }

    fn read_files(&self, files: &[BlobRead]) -> Result<(), BlobError> {
        for f in files {
            // A stopped build does not finish a restore: the caller throws the staging away.
            if crate::interrupt::requested() {
                return Err(BlobError::Interrupted);
            }
            self.cas
                .copy_to(&f.blob.sha256, f.blob.size, &f.to, f.mode)?;
        }
        Ok(())
    }

    /// Keeps the recipe a key was computed from, apart from the metadata: only `--explain` reads
    /// it, and the metadata every build reads stays small however many entries a task has.
    pub(crate) fn save_recipe(&self, task: &str, key: &TaskKey, recipe: &KeyRecipe) -> Result<()> {
        let dir = self.recipes_dir(task);
        std::fs::create_dir_all(&dir)
            .map_err(Error::io("cannot create the recipe folder", &dir))?;
        let path = self.recipe_path(task, key);
        let json = serde_json::to_vec(recipe).expect("a recipe serialises");
        write_atomic(&path, &json).map_err(Error::io("cannot write the key recipe", &path))
    }

    fn write_files(&self, writes: &[BlobWrite]) -> Result<()> {
        for w in writes {
            self.cas
                .put(&w.from, &w.blob.sha256, w.blob.size)
                .map_err(|e| blob_io(e, &w.from))?;
        }
        self.cas.sync();
        Ok(())
    }

    /// Records `record` under `key` (the lock held by the caller).
    fn put_entry(&self, task: &str, key: &TaskKey, record: &ActionRecord) -> Result<Entry> {
        let mut meta = self
            .read_meta(task)
            .ok()
            .flatten()
            .unwrap_or_else(|| TaskMetadata::new(task));
        let entry = Entry::new(key.clone(), record.clone(), now());
        meta.entries.insert(key.clone(), entry.clone());
        meta.last = Some(key.clone());
        self.write_meta(task, &meta)?;
        Ok(entry)
    }

    fn write_meta(&self, task: &str, meta: &TaskMetadata) -> Result<()> {
        let path = self.meta_path(task);
        let dir = path.parent().expect("metadata lies in a folder");
        std::fs::create_dir_all(dir).map_err(Error::io("cannot create the cache folder", dir))?;
        let bytes = serde_json::to_vec_pretty(meta).expect("metadata serialises");
        write_atomic(&path, &bytes).map_err(Error::io("cannot write cache metadata", &path))
    }

    /// Records that an entry was used (restored or up to date) in its metadata, as Go's build
    /// cache does: only when the task's last key changes or the entry's last use is over an hour
    /// old, so a no-change build rewrites nothing. Its hits are counted through the journal of
    /// uses ([`LocalStore::note_uses`]). `meta` is what [`LocalStore::load`] just gave for
    /// `task`: it is read again only to write.
    pub fn record_hit(&self, task: &str, meta: &TaskMetadata, key: &TaskKey) {
        let Some(e) = meta.entries.get(key) else {
            return;
        };
        let stale = now().saturating_sub(e.last_used) > REFRESH_AFTER;
        if meta.last.as_ref() == Some(key) && !stale {
            return;
        }
        let Ok(_lock) = self.lock() else { return };
        let Ok(Some(mut meta)) = self.read_meta(task) else {
            return;
        };
        if let Some(e) = meta.entries.get_mut(key) {
            e.last_used = e.last_used.max(now());
        }
        meta.last = Some(key.clone());
        if let Err(e) = self.write_meta(task, &meta) {
            eprintln!("warning: {e}");
        }
    }

    fn uses_path(&self) -> PathBuf {
        self.dir.join("metadata").join("uses.jsonl")
    }

    /// Appends a build's hits to the journal of uses, in one write: cleanup and `cache-status`
    /// count them, and cleanup refreshes the entries' last use from them.
    pub fn note_uses(&self, used: &[Use]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let path = self.uses_path();
        uses::append(&path, used).map_err(Error::io("cannot record the cache's use", &path))
    }

    /// Removes one entry; a blob found damaged goes with it (so the next save writes it anew).
    /// Other blobs stay for the entries that share them; cleanup removes the unnamed ones.
    pub fn evict(&self, task: &str, key: &TaskKey, bad_blob: Option<&str>) {
        let Ok(_lock) = self.lock() else { return };
        if let Some(b) = bad_blob {
            self.cas.remove(b);
        }
        if let Ok(Some(mut meta)) = self.read_meta(task) {
            if meta.entries.remove(key).is_some() {
                let _ = std::fs::remove_file(self.recipe_path(task, key));
            }
            if meta.last.as_ref() == Some(key) {
                meta.last = None;
            }
            if meta.entries.is_empty() {
                let _ = std::fs::remove_file(self.meta_path(task));
            } else if let Err(e) = self.write_meta(task, &meta) {
                eprintln!("warning: {e}");
            }
        }
    }

    /// The names of the tasks with metadata.
    pub fn tasks(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("metadata"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".meta.json"))
                    .filter(|t| is_safe_file_name(t))
                    .map(String::from)
            })
            .collect();
        v.sort();
        v
    }

    /// Every task's metadata that can be read, by task.
    fn all_meta(&self) -> BTreeMap<String, TaskMetadata> {
        self.tasks()
            .into_iter()
            .filter_map(|t| self.read_meta(&t).ok().flatten().map(|m| (t, m)))
            .collect()
    }

    pub fn status(&self, max_size: u64, max_age: Duration) -> CacheStatus {
        let mut metas: BTreeMap<String, TaskMetadata> = self
            .tasks()
            .into_iter()
            .filter_map(|t| self.load(&t).map(|m| (t, m)))
            .collect();
        uses::fold(&mut metas, &uses::read(&self.uses_path()));
        let tasks: Vec<TaskStatus> = metas
            .into_values()
            .map(|m| TaskStatus {
                task: m.task.clone(),
                entries: m.entries.len(),
                bytes: unique_blob_bytes(m.entries.values()),
                last_used: m.entries.values().map(|e| e.last_used).max(),
                saved_ms: m.entries.values().map(|e| e.saved_ms).sum(),
            })
            .collect();
        CacheStatus {
            dir: self.dir.clone(),
            targets_cached: tasks.iter().filter(|t| t.entries > 0).count(),
            bytes: OWN_ENTRIES
                .iter()
                .map(|e| dir_size(&self.dir.join(e)))
                .sum(),
            max_size,
            max_age_secs: max_age.as_secs(),
            tasks,
        }
    }

    /// Whether the last cleanup is older than `every` (or never happened).
    pub fn gc_due(&self, every: Duration) -> bool {
        std::fs::metadata(self.dir.join("last-gc"))
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() > every)
            .unwrap_or(true)
    }

    /// Folds the journal of uses into the entries, drops entries unused for `max_age`, then the
    /// least recently used until the blobs the rest name fit in `max_size`; then removes blobs
    /// no entry names, and stale temp files.
    pub fn gc(&self, max_size: u64, max_age: Duration) -> Result<GcReport> {
        let _lock = self.lock()?;
        let _ = write_atomic(&self.dir.join("last-gc"), b"");
        let mut metas = self.all_meta();
        let mut changed = uses::fold(&mut metas, &uses::read(&self.uses_path()));
        let mut report = GcReport::default();
        let doomed = pick_doomed(&metas, max_size, max_age, now());
        for (task, key) in &doomed {
            let m = metas.get_mut(task).expect("loaded");
            m.entries.remove(key);
            let _ = std::fs::remove_file(self.recipe_path(task, key));
            if m.last.as_ref() == Some(key) {
                m.last = None;
            }
            report.entries += 1;
            changed.insert(task.clone());
        }
        for (task, m) in metas.iter().filter(|(t, _)| changed.contains(*t)) {
            if m.entries.is_empty() {
                let _ = std::fs::remove_file(self.meta_path(task));
                let _ = std::fs::remove_dir_all(self.recipes_dir(task));
            } else {
                self.write_meta(task, m)?;
            }
        }
        // Only once what it held is written: a crash before this counts its hits twice, which
        // is better than losing the last uses trimming goes by.
        let _ = std::fs::remove_file(self.uses_path());
        report.bytes = self.sweep(&metas);
        Ok(report)
    }

    /// Removes blobs no entry names and temp files of dead builds; returns the bytes removed.
    fn sweep(&self, metas: &BTreeMap<String, TaskMetadata>) -> u64 {
        let named: BTreeSet<&str> = metas
            .values()
            .flat_map(|m| m.entries.values())
            .flat_map(|e| e.outputs.values())
            .map(|d| d.sha256.as_str())
            .collect();
        let older = |t: SystemTime, than: Duration| t.elapsed().unwrap_or_default() > than;
        let mut bytes = 0;
        for (b, temp) in self.cas.list() {
            if temp && older(b.modified, STALE_TMP) {
                self.cas.remove_temp(&b.sha256);
            } else if !temp && !named.contains(b.sha256.as_str()) && older(b.modified, STALE_BLOB) {
                bytes += b.size;
                self.cas.remove(&b.sha256);
            }
        }
        for f in std::fs::read_dir(self.tmp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let modified = f.metadata().and_then(|m| m.modified());
            if modified.is_ok_and(|t| older(t, STALE_TMP)) {
                // Never through a link: a staging folder is a folder of ours, anything else a file.
                let _ = match f.file_type() {
                    Ok(t) if t.is_dir() => std::fs::remove_dir_all(f.path()),
                    _ => std::fs::remove_file(f.path()),
                };
            }
        }
        bytes
    }

    /// Re-hashes every blob the entries name, each once; evicts the entries that name a bad or
    /// missing one (and the bad blob). Returns (entries checked, the bad ones).
    pub fn verify(&self) -> Result<(usize, Vec<Corrupt>)> {
        let metas = self.all_meta();
        let mut bad_blobs: HashMap<String, String> = HashMap::new();
        let mut checked_blobs: BTreeSet<String> = BTreeSet::new();
        let scratch = tempfile::Builder::new()
            .prefix("verify-")
            .tempdir_in(self.tmp_dir())
            .map_err(Error::io("cannot create a scratch folder", self.tmp_dir()))?;
        let mut checked = 0;
        let mut bad = Vec::new();
        for (task, meta) in &metas {
            for entry in meta.entries.values() {
                checked += 1;
                let mut why = materialize::check(&entry.outputs).err();
                for b in entry.record().blobs() {
                    if why.is_some() {
                        break;
                    }
                    if checked_blobs.insert(b.sha256.clone()) {
                        let to = scratch.path().join("blob");
                        if let Err(e) = self.cas.copy_to(&b.sha256, b.size, &to, 0o600) {
                            bad_blobs.insert(b.sha256.clone(), e.to_string());
                        }
                        let _ = std::fs::remove_file(&to);
                    }
                    why = bad_blobs.get(&b.sha256).cloned();
                }
                if let Some(reason) = why {
                    bad.push(Corrupt {
                        task: task.clone(),
                        key: entry.key.clone(),
                        reason,
                        blob: None,
                    });
                }
            }
        }
        for c in &bad {
            self.evict(&c.task, &c.key, None);
        }
        for b in bad_blobs.keys() {
            self.cas.remove(b);
        }
        Ok((checked, bad))
    }

    /// Removes everything the cache holds; returns (files, bytes) removed.
    pub fn clear(&self) -> Result<(u64, u64)> {
        let _lock = self.lock()?;
        let (mut files, mut bytes) = (0, 0);
        for sub in ["artifacts", "metadata", "tmp"] {
            let p = self.dir.join(sub);
            let (f, b) = count(&p);
            files += f;
            bytes += b;
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::create_dir_all(&p);
        }
        let stat = self.stat_cache_path();
        if let Ok(m) = std::fs::metadata(&stat) {
            files += 1;
            bytes += m.len();
            let _ = std::fs::remove_file(&stat);
        }
        Ok((files, bytes))
    }
}

/// The entries a cleanup removes: those unused for `max_age`, then the least recently used while
/// the blobs of the rest are over `max_size` (a blob counts once, however many entries name it).
fn pick_doomed(
    metas: &BTreeMap<String, TaskMetadata>,
    max_size: u64,
    max_age: Duration,
    t: u64,
) -> Vec<(String, TaskKey)> {
    // Per blob: its size and how many entries name it.
    let mut refs: HashMap<&str, (u64, usize)> = HashMap::new();
    let mut all: Vec<(u64, &String, &Entry)> = Vec::new();
    for (task, m) in metas {
        for e in m.entries.values() {
            all.push((e.last_used, task, e));
            for (sha, size) in entry_blobs(e) {
                refs.entry(sha).or_insert((size, 0)).1 += 1;
            }
        }
    }
    all.sort_by(|a, b| (a.0, a.1, &a.2.key).cmp(&(b.0, b.1, &b.2.key)));
    let mut total: u64 = refs.values().map(|(size, _)| size).sum();
    let mut doomed = Vec::new();
    for (used, task, e) in all {
        if t.saturating_sub(used) <= max_age.as_secs() && total <= max_size {
            continue;
        }
        for (sha, _) in entry_blobs(e) {
            let slot = refs.get_mut(sha).expect("counted");
            slot.1 -= 1;
            if slot.1 == 0 {
                total -= slot.0;
            }
        }
        doomed.push((task.clone(), e.key.clone()));
    }
    doomed
}

/// The blobs an entry names, each once: (SHA-256, size).
fn entry_blobs(e: &Entry) -> BTreeSet<(&str, u64)> {
    e.outputs
        .values()
        .filter(|d| d.link.is_none() && !d.dir)
        .map(|d| (d.sha256.as_str(), d.size))
        .collect()
}

fn unique_blob_bytes<'a>(entries: impl Iterator<Item = &'a Entry>) -> u64 {
    let blobs: BTreeSet<(&str, u64)> = entries.flat_map(entry_blobs).collect();
    blobs.iter().map(|(_, size)| size).sum()
}

fn blob_io(e: BlobError, path: &Path) -> Error {
    match e {
        BlobError::Io { what, path, source } => Error::Io {
            context: what,
            path,
            source,
        },
        other => Error::Io {
            context: "cannot store output in the cache",
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

fn count(p: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for e in ignore::WalkBuilder::new(p)
        .standard_filters(false)
        .build()
        .flatten()
    {
        if e.file_type().is_some_and(|t| t.is_file()) {
            files += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (files, bytes)
}

fn dir_size(p: &Path) -> u64 {
    count(p).1
}

/// The local store as a tier: its blocking work runs on the blocking pool, a whole batch at once.
#[async_trait::async_trait]
impl Storage for LocalStore {
    fn describe(&self) -> String {
        format!("local cache {}", self.dir.display())
    }

    async fn get_action(
        &self,
        task: &str,
        key: &TaskKey,
    ) -> std::result::Result<Option<ActionRecord>, CacheError> {
        let (me, task, key) = (self.clone(), task.to_string(), key.clone());
        blocking(move || {
            me.load(&task)
                .and_then(|m| m.entries.get(&key).map(Entry::record))
        })
        .await
    }

    async fn put_action(
        &self,
        task: &str,
        key: &TaskKey,
        record: &ActionRecord,
    ) -> std::result::Result<(), CacheError> {
        let (me, task, key, record) = (self.clone(), task.to_string(), key.clone(), record.clone());
        blocking(move || {
            let _lock = me.lock()?;
            me.put_entry(&task, &key, &record).map(|_| ())
        })
        .await??;
        Ok(())
    }

    async fn find_missing(
        &self,
        blobs: Vec<BlobRef>,
    ) -> std::result::Result<Vec<BlobRef>, CacheError> {
        let me = self.clone();
        blocking(move || {
            blobs
                .into_iter()
                .filter(|b| !me.cas.contains(&b.sha256, b.size))
                .collect()
        })
        .await
    }

    async fn write_blobs(&self, blobs: Vec<BlobWrite>) -> std::result::Result<(), CacheError> {
        let me = self.clone();
        blocking(move || me.write_files(&blobs)).await??;
        Ok(())
    }

    async fn read_blobs(&self, blobs: Vec<BlobRead>) -> std::result::Result<(), CacheError> {
        let me = self.clone();
        blocking(move || {
            me.read_files(&blobs).inspect_err(|_| {
                for b in &blobs {
                    let _ = std::fs::remove_file(&b.to);
                }
            })
        })
        .await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ownership::{TAG_SIGNATURE, is_our_tag};
    use crate::fingerprint::{FileDigest, Manifest};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn age(path: &Path, by: Duration) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - by)
            .unwrap();
    }

    #[test]
    fn an_absent_or_empty_folder_is_claimed_and_tagged() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("new");
        assert!(LocalStore::existing(&absent).unwrap().is_none());
        assert!(!absent.exists(), "looking creates nothing");
        LocalStore::open(&absent).unwrap();
        assert!(is_our_tag(
            &std::fs::read_to_string(absent.join("CACHEDIR.TAG")).unwrap()
        ));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        LocalStore::open(&empty).unwrap();
        assert!(LocalStore::existing(&empty).unwrap().is_some());
    }

    #[test]
    fn a_strangers_folder_is_refused_and_left_as_it_is() {
        // Issue 10 finding 3: the cache folder must be empty or hold our CACHEDIR.TAG before
        // anything in it is cleared or written. Failed on main before this change: `open`
        // wrote its folders and tag into it and cleared its `metadata/` (another VERSION).
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("metadata")).unwrap();
        std::fs::write(dir.path().join("metadata/theirs"), "x").unwrap();
        std::fs::write(dir.path().join("VERSION"), "7").unwrap();
        let before = names(dir.path());
        for e in [
            LocalStore::open(dir.path()).unwrap_err(),
            LocalStore::existing(dir.path()).unwrap_err(),
        ] {
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("no CACHEDIR.TAG"), "{e}");
        }
        assert_eq!(names(dir.path()), before);
        assert!(dir.path().join("metadata/theirs").exists());
        // Another program's cache tag is not ours either.
        std::fs::write(
            dir.path().join("CACHEDIR.TAG"),
            format!("{TAG_SIGNATURE}\n# tool X\n"),
        )
        .unwrap();
        let e = LocalStore::open(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("not written by flamenco-build"),
            "{e}"
        );
    }

    #[test]
    fn clearing_and_trimming_touch_only_our_own_entries() {
        // Issue 10 finding 3: `clean-cache`, trimming and temp cleanup remove only entries of the
        // cache's own layout, and follow no link. Failed on main before this change: a link in
        // `artifacts/` was followed by the orphan sweep, which removed what it points to.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        let cache = LocalStore::open(&root).unwrap();
        let sha = |c: char| c.to_string().repeat(64);
        let blobs = root.join("artifacts/sha256");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join(sha('e')), "not ours").unwrap();
        std::fs::create_dir_all(&blobs).unwrap();
        std::os::unix::fs::symlink(&elsewhere, blobs.join("ee")).unwrap();
        std::fs::create_dir(blobs.join("aa")).unwrap();
        std::fs::write(blobs.join("aa/notes.txt"), "x").unwrap();
        std::fs::write(blobs.join("aa").join(sha('a')), "x").unwrap();
        std::fs::write(root.join("README"), "mine").unwrap();
        let old = 2 * STALE_TMP;
        for f in [
            blobs.join("aa/notes.txt"),
            blobs.join("aa").join(sha('a')),
            elsewhere.join(sha('e')),
        ] {
            age(&f, old);
        }
        cache.gc(u64::MAX, Duration::from_secs(3600)).unwrap();
        assert!(elsewhere.join(sha('e')).exists(), "a link is not followed");
        assert!(blobs.join("aa/notes.txt").exists(), "not one of our names");
        assert!(
            !blobs.join("aa").join(sha('a')).exists(),
            "a blob no entry names"
        );
        cache.clear().unwrap();
        assert!(root.join("README").exists());
        assert!(elsewhere.join(sha('e')).exists());
        assert_eq!(names(&root.join("artifacts")), Vec::<String>::new());
    }

    #[test]
    fn metadata_names_that_are_not_task_names_are_ignored() {
        // Issue 10 finding 5: `..meta.json` would be the metadata of a task `.`; no such name
        // is ever read, evicted or counted.
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("metadata/..meta.json"), "{").unwrap();
        assert!(cache.tasks().is_empty());
        let _ = cache.status(u64::MAX, Duration::from_secs(3600));
        assert!(dir.path().join("metadata/..meta.json").exists());
    }

    fn entry(key: &str, used: u64, blobs: &[(&str, u64)]) -> Entry {
        let outputs: Manifest = blobs
            .iter()
            .enumerate()
            .map(|(i, (sha, size))| {
                (
                    format!("o/{i}"),
                    FileDigest {
                        sha256: sha.to_string(),
                        size: *size,
                        executable: false,
                        link: None,
                        mode: Some(0o644),
                        dir: false,
                    },
                )
            })
            .collect();
        let mut e = Entry::new(
            TaskKey::new(key.into(), 1),
            ActionRecord {
                outputs,
                image_id: "img".into(),
                run_ms: 1,
            },
            used,
        );
        e.last_used = used;
        e
    }

    fn metas(entries: Vec<(&str, Entry)>) -> BTreeMap<String, TaskMetadata> {
        let mut m: BTreeMap<String, TaskMetadata> = BTreeMap::new();
        for (task, e) in entries {
            m.entry(task.to_string())
                .or_insert_with(|| TaskMetadata::new(task))
                .entries
                .insert(e.key.clone(), e);
        }
        m
    }

    #[test]
    fn trimming_keeps_what_the_last_build_used() {
        // Issue 16: an up-to-date hit rewrites nothing within the hour, so its entry's stored
        // last use is as old as the entries a change replaced. Its use, noted in the journal,
        // must still count when the build that made it trims the cache. Failed before the
        // journal: `a` and `b` (hits, 1 MB each) went first, alphabetically, and `w`'s old entry
        // stayed.
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalStore::open(dir.path()).unwrap();
        let t0 = now() - 600;
        let mb = 1 << 20;
        let old = [
            ("a", entry("ka", t0, &[("a1", mb)])),
            ("b", entry("kb", t0, &[("b1", mb)])),
            ("w", entry("kw1", t0, &[("w1", mb)])),
        ];
        for (task, e) in old {
            let mut m = TaskMetadata::new(task);
            m.last = Some(e.key.clone());
            m.entries.insert(e.key.clone(), e);
            cache.write_meta(task, &m).unwrap();
        }
        // The next build: `a` and `b` up to date (their use is within the hour: nothing is
        // written), `w` rebuilt.
        for task in ["a", "b"] {
            let meta = cache.load(task).unwrap();
            let key = meta.last.clone().unwrap();
            cache.record_hit(task, &meta, &key);
            assert_eq!(cache.load(task).unwrap().entries[&key].last_used, t0);
        }
        let mut m = cache.load("w").unwrap();
        let new = entry("kw2", now(), &[("w2", mb)]);
        m.entries.insert(new.key.clone(), new);
        cache.write_meta("w", &m).unwrap();
        let t = now();
        let used: Vec<Use> = [("a", "ka"), ("b", "kb")]
            .iter()
            .map(|(task, k)| Use {
                task: task.to_string(),
                key: TaskKey::new(k.to_string(), 1),
                t,
                saved_ms: 1,
            })
            .collect();
        cache.note_uses(&used).unwrap();
        let report = cache.gc(3 * mb, Duration::from_secs(86400)).unwrap();
        assert_eq!(report.entries, 1);
        let keys = |task: &str| -> Vec<String> {
            let m = cache.load(task).unwrap();
            m.entries.keys().map(|k| k.hash.clone()).collect()
        };
        assert_eq!(keys("a"), ["ka"]);
        assert_eq!(keys("b"), ["kb"]);
        assert_eq!(keys("w"), ["kw2"]);
        // The journal is folded in: the hits counted, the last use refreshed, the journal gone.
        let e = &cache.load("a").unwrap().entries[&TaskKey::new("ka".into(), 1)];
        assert_eq!((e.hits, e.saved_ms, e.last_used), (1, 1, t));
        assert!(!cache.uses_path().exists());
    }

    #[test]
    fn cache_status_counts_hits_not_yet_folded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalStore::open(dir.path()).unwrap();
        let mut m = TaskMetadata::new("a");
        let e = entry("ka", 100, &[("a1", 10)]);
        m.entries.insert(e.key.clone(), e);
        cache.write_meta("a", &m).unwrap();
        let u = Use {
            task: "a".into(),
            key: TaskKey::new("ka".into(), 1),
            t: 200,
            saved_ms: 2500,
        };
        cache.note_uses(&[u.clone(), u]).unwrap();
        let s = cache.status(u64::MAX, Duration::from_secs(3600));
        assert_eq!(s.tasks.len(), 1);
        assert_eq!(
            (s.tasks[0].saved_ms, s.tasks[0].last_used),
            (5000, Some(200))
        );
        assert!(cache.uses_path().exists(), "status writes nothing");
    }

    #[test]
    fn cleanup_counts_a_shared_blob_once_and_drops_the_least_recently_used() {
        let m = metas(vec![
            ("a", entry("k1", 10, &[("x", 100), ("y", 50)])),
            ("b", entry("k2", 20, &[("x", 100)])),
            ("a", entry("k3", 30, &[("z", 100)])),
        ]);
        // 250 bytes in all; dropping k1 frees only y (x is shared with k2).
        let doomed = pick_doomed(&m, 200, Duration::from_secs(1000), 40);
        assert_eq!(
            doomed,
            vec![("a".to_string(), TaskKey::new("k1".into(), 1))]
        );
        let doomed = pick_doomed(&m, 100, Duration::from_secs(1000), 40);
        assert_eq!(doomed.len(), 2, "{doomed:?}");
        let doomed = pick_doomed(&m, 1000, Duration::from_secs(25), 40);
        assert_eq!(
            doomed,
            vec![("a".to_string(), TaskKey::new("k1".into(), 1))]
        );
    }
}
