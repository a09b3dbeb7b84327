//! The local store's content blobs: `artifacts/sha256/<aa>/<sha256>`, each output file's bytes
//! once, whichever task or key produced them (REAPI's CAS, on disk). A blob is written to a temp
//! name beside its final place and renamed; it is read-only; every read re-hashes it, so a blob
//! damaged on disk is found where it is used, never restored.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Why a blob could not be stored or read back.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is not a SHA-256 digest")]
    BadDigest(String),
    #[error("blob {sha256} is missing")]
    Missing { sha256: String },
    #[error("blob {sha256} does not match its SHA-256 ({got}, {size} bytes)")]
    Mismatch {
        sha256: String,
        got: String,
        size: u64,
    },
    #[error("the build was interrupted")]
    Interrupted,
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BlobError {
    /// The blob found bad or missing, if that is what went wrong (to be removed with its entry).
    pub(crate) fn bad_blob(&self) -> Option<String> {
        match self {
            BlobError::Mismatch { sha256, .. } | BlobError::Missing { sha256 } => {
                Some(sha256.clone())
            }
            _ => None,
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_path_buf();
    move |source| BlobError::Io { what, path, source }
}

/// One blob as listed for cleanup.
#[derive(Debug)]
pub(crate) struct BlobInfo {
    pub(crate) sha256: String,
    pub(crate) size: u64,
    pub(crate) modified: SystemTime,
}

/// The blob folder of a local store.
#[derive(Debug, Clone)]
pub(crate) struct Cas {
    root: PathBuf,
}

pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Cas {
    pub(crate) fn new(root: PathBuf) -> Cas {
        Cas { root }
    }

    /// Where a blob lives; only for a well-formed digest, so a name from metadata can never
    /// point elsewhere.
    pub(crate) fn path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        if !is_sha256(sha256) {
            return Err(BlobError::BadDigest(sha256.to_string()));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }

    /// Whether the blob is there with the right size. Its modification time is refreshed, so a
    /// cleanup running meanwhile sees it as in use.
    pub(crate) fn contains(&self, sha256: &str, size: u64) -> bool {
        let Ok(path) = self.path(sha256) else {
            return false;
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.len() == size => {
                let _ = File::open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                true
            }
            _ => false,
        }
    }

    /// Stores the file at `src` as blob `sha256` unless it is there already; returns whether it
    /// was written. The bytes are hashed as they are copied: what is stored is what was named.
    pub(crate) fn put(&self, src: &Path, sha256: &str, size: u64) -> Result<bool, BlobError> {
        if self.contains(sha256, size) {
            return Ok(false);
        }
        let dest = self.path(sha256)?;
        let dir = dest.parent().expect("a blob lies in a folder");
        std::fs::create_dir_all(dir).map_err(io("cannot create the blob folder", dir))?;
        let mut from = open_no_follow(src).map_err(io("cannot read output", src))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(io("cannot create a temp blob in", dir))?;
        let tmp_path = tmp.path().to_path_buf();
        let (got, n) = copy_hashing(&mut from, tmp.as_file_mut(), src, &tmp_path)?;
        if got != sha256 || n != size {
            return Err(BlobError::Mismatch {
                sha256: sha256.to_string(),
                got,
                size: n,
            });
        }
        let perms = std::fs::Permissions::from_mode(0o444);
        tmp.as_file()
            .set_permissions(perms)
            .map_err(io("cannot write blob", tmp.path()))?;
        tmp.persist(&dest)
            .map_err(|e| io("cannot move a blob into place", &dest)(e.error))?;
        Ok(true)
    }

    /// Copies blob `sha256` to a new file `dest` with `mode`, checking size and SHA-256 as it
    /// goes; on a mismatch `dest` is removed and the error says so.
    pub(crate) fn copy_to(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        mode: u32,
    ) -> Result<(), BlobError> {
        let path = self.path(sha256)?;
        let mut from = match open_no_follow(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::Missing {
                    sha256: sha256.to_string(),
                });
            }
            Err(e) => return Err(io("cannot read blob", &path)(e)),
        };
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(io("cannot create", dest))?;
        let (got, n) = copy_hashing(&mut from, &mut to, &path, dest)?;
        if got != sha256 || n != size {
            let _ = std::fs::remove_file(dest);
            return Err(BlobError::Mismatch {
                sha256: sha256.to_string(),
                got,
                size: n,
            });
        }
        to.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("cannot set the mode of", dest))
    }

    /// Removes a blob (cleanup, or a blob found damaged).
    pub(crate) fn remove(&self, sha256: &str) {
        if let Ok(p) = self.path(sha256) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Makes every blob written so far durable with one `syncfs` instead of an fsync per blob:
    /// an entry's metadata is written only after this, so a crash never leaves metadata naming
    /// a blob that is not on disk (and a torn blob fails its hash check on read).
    pub(crate) fn sync(&self) {
        if let Ok(d) = File::open(&self.root) {
            let _ = nix::unistd::syncfs(&d);
        }
    }

    /// Every blob and leftover temp file, for cleanup: (info, is a temp file).
    pub(crate) fn list(&self) -> Vec<(BlobInfo, bool)> {
        let mut out = Vec::new();
        for dir in self.blob_dirs() {
            let files = std::fs::read_dir(&dir).into_iter().flatten().flatten();
            for f in files.filter(|f| f.file_type().is_ok_and(|t| t.is_file())) {
                let name = f.file_name().to_string_lossy().into_owned();
                let Ok(m) = f.metadata() else { continue };
                let info = BlobInfo {
                    size: m.len(),
                    modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    sha256: name.clone(),
                };
                if is_sha256(&name) {
                    out.push((info, false));
                } else if name.starts_with(".tmp-") {
                    out.push((info, true));
                }
            }
        }
        out
    }

    /// Removes a leftover temp file by name (cleanup).
    pub(crate) fn remove_temp(&self, name: &str) {
        if !name.starts_with(".tmp-") || name.contains('/') {
            return;
        }
        for dir in self.blob_dirs() {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }

    /// The folders blobs lie in: real folders only, as a link there is not ours to follow.
    fn blob_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
            .map(|d| d.path())
            .collect()
    }
}

fn open_no_follow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Copies `from` into `to`, returning the SHA-256 and the size of what was copied.
fn copy_hashing(
    from: &mut File,
    to: &mut File,
    from_path: &Path,
    to_path: &Path,
) -> Result<(String, u64), BlobError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = from.read(&mut buf).map_err(io("cannot read", from_path))?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        to.write_all(&buf[..got])
            .map_err(io("cannot write", to_path))?;
        n += got as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn stores_once_and_copies_back_with_the_mode_asked() {
        let t = tempfile::tempdir().unwrap();
        let cas = Cas::new(t.path().join("cas"));
        let src = t.path().join("a");
        std::fs::write(&src, b"hello").unwrap();
        let d = sha(b"hello");
        assert!(cas.put(&src, &d, 5).unwrap());
        assert!(!cas.put(&src, &d, 5).unwrap(), "a blob is stored once");
        let blob = cas.path(&d).unwrap();
        assert_eq!(std::fs::metadata(&blob).unwrap().mode() & 0o777, 0o444);
        let out = t.path().join("out");
        cas.copy_to(&d, 5, &out, 0o600).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"hello");
        assert_eq!(std::fs::metadata(&out).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn what_is_stored_is_what_was_named() {
        let t = tempfile::tempdir().unwrap();
        let cas = Cas::new(t.path().join("cas"));
        let src = t.path().join("a");
        std::fs::write(&src, b"changed").unwrap();
        let e = cas.put(&src, &sha(b"hello"), 5).unwrap_err();
        assert!(matches!(e, BlobError::Mismatch { .. }), "{e}");
        assert!(!cas.contains(&sha(b"hello"), 5));
    }

    #[test]
    fn a_damaged_blob_is_refused_and_nothing_is_left() {
        let t = tempfile::tempdir().unwrap();
        let cas = Cas::new(t.path().join("cas"));
        let src = t.path().join("a");
        std::fs::write(&src, b"hello").unwrap();
        let d = sha(b"hello");
        cas.put(&src, &d, 5).unwrap();
        let blob = cas.path(&d).unwrap();
        std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&blob, b"jello").unwrap();
        let out = t.path().join("out");
        let e = cas.copy_to(&d, 5, &out, 0o644).unwrap_err();
        assert!(matches!(e, BlobError::Mismatch { .. }), "{e}");
        assert!(!out.exists());
        cas.remove(&d);
        let e = cas.copy_to(&d, 5, &out, 0o644).unwrap_err();
        assert!(matches!(e, BlobError::Missing { .. }), "{e}");
    }

    #[test]
    fn names_that_are_not_digests_never_become_paths() {
        let cas = Cas::new(PathBuf::from("/nonexistent"));
        for bad in [
            "../../etc/passwd",
            "",
            "ab",
            &"A".repeat(64),
            &"g".repeat(64),
        ] {
            assert!(
                matches!(cas.path(bad), Err(BlobError::BadDigest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_symlink_is_never_stored_through() {
        let t = tempfile::tempdir().unwrap();
        let cas = Cas::new(t.path().join("cas"));
        std::fs::write(t.path().join("secret"), b"hello").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), t.path().join("l")).unwrap();
        assert!(cas.put(&t.path().join("l"), &sha(b"hello"), 5).is_err());
    }
}
