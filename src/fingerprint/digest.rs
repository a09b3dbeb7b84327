//! Content digests: one file's, and a manifest's (a set of files by path).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FileKind, InputFile};

/// What identifies a file's content for a task: its SHA-256, size, executable bit, or for a
/// symlink its target. An output also records its mode, and its folders (no content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Outputs only: the permission bits (see [`output_mode`]). Inputs key the executable bit
    /// alone, so this stays None for them and their keys do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Outputs only: a folder, kept so that empty folders are restored and reach dependents.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
}

/// The permission bits an output keeps: the task's read, write and execute bits for owner, group
/// and other (not setuid, setgid, sticky), plus what the tool itself needs to hash, archive,
/// replace and delete it as an unprivileged user: the owner's read on a file; read, write and
/// enter on a folder.
pub fn output_mode(mode: u32, dir: bool) -> u32 {
    (mode & 0o777) | if dir { 0o700 } else { 0o400 }
}

impl FileDigest {
    /// The digest of `file` with the content hash given.
    pub fn of(file: &InputFile, sha256: String) -> FileDigest {
        FileDigest::of_kind(&file.kind, sha256)
    }

    /// The digest of a file of `kind` with the content hash given.
    pub fn of_kind(kind: &FileKind, sha256: String) -> FileDigest {
        match kind {
            FileKind::File { executable, size } => FileDigest {
                sha256,
                size: *size,
                executable: *executable,
                link: None,
                mode: None,
                dir: false,
            },
            FileKind::Symlink { target } => FileDigest {
                sha256,
                size: 0,
                executable: false,
                link: Some(target.clone()),
                mode: None,
                dir: false,
            },
            FileKind::Dir => FileDigest::folder(0o755),
        }
    }

    /// An output folder with its mode.
    pub fn folder(mode: u32) -> FileDigest {
        FileDigest {
            sha256: String::new(),
            size: 0,
            executable: false,
            link: None,
            mode: Some(output_mode(mode, true)),
            dir: true,
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
        // Folders and modes (outputs only) are covered too: a dependent's key changes with them.
        if d.dir {
            h.update(b"/");
        }
        if let Some(mode) = d.mode {
            h.update(format!(" mode {mode:o}").as_bytes());
        }
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// SHA-256 of a file's content, streamed; of a symlink, its target; a folder has none.
pub fn hash_file(file: &InputFile) -> std::io::Result<String> {
    match &file.kind {
        FileKind::Symlink { target } => Ok(hash_bytes(target.as_bytes())),
        FileKind::File { .. } => hash_path(&file.abs),
        FileKind::Dir => Ok(String::new()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: Option<u32>) -> FileDigest {
        FileDigest {
            sha256: "aa".into(),
            size: 1,
            executable: true,
            link: None,
            mode,
            dir: false,
        }
    }

    #[test]
    fn inputs_serialise_as_before_and_outputs_hash_with_modes_and_folders() {
        // Inputs carry no mode: their recipes, and so their keys, are what they were.
        assert_eq!(
            serde_json::to_string(&file(None)).unwrap(),
            r#"{"sha256":"aa","size":1,"executable":true}"#
        );
        let with = |d: FileDigest| manifest_hash(&[("o/a".to_string(), d)].into());
        assert_ne!(with(file(Some(0o755))), with(file(Some(0o750))));
        let mut folders = Manifest::new();
        folders.insert("o".into(), FileDigest::folder(0o755));
        assert_ne!(manifest_hash(&folders), manifest_hash(&Manifest::new()));
        assert_eq!(output_mode(0o4755, false), 0o755);
        assert_eq!(output_mode(0o000, false), 0o400);
        assert_eq!(output_mode(0o555, true), 0o755);
        assert_eq!(output_mode(0o1777, true), 0o777);
    }
}
