//! A lease's input root, from the CAS into a folder: the `Directory` messages level by level (each
//! distinct one fetched once), then every file in bulk. What comes back is the file list the
//! Docker executor tars into the container, exactly as a local build gives it.

use std::collections::BTreeMap;
use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::cas::{WorkerCas, blob_ref};
use super::status::Refusal;
use crate::cache::BlobRead;
use crate::fingerprint::{FileKind, InputFile};

/// Lays the tree under `root` out in `into`; `tmp` holds fetched messages for a moment.
pub(crate) async fn fetch_inputs(
    cas: &WorkerCas,
    root: &re::Digest,
    into: &Path,
    tmp: &Path,
) -> Result<Vec<InputFile>, Refusal> {
    let mut files = Vec::new();
    let mut reads = Vec::new();
    // (folder path, digest) of the folders still to read, one level at a time.
    let mut level = vec![(String::new(), root.clone())];
    while !level.is_empty() {
        let digests: Vec<re::Digest> = level.iter().map(|(_, d)| d.clone()).collect();
        let blobs = cas.bytes(&digests, tmp).await?;
        let mut next = Vec::new();
        for ((path, digest), bytes) in level.into_iter().zip(blobs) {
            let dir = re::Directory::decode(bytes.as_slice()).map_err(|e| {
                Refusal::invalid(format!(
                    "input folder {} is not a Directory: {e}",
                    digest.hash
                ))
            })?;
            let folder = Folder { path: &path, into };
            next.extend(folder.add(&dir, &mut files, &mut reads)?);
        }
        level = next;
    }
    cas.read(reads).await?;
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

/// One folder of the tree being laid out.
struct Folder<'a> {
    path: &'a str,
    into: &'a Path,
}

impl Folder<'_> {
    /// Adds the folder's entries; returns its subfolders to read next.
    fn add(
        &self,
        dir: &re::Directory,
        files: &mut Vec<InputFile>,
        reads: &mut Vec<BlobRead>,
    ) -> Result<Vec<(String, re::Digest)>, Refusal> {
        let abs = self.into.join(self.path);
        std::fs::create_dir_all(&abs)
            .map_err(|e| Refusal::retry(format!("cannot create {}: {e}", abs.display())))?;
        // A folder with a mode was given as a folder (a dependency's output), and so is an
        // empty one: both reach the task as folders of their own.
        let explicit = dir.node_properties.is_some()
            || (dir.files.is_empty() && dir.directories.is_empty() && dir.symlinks.is_empty());
        if explicit && !self.path.is_empty() {
            files.push(input(self.path.to_string(), abs.clone(), FileKind::Dir));
        }
        let mut seen = BTreeMap::new();
        for f in &dir.files {
            let rel = self.child(&f.name, &mut seen)?;
            let d = f.digest.clone().unwrap_or_default();
            let blob = blob_ref(&d)?;
            let to = self.into.join(&rel);
            let kind = FileKind::File {
                executable: f.is_executable,
                size: blob.size,
            };
            let mode = if f.is_executable { 0o755 } else { 0o644 };
            reads.push(BlobRead {
                blob,
                to: to.clone(),
                mode,
            });
            files.push(input(rel, to, kind));
        }
        for l in &dir.symlinks {
            let rel = self.child(&l.name, &mut seen)?;
            if !stays_inside(&rel, &l.target) {
                return Err(Refusal::invalid(format!(
                    "input link {rel} -> {} leaves the input root",
                    l.target
                )));
            }
            let to = self.into.join(&rel);
            std::os::unix::fs::symlink(&l.target, &to)
                .map_err(|e| Refusal::retry(format!("cannot create link {rel}: {e}")))?;
            let kind = FileKind::Symlink {
                target: l.target.clone(),
            };
            files.push(input(rel, to, kind));
        }
        let mut next = Vec::new();
        for d in &dir.directories {
            let rel = self.child(&d.name, &mut seen)?;
            next.push((rel, d.digest.clone().unwrap_or_default()));
        }
        Ok(next)
    }

    /// The path of an entry, refused when its name is not one plain name or comes twice.
    fn child(&self, name: &str, seen: &mut BTreeMap<String, ()>) -> Result<String, Refusal> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Refusal::invalid(format!(
                "input folder `{}` names an entry `{name}`",
                self.path
            )));
        }
        if seen.insert(name.to_string(), ()).is_some() {
            return Err(Refusal::invalid(format!(
                "input folder `{}` names `{name}` twice",
                self.path
            )));
        }
        Ok(match self.path {
            "" => name.to_string(),
            p => format!("{p}/{name}"),
        })
    }
}

fn input(rel: String, abs: std::path::PathBuf, kind: FileKind) -> InputFile {
    InputFile {
        rel,
        abs,
        kind,
        stat: None,
    }
}

/// Whether a link at `rel` pointing at `target` resolves (by its text) inside the root.
fn stays_inside(rel: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: i64 = rel.matches('/').count() as i64;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::stays_inside;

    #[test]
    fn links_stay_inside_the_input_root() {
        assert!(stays_inside("a/b", "c"));
        assert!(stays_inside("a/b", "../top"));
        assert!(!stays_inside("a/b", "../../up"));
        assert!(!stays_inside("b", "/etc/passwd"));
    }
}
