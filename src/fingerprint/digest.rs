//! Content digests: one file's, and a manifest's (a set of files by path).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FileKind, InputFile};

/// What identifies a file's content for a task: its SHA-256, size, executable bit, or for a
/// symlink its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl FileDigest {
    /// The digest of `file` with the content hash given.
    pub fn of(file: &InputFile, sha256: String) -> FileDigest {
        match &file.kind {
            FileKind::File { executable, size } => FileDigest {
                sha256,
                size: *size,
                executable: *executable,
                link: None,
            },
            FileKind::Symlink { target } => FileDigest {
                sha256,
                size: 0,
                executable: false,
                link: Some(target.clone()),
            },
        }
    }
}

/// Files by project-relative path.
pub type Manifest = BTreeMap<String, FileDigest>;

/// The hash of a manifest: what a dependent's key takes from it.
pub fn manifest_hash(m: &Manifest) -> String {
    let mut h = Sha256::new();
    h.update(b"flamenco-build manifest v1\0");
    for (path, d) in m {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(d.sha256.as_bytes());
        h.update([u8::from(d.executable)]);
        if let Some(l) = &d.link {
            h.update(b"->");
            h.update(l.as_bytes());
        }
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// SHA-256 of a file's content, streamed; of a symlink, its target.
pub fn hash_file(file: &InputFile) -> std::io::Result<String> {
    match &file.kind {
        FileKind::Symlink { target } => Ok(hash_bytes(target.as_bytes())),
        FileKind::File { .. } => hash_path(&file.abs),
    }
}

pub fn hash_path(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn hash_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}
