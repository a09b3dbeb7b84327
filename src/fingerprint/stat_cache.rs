//! A stat cache, like git's index: (size, mtime, ctime, inode) → content hash, so that files which
//! did not change are not read again. Kept in the cache folder; advisory (losing it costs a re-hash).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::digest::{FileDigest, Manifest, hash_file, output_mode};
use super::{FileKind, InputFile};

const FORMAT: u32 = 1;

/// A file changed this recently may change again within the clock's granularity without its
/// stat changing: such files are hashed but not remembered (git's "racy" entries).
const RACY_NS: i128 = 2_000_000_000;

/// What identifies a file's state without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StatOnDisk")]
pub struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    mode: u32,
}

impl Stat {
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }
}

/// A [`Stat`] as the stat cache file holds it (the same JSON). serde_json reads an i128 the slow
/// way, about 5,000 instructions a stat: two thirds of loading the stat cache, on the way of every
/// no-change build. The times are read as plain JSON numbers instead.
#[derive(Deserialize)]
struct StatOnDisk {
    size: u64,
    mtime_ns: serde_json::Number,
    ctime_ns: serde_json::Number,
    ino: u64,
    mode: u32,
}

impl From<StatOnDisk> for Stat {
    fn from(s: StatOnDisk) -> Stat {
        Stat {
            size: s.size,
            mtime_ns: nanos(&s.mtime_ns),
            ctime_ns: nanos(&s.ctime_ns),
            ino: s.ino,
            mode: s.mode,
        }
    }
}

/// A time in nanoseconds as read back. Every time of the next two centuries fits an i64; one
/// that fits neither an i64 nor a u64 becomes a value no file's stat has, so that file alone is
/// hashed again.
fn nanos(n: &serde_json::Number) -> i128 {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .unwrap_or(i128::MIN)
}

/// The files of `files` that may not be what their digests in `expected` (the key's) say: their
/// stat is not the one recorded when they were read for the key, or it is but was so recent
/// (`since_ns`, the build's start, minus the clock's granularity) that an edit need not change
/// it, and then their content no longer has the expected digest. Files without a recorded stat
/// or an expected digest are taken as they are.
pub fn changed_since_read<'a>(
    files: &'a [InputFile],
    expected: &Manifest,
    since_ns: i128,
) -> Vec<&'a str> {
    files
        .par_iter()
        .filter(|f| {
            // A folder's own mtime moves with what lies in it; its files are checked one by one.
            if f.kind == super::FileKind::Dir {
                return false;
            }
            let (Some(then), Some(want)) = (f.stat, expected.get(&f.rel)) else {
                return false;
            };
            let Ok(now) = std::fs::symlink_metadata(&f.abs).map(|m| Stat::of(&m)) else {
                return true;
            };
            if now != then {
                return true;
            }
            let racy = then.mtime_ns.max(then.ctime_ns) > since_ns - RACY_NS;
            racy && hash_file(f).map_or(true, |h| h != want.sha256)
        })
        .map(|f| f.rel.as_str())
        .collect()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    entries: HashMap<String, (Stat, String)>,
}

/// The stat cache of one project. Lookups are shared between threads (the keys of independent
/// tasks are computed at the same time), so they take a read lock only.
#[derive(Debug)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: RwLock<HashMap<String, (Stat, String)>>,
    dirty: AtomicBool,
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
            entries: RwLock::new(entries),
            dirty: AtomicBool::new(false),
            paranoid,
        }
    }

    /// A cache that remembers nothing on disk (`build`, tests).
    pub fn in_memory() -> StatCache {
        StatCache {
            path: None,
            entries: RwLock::default(),
            dirty: AtomicBool::new(false),
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
        // First what is remembered (cheap, in order), then the rest read and hashed; on all cores
        // only when there is enough to read that threads pay off.
        let mut out: Vec<Option<FileDigest>> = Vec::with_capacity(files.len());
        let mut todo: Vec<(usize, InputFile, Stat)> = Vec::new();
        {
            let entries = self.entries.read().expect("stat cache");
            for (i, f) in files.iter().enumerate() {
                // The walk's stat when there is one (a file changed since is caught by the next
                // build: its stat then differs); otherwise look now.
                let stat = match f.stat {
                    Some(s) => s,
                    None => Stat::of(&std::fs::symlink_metadata(&f.abs).map_err(named(&f.abs))?),
                };
                if f.kind == FileKind::Dir {
                    out.push(Some(FileDigest::folder(stat.mode)));
                    continue;
                }
                let kind = match &f.kind {
                    FileKind::File { .. } => FileKind::File {
                        executable: stat.mode & 0o111 != 0,
                        size: stat.size,
                    },
                    k => k.clone(),
                };
                match entries.get(f.abs.to_string_lossy().as_ref()) {
                    // A hit (every file of a no-change build) copies no path.
                    Some((s, h)) if !self.paranoid && *s == stat => {
                        out.push(Some(FileDigest::of_kind(&kind, h.clone())))
                    }
                    _ => {
                        out.push(None);
                        todo.push((i, InputFile { kind, ..f.clone() }, stat));
                    }
                }
            }
        }
        let hash_one = |(i, file, stat): &(usize, InputFile, Stat)| -> std::io::Result<(usize, FileDigest, Stat)> {
            let sha256 = hash_file(file).map_err(named(&file.abs))?;
            Ok((*i, FileDigest::of(file, sha256), *stat))
        };
        let bytes: u64 = todo.iter().map(|(_, _, s)| s.size).sum();
        let hashed: Vec<(usize, FileDigest, Stat)> = if todo.len() > 4 && bytes > 4 * 1024 * 1024 {
            todo.par_iter()
                .map(hash_one)
                .collect::<std::io::Result<_>>()?
        } else {
            todo.iter().map(hash_one).collect::<std::io::Result<_>>()?
        };
        if !hashed.is_empty() {
            let mut entries = self.entries.write().expect("stat cache");
            for (i, digest, stat) in hashed {
                if now - stat.mtime_ns > RACY_NS {
                    entries.insert(
                        files[i].abs.to_string_lossy().into_owned(),
                        (stat, digest.sha256.clone()),
                    );
                    self.dirty.store(true, Ordering::Relaxed);
                }
                out[i] = Some(digest);
            }
        }
        Ok(out
            .into_iter()
            .map(|d| d.expect("every file digested"))
            .collect())
    }

    /// The manifest of outputs `files` (see [`super::InputFiles::output_tree`]): each path with
    /// its digest (see [`StatCache::digest_all`]) and, for files and folders, its mode.
    pub fn manifest(&self, files: &[InputFile]) -> std::io::Result<Manifest> {
        let digests = self.digest_all(files)?;
        files
            .iter()
            .zip(digests)
            .map(|(f, mut d)| {
                if let FileKind::File { .. } = f.kind {
                    let mode = match f.stat {
                        Some(s) => s.mode,
                        None => std::fs::symlink_metadata(&f.abs)?.mode(),
                    };
                    d.mode = Some(output_mode(mode, false));
                }
                Ok((f.rel.clone(), d))
            })
            .collect()
    }

    /// Writes the cache back if it changed (atomically: temp file, rename).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut entries = self.entries.write().expect("stat cache");
        // Forget files that are gone, so the cache does not grow without bound.
        entries.retain(|k, _| Path::new(k).exists());
        let file = File {
            format: FORMAT,
            entries: std::mem::take(&mut *entries),
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        *entries = file.entries;
        // Renamed into place but not fsynced: the stat cache is advisory, and losing it after a
        // crash costs a re-hash, never a wrong key.
        let tmp = tempfile::NamedTempFile::new_in(path.parent().expect("in the cache folder"))?;
        std::fs::write(tmp.path(), &bytes)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The error with the file it is about, which the caller's message does not name.
fn named(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
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
            stat: None,
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

    // Issue 10 finding 14: a file that cannot be read is named in the error. Failed on main
    // before this change: "Is a directory (os error 21)" named no file.
    #[test]
    fn a_file_that_cannot_be_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "one").unwrap();
        let mut gone = input(dir.path(), "a");
        // Swapped for a folder after the walk: opening works, reading does not.
        std::fs::remove_file(dir.path().join("a")).unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        gone.stat = None;
        let err = StatCache::in_memory()
            .digest_all(&[gone])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&dir.path().join("a").display().to_string()),
            "{err}"
        );
    }

    // Supports issue 10 finding 7 (e2e: f7_an_input_edited_while_the_build_runs_is_not_cached_
    // under_the_old_key, which failed on main): a file is as read when its stat is; a file
    // changed about when reading began is checked against its digest too.
    #[test]
    fn files_changed_since_they_were_read_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["same", "grown"] {
            std::fs::write(dir.path().join(f), "one").unwrap();
        }
        let read = |rel: &str| {
            let mut f = input(dir.path(), rel);
            f.stat = Some(Stat::of(&std::fs::symlink_metadata(&f.abs).unwrap()));
            f
        };
        let files = [read("same"), read("grown")];
        std::fs::write(dir.path().join("grown"), "three").unwrap();
        let digest = |text: &str| FileDigest {
            sha256: super::super::digest::hash_bytes(text.as_bytes()),
            size: text.len() as u64,
            executable: false,
            link: None,
            mode: None,
            dir: false,
        };
        let key = |same: &str| -> Manifest {
            [("same", digest(same)), ("grown", digest("one"))]
                .into_iter()
                .map(|(r, d)| (r.to_string(), d))
                .collect()
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        // Files changed well before reading began (an hour later here): their stat is trusted.
        let later = now + 3_600_000_000_000;
        assert_eq!(changed_since_read(&files, &key("two"), later), ["grown"]);
        // Changed about when reading began: the content must also be what the key says.
        assert_eq!(
            changed_since_read(&files, &key("two"), now),
            ["same", "grown"]
        );
        assert_eq!(changed_since_read(&files, &key("one"), now), ["grown"]);
    }

    #[test]
    fn stats_read_back_as_written() {
        let stat = |mtime_ns: i128| Stat {
            size: 3,
            mtime_ns,
            ctime_ns: -1_500_000_000,
            ino: u64::MAX,
            mode: 0o100644,
        };
        for t in [
            0,
            1_795_765_899_018_363_437,
            i64::MAX as i128,
            u64::MAX as i128,
        ] {
            let json = serde_json::to_string(&stat(t)).unwrap();
            assert_eq!(
                serde_json::from_str::<Stat>(&json).unwrap(),
                stat(t),
                "{json}"
            );
        }
        // Beyond what the file's numbers hold: read back as no stat a file has, never an error
        // (which would drop the whole stat cache).
        let json = serde_json::to_string(&stat(i128::MAX)).unwrap();
        let back: Stat = serde_json::from_str(&json).unwrap();
        assert_ne!(back, stat(i128::MAX));
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
