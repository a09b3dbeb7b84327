//! The local store: lookup, restore, save, eviction, status and cleanup of `.build-cache/`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::metadata::{Entry, METADATA_FORMAT, TaskMetadata};
use super::{archive, sync_dir, write_atomic};
use crate::error::{Error, Result};
use crate::fingerprint::{KeyRecipe, Manifest, TaskKey};

/// The layout version of the cache folder; another version's content is cleared on open.
/// 3: output manifests record modes and folders.
pub const CACHE_FORMAT: u32 = 3;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by flamenco-build.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The first line of every cache directory tag.
const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// The entries a cache folder of ours holds: all that `clean-cache`, trimming and temp cleanup
/// ever touch. Anything else in the folder is left alone.
const OWN_ENTRIES: [&str; 9] = [
    "CACHEDIR.TAG",
    "VERSION",
    "lock",
    "last-gc",
    "stat-cache.json",
    "artifacts",
    "metadata",
    "tmp",
    "runs",
];

/// Leftover temp files and staging folders older than this belong to no running build.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A cache entry that cannot be trusted: why, for the warning.
#[derive(Debug)]
pub struct Corrupt {
    pub task: String,
    pub key: TaskKey,
    pub reason: String,
}

/// `.build-cache/` of one project.
#[derive(Debug, Clone)]
pub struct LocalCache {
    dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct TaskStatus {
    pub task: String,
    pub entries: usize,
    pub bytes: u64,
    pub last_used: Option<u64>,
    pub saved_ms: u64,
}

#[derive(Debug, Serialize)]
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

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LocalCache {
    /// Makes sure `dir` is a cache folder of ours before anything is written in it: one that
    /// holds our CACHEDIR.TAG, or is empty or absent (then it is created and tagged). A folder
    /// holding anything else is refused: clearing or trimming it would delete a stranger's files.
    pub fn claim(dir: &Path) -> Result<()> {
        if ownership(dir)? == Ownership::Ours {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(Error::io("cannot create the cache folder", dir))?;
        let tag = dir.join("CACHEDIR.TAG");
        write_atomic(&tag, CACHEDIR_TAG.as_bytes()).map_err(Error::io("cannot write", &tag))
    }

    /// The cache at `dir` when there is one (and it is ours); None when `dir` is absent or
    /// empty, so that reading the cache's status creates nothing.
    pub fn existing(dir: &Path) -> Result<Option<LocalCache>> {
        match ownership(dir)? {
            Ownership::Ours => LocalCache::open(dir).map(Some),
            Ownership::Free => Ok(None),
        }
    }

    /// Opens (creating) the cache at `dir`, once it is ours ([`LocalCache::claim`]).
    pub fn open(dir: &Path) -> Result<LocalCache> {
        LocalCache::claim(dir)?;
        let cache = LocalCache {
            dir: dir.to_path_buf(),
        };
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
                let _lock = cache.lock()?;
                for sub in ["artifacts", "metadata"] {
                    let _ = std::fs::remove_dir_all(dir.join(sub));
                    let _ = std::fs::create_dir_all(dir.join(sub));
                }
                let _ = std::fs::remove_file(dir.join("stat-cache.json"));
                write_atomic(&version, want.as_bytes())
                    .map_err(Error::io("cannot write", &version))?;
            }
            Err(_) => write_atomic(&version, want.as_bytes())
                .map_err(Error::io("cannot write", &version))?,
        }
        Ok(cache)
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

    fn recipe_path(&self, task: &str, key: &TaskKey) -> PathBuf {
        self.dir
            .join("metadata")
            .join(format!("{task}.recipes"))
            .join(format!("{key}.json"))
    }

    /// The recipe an entry's key was computed from, for explaining a later miss.
    pub fn recipe(&self, task: &str, key: &TaskKey) -> Option<KeyRecipe> {
        let bytes = std::fs::read(self.recipe_path(task, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn artifact_dir(&self, task: &str) -> PathBuf {
        self.dir.join("artifacts").join(task)
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
    /// task's archives, and treated as absent.
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
                    let _ = std::fs::remove_dir_all(self.artifact_dir(task));
                    let _ = std::fs::remove_dir_all(
                        self.dir.join("metadata").join(format!("{task}.recipes")),
                    );
                }
                None
            }
        }
    }

    /// Extracts an entry into `staging`, every file checked against the manifest.
    pub fn restore(
        &self,
        task: &str,
        entry: &Entry,
        staging: &Path,
    ) -> std::result::Result<(), Corrupt> {
        let corrupt = |reason: String| Corrupt {
            task: task.to_string(),
            key: entry.key.clone(),
            reason,
        };
        if !is_safe_file_name(&entry.archive) {
            return Err(corrupt(format!(
                "names an unsafe archive `{}`",
                entry.archive
            )));
        }
        let path = self.artifact_dir(task).join(&entry.archive);
        let f = File::open(&path).map_err(|e| {
            corrupt(format!(
                "its archive {} cannot be opened: {e}",
                path.display()
            ))
        })?;
        archive::restore(std::io::BufReader::new(f), &entry.outputs, staging)
            .map_err(|r| corrupt(format!("its archive {} {r}", path.display())))
    }

    /// Saves the outputs staged for `key`: the archive first (temp name, fsync, rename), then
    /// the metadata that points at it, both under the lock.
    pub fn save(
        &self,
        task: &str,
        recipe: &KeyRecipe,
        staging: &Path,
        outputs: &Manifest,
        run: Duration,
    ) -> Result<Entry> {
        let key = recipe.key();
        let dir = self.artifact_dir(task);
        std::fs::create_dir_all(&dir).map_err(Error::io("cannot create the cache folder", &dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(Error::io("cannot create a temp file in the cache", &dir))?;
        archive::write(staging, outputs, std::io::BufWriter::new(tmp.as_file()))
            .map_err(Error::io("cannot write the cache archive", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(Error::io("cannot write the cache archive", tmp.path()))?;
        let archive_size = tmp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
        let name = format!("{key}.tar.zst");
        let _lock = self.lock()?;
        tmp.persist(dir.join(&name)).map_err(|e| {
            Error::io("cannot move the cache archive into place", dir.join(&name))(e.error)
        })?;
        sync_dir(&dir);
        let mut meta = self
            .read_meta(task)
            .ok()
            .flatten()
            .unwrap_or_else(|| TaskMetadata::new(task));
        let t = now();
        let entry = Entry {
            key: key.clone(),
            outputs: outputs.clone(),
            archive: name,
            archive_size,
            image_id: recipe.toolchain.clone(),
            created: t,
            last_used: t,
            run_ms: run.as_millis() as u64,
            hits: 0,
            saved_ms: 0,
        };
        // The recipe (every input's digest) is kept apart: only `--explain` reads it, and the
        // metadata every build reads stays small however many entries a task has.
        let recipe_path = self.recipe_path(task, &key);
        if let Some(dir) = recipe_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let recipe_json = serde_json::to_vec(recipe).expect("a recipe serialises");
        write_atomic(&recipe_path, &recipe_json)
            .map_err(Error::io("cannot write the key recipe", &recipe_path))?;
        meta.entries.insert(key.clone(), entry.clone());
        meta.last = Some(key);
        self.write_meta(task, &meta)?;
        Ok(entry)
    }

    fn write_meta(&self, task: &str, meta: &TaskMetadata) -> Result<()> {
        let path = self.meta_path(task);
        let bytes = serde_json::to_vec_pretty(meta).expect("metadata serialises");
        write_atomic(&path, &bytes).map_err(Error::io("cannot write cache metadata", &path))
    }

    /// Records that an entry was used (restored or up to date). Cheap when nothing changes: the
    /// metadata is only rewritten when the task's last key changes or its use time is stale.
    /// `meta` is what [`LocalCache::load`] just gave for `task`: it is read again only to write.
    pub fn record_hit(&self, task: &str, meta: &TaskMetadata, key: &TaskKey, restored: bool) {
        let Some(e) = meta.entries.get(key) else {
            return;
        };
        let stale = now().saturating_sub(e.last_used) > 3600;
        if meta.last.as_ref() == Some(key) && !stale && !restored {
            return;
        }
        let Ok(_lock) = self.lock() else { return };
        let Ok(Some(mut meta)) = self.read_meta(task) else {
            return;
        };
        if let Some(e) = meta.entries.get_mut(key) {
            e.last_used = now();
            e.hits += 1;
            e.saved_ms += e.run_ms;
        }
        meta.last = Some(key.clone());
        if let Err(e) = self.write_meta(task, &meta) {
            eprintln!("warning: {e}");
        }
    }

    /// Removes one entry (its archive and its metadata record).
    pub fn evict(&self, task: &str, key: &TaskKey) {
        let Ok(_lock) = self.lock() else { return };
        if let Ok(Some(mut meta)) = self.read_meta(task) {
            if let Some(e) = meta.entries.remove(key)
                && is_safe_file_name(&e.archive)
            {
                let _ = std::fs::remove_file(self.artifact_dir(task).join(&e.archive));
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
        let _ = std::fs::remove_file(self.artifact_dir(task).join(format!("{key}.tar.zst")));
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

    pub fn status(&self, max_size: u64, max_age: Duration) -> CacheStatus {
        let tasks: Vec<TaskStatus> = self
            .tasks()
            .into_iter()
            .filter_map(|t| self.load(&t))
            .map(|m| TaskStatus {
                task: m.task.clone(),
                entries: m.entries.len(),
                bytes: m.entries.values().map(|e| e.archive_size).sum::<u64>()
                    + std::fs::metadata(self.meta_path(&m.task))
                        .map(|x| x.len())
                        .unwrap_or(0),
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

    /// Drops entries unused for `max_age`, then the least recently used until the archives fit
    /// in `max_size`; also removes orphaned archives and stale temp files.
    pub fn gc(&self, max_size: u64, max_age: Duration) -> Result<GcReport> {
        let _lock = self.lock()?;
        let _ = write_atomic(&self.dir.join("last-gc"), b"");
        let mut report = GcReport::default();
        let t = now();
        let mut all: Vec<(u64, String, TaskKey, u64)> = Vec::new();
        let mut metas: BTreeMap<String, TaskMetadata> = BTreeMap::new();
        for task in self.tasks() {
            if let Ok(Some(m)) = self.read_meta(&task) {
                for e in m.entries.values() {
                    all.push((e.last_used, task.clone(), e.key.clone(), e.archive_size));
                }
                metas.insert(task, m);
            }
        }
        all.sort();
        let mut total: u64 = all.iter().map(|x| x.3).sum();
        let mut doomed = Vec::new();
        for (used, task, key, size) in &all {
            if t.saturating_sub(*used) > max_age.as_secs() || total > max_size {
                doomed.push((task.clone(), key.clone()));
                total -= size;
                report.entries += 1;
                report.bytes += size;
            }
        }
        let mut changed = std::collections::BTreeSet::new();
        for (task, key) in doomed {
            changed.insert(task.clone());
            let m = metas.get_mut(&task).expect("loaded");
            if let Some(e) = m.entries.remove(&key) {
                let _ = std::fs::remove_file(self.artifact_dir(&task).join(&e.archive));
                let _ = std::fs::remove_file(self.recipe_path(&task, &key));
            }
            if m.last.as_ref() == Some(&key) {
                m.last = None;
            }
        }
        for (task, m) in metas.iter().filter(|(t, _)| changed.contains(*t)) {
            if m.entries.is_empty() {
                let _ = std::fs::remove_file(self.meta_path(task));
            } else {
                self.write_meta(task, m)?;
            }
        }
        // Orphans: archives no metadata names, temp files and staging folders of dead builds.
        let stale = |p: &Path| {
            std::fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .map(|m| m.elapsed().unwrap_or_default() > STALE_TMP)
                .unwrap_or(false)
        };
        for dir in std::fs::read_dir(self.dir.join("artifacts"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        {
            let task = dir.file_name().to_string_lossy().into_owned();
            let known: Vec<&str> = metas
                .get(&task)
                .map(|m| m.entries.values().map(|e| e.archive.as_str()).collect())
                .unwrap_or_default();
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name().to_string_lossy().into_owned();
                // Only our own names: archives and the temp files they are written as.
                let ours = name.ends_with(".tar.zst") || name.starts_with(".tmp-");
                if ours && !known.contains(&name.as_str()) && stale(&f.path()) {
                    report.bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        for f in std::fs::read_dir(self.tmp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if stale(&f.path()) {
                let _ = match f.file_type() {
                    Ok(t) if t.is_dir() => std::fs::remove_dir_all(f.path()),
                    _ => std::fs::remove_file(f.path()),
                };
            }
        }
        Ok(report)
    }

    /// Re-checks every entry (its archive against its manifest); evicts the bad ones. Returns
    /// (entries checked, the bad ones).
    pub fn verify(&self) -> Result<(usize, Vec<Corrupt>)> {
        let mut checked = 0;
        let mut bad = Vec::new();
        for task in self.tasks() {
            let Some(meta) = self.load(&task) else {
                continue;
            };
            for entry in meta.entries.values() {
                checked += 1;
                let scratch = tempfile::Builder::new()
                    .prefix("verify-")
                    .tempdir_in(self.tmp_dir())
                    .map_err(Error::io("cannot create a scratch folder", self.tmp_dir()))?;
                if let Err(c) = self.restore(&task, entry, scratch.path()) {
                    self.evict(&task, &entry.key);
                    bad.push(c);
                }
            }
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

/// What a cache folder is to us.
#[derive(Debug, PartialEq, Eq)]
enum Ownership {
    /// It holds our CACHEDIR.TAG.
    Ours,
    /// It does not exist, or is empty: ours to take.
    Free,
}

/// Whether `dir` is a cache folder of ours; an error naming the folder and why when it is not.
fn ownership(dir: &Path) -> Result<Ownership> {
    let foreign = |reason: &str| Error::ForeignCache {
        dir: dir.to_path_buf(),
        reason: reason.to_string(),
    };
    let tagged = || -> Result<bool> {
        let tag = dir.join("CACHEDIR.TAG");
        match std::fs::read_to_string(&tag) {
            Ok(text) if is_our_tag(&text) => Ok(true),
            Ok(_) => Err(foreign(
                "its CACHEDIR.TAG was not written by flamenco-build",
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                Err(foreign("it is not a folder (and has no CACHEDIR.TAG)"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("cannot read the cache tag", &tag)(e)),
        }
    };
    if tagged()? {
        return Ok(Ownership::Ours);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ownership::Free),
        Err(e) => return Err(Error::io("cannot read the cache folder", dir)(e)),
    };
    // A temp file is what a build that is tagging the folder right now leaves for a moment.
    let strangers = entries
        .flatten()
        .any(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"));
    if !strangers {
        return Ok(Ownership::Free);
    }
    // A build tags a new folder before it writes anything else in it: another build may have
    // just done both since the tag was looked for.
    if tagged()? {
        return Ok(Ownership::Ours);
    }
    Err(foreign("it holds files and no CACHEDIR.TAG"))
}

/// Our tag: the standard signature line first, and flamenco-build named below it.
fn is_our_tag(text: &str) -> bool {
    let mut lines = text.lines();
    lines.next().is_some_and(|l| l.trim_end() == TAG_SIGNATURE)
        && lines.any(|l| l.contains("flamenco-build"))
}

/// Makes `dir/sub` a folder of the cache (a link or a file there is refused, not followed).
fn own_folder(dir: &Path, sub: &str) -> Result<()> {
    let p = dir.join(sub);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::ForeignCache {
            dir: dir.to_path_buf(),
            reason: format!("its `{sub}` is not a folder"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&p).map_err(Error::io("cannot create the cache folder", &p))
        }
        Err(e) => Err(Error::io("cannot read the cache folder", &p)(e)),
    }
}

fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_absent_or_empty_folder_is_claimed_and_tagged() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("new");
        assert!(LocalCache::existing(&absent).unwrap().is_none());
        assert!(!absent.exists(), "looking creates nothing");
        LocalCache::open(&absent).unwrap();
        assert!(is_our_tag(
            &std::fs::read_to_string(absent.join("CACHEDIR.TAG")).unwrap()
        ));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        LocalCache::open(&empty).unwrap();
        assert!(LocalCache::existing(&empty).unwrap().is_some());
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
            LocalCache::open(dir.path()).unwrap_err(),
            LocalCache::existing(dir.path()).unwrap_err(),
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
        let e = LocalCache::open(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("not written by flamenco-build"),
            "{e}"
        );
    }

    #[test]
    fn clearing_and_trimming_touch_only_our_own_entries() {
        // Issue 10 finding 3: `clean-cache`, trimming and temp cleanup remove only entries of the
        // cache's own layout. Failed on main before this change: a link in `artifacts/` was
        // followed by the orphan sweep, which removed the files of the folder it points to.
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(&dir.path().join("c")).unwrap();
        let root = dir.path().join("c");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("k.tar.zst"), "not ours").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("artifacts/linked")).unwrap();
        std::fs::create_dir(root.join("artifacts/t")).unwrap();
        std::fs::write(root.join("artifacts/t/notes.txt"), "x").unwrap();
        std::fs::write(root.join("artifacts/t/old.tar.zst"), "x").unwrap();
        std::fs::write(root.join("README"), "mine").unwrap();
        let old = SystemTime::now() - 2 * STALE_TMP;
        for f in ["artifacts/t/notes.txt", "artifacts/t/old.tar.zst"] {
            File::options()
                .write(true)
                .open(root.join(f))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        File::options()
            .write(true)
            .open(elsewhere.join("k.tar.zst"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        cache.gc(u64::MAX, Duration::from_secs(3600)).unwrap();
        assert!(
            elsewhere.join("k.tar.zst").exists(),
            "a link is not followed"
        );
        assert!(
            root.join("artifacts/t/notes.txt").exists(),
            "not one of our names"
        );
        assert!(
            !root.join("artifacts/t/old.tar.zst").exists(),
            "an orphaned archive"
        );
        cache.clear().unwrap();
        assert!(root.join("README").exists());
        assert!(elsewhere.join("k.tar.zst").exists());
        assert_eq!(names(&root.join("artifacts")), Vec::<String>::new());
    }

    #[test]
    fn metadata_names_that_are_not_task_names_are_ignored() {
        // Issue 10 finding 5: `..meta.json` would be the metadata of a task `.`, whose archive
        // folder is `artifacts/` itself; evicting it removed every other entry.
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("metadata/..meta.json"), "{").unwrap();
        std::fs::create_dir(dir.path().join("artifacts/other")).unwrap();
        std::fs::write(dir.path().join("artifacts/other/k.tar.zst"), "x").unwrap();
        assert!(cache.tasks().is_empty());
        let _ = cache.status(u64::MAX, Duration::from_secs(3600));
        assert!(dir.path().join("artifacts/other/k.tar.zst").exists());
    }
}
