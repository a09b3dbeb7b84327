//! A stat cache, like git's index: (size, mtime, ctime, inode) → content hash, so that files which
//! did not change are not read again. Kept in the cache folder; advisory (losing it costs a re-hash).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::digest::{FileDigest, hash_file};
use super::{FileKind, InputFile};

const FORMAT: u32 = 1;

/// A file changed this recently may change again within the clock's granularity without its
/// stat changing: such files are hashed but not remembered (git's "racy" entries).
const RACY_NS: i128 = 2_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    mode: u32,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    entries: HashMap<String, (Stat, String)>,
}

/// The stat cache of one project. Lookups are shared between threads.
#[derive(Debug)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, (Stat, String)>>,
    dirty: Mutex<bool>,
    /// `--paranoid`: ignore what is remembered and hash everything.
    paranoid: bool,
}

impl StatCache {
    /// Loads the cache at `path` (an unreadable or foreign file is simply ignored).
    pub fn load(path: PathBuf, paranoid: bool) -> StatCache {
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<File>(&b).ok())
            .filter(|f| f.format == FORMAT)
            .map(|f| f.entries)
            .unwrap_or_default();
        StatCache {
            path: Some(path),
            entries: Mutex::new(entries),
            dirty: Mutex::new(false),
            paranoid,
        }
    }

    /// A cache that remembers nothing on disk (`build`, tests).
    pub fn in_memory() -> StatCache {
        StatCache {
            path: None,
            entries: Mutex::default(),
            dirty: Mutex::new(false),
            paranoid: false,
        }
    }

    /// Digests of `files` (same order), reading only files whose stat is not remembered, in
    /// parallel on all cores. The key is the path under which the file is remembered.
    pub fn digest_all(&self, files: &[InputFile]) -> std::io::Result<Vec<FileDigest>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        files
            .par_iter()
            .map(|f| {
                let meta = std::fs::symlink_metadata(&f.abs)?;
                let stat = Stat::of(&meta);
                // The file may have changed since it was listed: take what is there now.
                let file = InputFile {
                    kind: match &f.kind {
                        FileKind::File { .. } => FileKind::File {
                            executable: stat.mode & 0o111 != 0,
                            size: stat.size,
                        },
                        k => k.clone(),
                    },
                    ..f.clone()
                };
                let key = f.abs.to_string_lossy();
                if !self.paranoid
                    && let Some((s, h)) = self.entries.lock().expect("stat cache").get(key.as_ref())
                    && *s == stat
                {
                    return Ok(FileDigest::of(&file, h.clone()));
                }
                let hash = hash_file(&file)?;
                if now - stat.mtime_ns > RACY_NS {
                    self.entries
                        .lock()
                        .expect("stat cache")
                        .insert(key.into_owned(), (stat, hash.clone()));
                    *self.dirty.lock().expect("stat cache") = true;
                }
                Ok(FileDigest::of(&file, hash))
            })
            .collect()
    }

    /// Writes the cache back if it changed (atomically: temp file, rename).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !*self.dirty.lock().expect("stat cache") {
            return Ok(());
        }
        let mut entries = self.entries.lock().expect("stat cache");
        // Forget files that are gone, so the cache does not grow without bound.
        entries.retain(|k, _| Path::new(k).exists());
        let file = File {
            format: FORMAT,
            entries: std::mem::take(&mut *entries),
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        *entries = file.entries;
        crate::cache::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dir: &Path, rel: &str) -> InputFile {
        let abs = dir.join(rel);
        let size = std::fs::metadata(&abs).unwrap().len();
        InputFile {
            rel: rel.into(),
            abs,
            kind: FileKind::File {
                executable: false,
                size,
            },
        }
    }

    fn age(path: &Path) {
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn remembers_hashes_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "one").unwrap();
        age(&dir.path().join("a"));
        let cache_path = dir.path().join("stat.json");
        let c = StatCache::load(cache_path.clone(), false);
        let d1 = c.digest_all(&[input(dir.path(), "a")]).unwrap();
        assert_eq!(d1[0].sha256, super::super::digest::hash_bytes(b"one"));
        c.save().unwrap();
        // Reloaded: the remembered hash is used (a lie planted in the cache proves it).
        let mut f: File = serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
        for v in f.entries.values_mut() {
            v.1 = "planted".into();
        }
        std::fs::write(&cache_path, serde_json::to_vec(&f).unwrap()).unwrap();
        let c = StatCache::load(cache_path.clone(), false);
        assert_eq!(
            c.digest_all(&[input(dir.path(), "a")]).unwrap()[0].sha256,
            "planted"
        );
        // --paranoid reads everything again.
        let p = StatCache::load(cache_path.clone(), true);
        assert_eq!(
            p.digest_all(&[input(dir.path(), "a")]).unwrap()[0].sha256,
            d1[0].sha256
        );
        // A change of content and size is seen.
        std::fs::write(dir.path().join("a"), "three").unwrap();
        let d2 = c.digest_all(&[input(dir.path(), "a")]).unwrap();
        assert_eq!(d2[0].sha256, super::super::digest::hash_bytes(b"three"));
    }
}
