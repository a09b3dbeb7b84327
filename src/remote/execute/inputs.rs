//! What an engine needs to run a task, sent only if it lacks it: the `Action`, its `Command`,
//! every `Directory` of the input root (all in memory) and every input file (read from the
//! workspace, or a dependency's output there, and checked against its digest as it is read).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use crate::cache::{BlobRef, BlobWrite};
use crate::fingerprint::action::TaskAction;
use crate::fingerprint::{FileKind, InputFile};
use crate::remote::RemoteError;
use crate::remote::grpc::GrpcStorage;

/// Every blob of a task's action, by hash: in memory, or in a file.
#[derive(Debug, Default)]
pub(super) struct Blobs {
    refs: Vec<BlobRef>,
    memory: HashMap<String, Vec<u8>>,
    files: HashMap<String, PathBuf>,
}

impl Blobs {
    /// The blobs of `action`, whose input files are among `files` (by project-relative path).
    pub(super) fn of(action: &TaskAction, files: &[InputFile]) -> Result<Blobs, String> {
        let mut blobs = Blobs::default();
        blobs.add_memory(&action.digest, action.action.encode_to_vec());
        let command = action.command.encode_to_vec();
        blobs.add_memory(&crate::fingerprint::action::digest_of(&command), command);
        for (digest, bytes) in &action.directories {
            blobs.add_memory(digest, bytes.clone());
        }
        let by_path: HashMap<&str, &Path> = files
            .iter()
            .filter(|f| matches!(f.kind, FileKind::File { .. }))
            .map(|f| (f.rel.as_str(), f.abs.as_path()))
            .collect();
        for (rel, digest) in input_files(action)? {
            let abs = by_path
                .get(rel.as_str())
                .ok_or_else(|| format!("input `{rel}` is not among the task's files"))?;
            let blob = blob_ref(&digest);
            if !blobs.files.contains_key(&blob.sha256) && !blobs.memory.contains_key(&blob.sha256) {
                blobs.files.insert(blob.sha256.clone(), abs.to_path_buf());
                blobs.refs.push(blob);
            }
        }
        Ok(blobs)
    }

    fn add_memory(&mut self, digest: &re::Digest, bytes: Vec<u8>) {
        if self.memory.insert(digest.hash.clone(), bytes).is_none() {
            self.refs.push(blob_ref(digest));
        }
    }

    /// Sends what the server lacks. Blobs held in memory go through files in `scratch`, so
    /// that every upload takes the one path of the CAS client (batches, or ByteStream).
    pub(super) async fn upload_missing(
        &self,
        storage: &GrpcStorage,
        scratch: &Path,
    ) -> Result<usize, RemoteError> {
        let missing = storage.missing(self.refs.clone()).await?;
        let mut writes = Vec::with_capacity(missing.len());
        for blob in missing {
            let from = match (self.memory.get(&blob.sha256), self.files.get(&blob.sha256)) {
                (Some(bytes), _) => {
                    let path = scratch.join(&blob.sha256);
                    std::fs::write(&path, bytes).map_err(|e| {
                        RemoteError::Local(format!("cannot write {}: {e}", path.display()))
                    })?;
                    path
                }
                (None, Some(path)) => path.clone(),
                // The server named a blob it was not asked about: `missing` keeps only those.
                (None, None) => continue,
            };
            writes.push(BlobWrite { blob, from });
        }
        let count = writes.len();
        storage.write_all(writes).await?;
        Ok(count)
    }
}

fn blob_ref(d: &re::Digest) -> BlobRef {
    BlobRef {
        sha256: d.hash.clone(),
        size: u64::try_from(d.size_bytes).unwrap_or(0),
    }
}

/// Every file of the action's input root, by project-relative path, with its digest.
fn input_files(action: &TaskAction) -> Result<Vec<(String, re::Digest)>, String> {
    let mut dirs: HashMap<&str, re::Directory> = HashMap::new();
    for (digest, bytes) in &action.directories {
        let dir = re::Directory::decode(bytes.as_slice())
            .map_err(|e| format!("a folder of the input root does not decode: {e}"))?;
        dirs.insert(digest.hash.as_str(), dir);
    }
    let root = action
        .directories
        .first()
        .ok_or("the input root is empty")?;
    let mut out = Vec::new();
    let mut todo = vec![(root.0.hash.as_str(), String::new())];
    while let Some((hash, prefix)) = todo.pop() {
        let dir = dirs
            .get(hash)
            .ok_or_else(|| format!("folder {hash} of the input root is not in the action"))?;
        for f in &dir.files {
            let digest = f.digest.clone().unwrap_or_default();
            out.push((join(&prefix, &f.name), digest));
        }
        for d in &dir.directories {
            let hash = d.digest.as_ref().map_or("", |d| d.hash.as_str());
            todo.push((hash, join(&prefix, &d.name)));
        }
    }
    Ok(out)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fingerprint::action::{ActionSpec, task_action};
    use crate::fingerprint::{FileDigest, Manifest};

    fn digest(sha: &str) -> FileDigest {
        FileDigest {
            sha256: sha.repeat(32),
            size: 3,
            executable: false,
            link: None,
            mode: None,
            dir: false,
        }
    }

    fn input(rel: &str) -> InputFile {
        InputFile {
            rel: rel.into(),
            abs: PathBuf::from("/ws").join(rel),
            kind: FileKind::File {
                executable: false,
                size: 3,
            },
            stat: None,
        }
    }

    #[test]
    fn every_blob_of_the_action_once_and_files_found_by_path() {
        let mut m = Manifest::new();
        m.insert("a/b/c.go".into(), digest("11"));
        m.insert("a/d.go".into(), digest("22"));
        m.insert("e.go".into(), digest("11"));
        let action = task_action(&ActionSpec {
            run: "true",
            workdir: ".",
            outputs: &[],
            env: BTreeMap::new(),
            image: "go",
            image_id: "sha256:1",
            network: false,
            memory: None,
            cpus: None,
            inputs: &m,
        });
        let files = [input("a/b/c.go"), input("a/d.go"), input("e.go")];
        let blobs = Blobs::of(&action, &files).unwrap();
        // Action, Command, three folders; two distinct files.
        assert_eq!(blobs.memory.len(), 5);
        assert_eq!(blobs.files.len(), 2);
        assert_eq!(blobs.refs.len(), 7);
        assert!(blobs.files[&"22".repeat(32)].ends_with("a/d.go"));
        let err = Blobs::of(&action, &files[..2]).unwrap_err();
        assert!(err.contains("e.go"), "{err}");
    }
}
