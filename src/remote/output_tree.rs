//! Output folders as another engine's worker reports them: `ActionResult.output_directories`,
//! each a `Tree` blob (the folder's root `Directory` and every `Directory` below it). Our own
//! worker and our caches write flat `output_files`; a result from Buildbarn, BuildBuddy or
//! NativeLink workers names trees instead. A tree is turned into the same record entries as
//! flat files (a folder with its mode, files with digest and mode, symlinks), checked as hostile
//! input: the blob against its digest, every `Directory` it names found by the digest of its own
//! bytes, every name one plain path component and named once per folder, and a bound on the
//! entries so a tree that names a folder many times cannot blow up. The record then goes through
//! the same path checks as any (`materialize::check`, inside the task's outputs).

use std::collections::{HashMap, HashSet};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::action_result::{file_entry, link_digest};
use crate::cache::BlobRef;
use crate::fingerprint::action::{digest_of, join};
use crate::fingerprint::{FileDigest, Manifest};

/// Entries one result's trees may expand to, in all (a few times the largest real output).
const MAX_ENTRIES: usize = 1_000_000;

/// Folder depth below an output folder.
const MAX_DEPTH: usize = 256;

/// Tree blobs fetched for a result, by SHA-256.
pub(crate) type Trees = HashMap<String, Vec<u8>>;

/// The tree blobs a result names, each once: to fetch before the result is read.
pub(crate) fn tree_blobs(result: &re::ActionResult) -> Result<Vec<BlobRef>, String> {
    let mut blobs = Vec::new();
    for d in &result.output_directories {
        let digest = d
            .tree_digest
            .as_ref()
            .ok_or_else(|| format!("output folder `{}` has no tree digest", d.path))?;
        blobs.push(blob_of(digest, &d.path)?);
    }
    blobs.sort();
    blobs.dedup();
    Ok(blobs)
}

fn blob_of(d: &re::Digest, what: &str) -> Result<BlobRef, String> {
    if !crate::cache::is_sha256(&d.hash) || d.size_bytes < 0 {
        return Err(format!("`{what}` has a malformed digest"));
    }
    Ok(BlobRef {
        sha256: d.hash.clone(),
        size: d.size_bytes as u64,
    })
}

/// Every output folder of `result`, expanded from its tree, into `outputs`.
pub(crate) fn expand_all(
    result: &re::ActionResult,
    trees: &Trees,
    outputs: &mut Manifest,
) -> Result<(), String> {
    let mut budget = MAX_ENTRIES;
    for d in &result.output_directories {
        let blob = tree_blobs(&re::ActionResult {
            output_directories: vec![d.clone()],
            ..Default::default()
        })?;
        let bytes = trees
            .get(&blob[0].sha256)
            .ok_or_else(|| format!("the tree of output folder `{}` was not fetched", d.path))?;
        for (path, entry) in expand(d, bytes, &mut budget)? {
            if outputs.insert(path.clone(), entry).is_some() {
                return Err(format!("names `{path}` twice"));
            }
        }
    }
    Ok(())
}

/// One output folder's entries by project-relative path: the folder itself (unless it is the
/// whole working folder, path ""), then everything below it.
fn expand(
    dir: &re::OutputDirectory,
    bytes: &[u8],
    budget: &mut usize,
) -> Result<Vec<(String, FileDigest)>, String> {
    let what = format!("output folder `{}`", dir.path);
    let bad = |why: String| format!("{what}: {why}");
    let want = dir
        .tree_digest
        .as_ref()
        .ok_or_else(|| bad("no tree".into()))?;
    if digest_of(bytes) != *want {
        return Err(bad("its tree does not match its digest".into()));
    }
    let (root, children) = split_tree(bytes).map_err(bad)?;
    if let Some(r) = &dir.root_directory_digest
        && digest_of(root) != *r
    {
        return Err(bad("its root does not match `root_directory_digest`".into()));
    }
    let mut walk = Walk {
        children: children
            .into_iter()
            .map(|c| {
                let d = digest_of(c);
                ((d.hash, d.size_bytes), c)
            })
            .collect(),
        budget,
        entries: Vec::new(),
    };
    let root = decode(root).map_err(bad)?;
    if !dir.path.is_empty() {
        let mode = mode_of(&root.node_properties, 0o755);
        walk.entries
            .push((dir.path.clone(), FileDigest::folder(mode)));
    }
    let mut stack = vec![(dir.path.clone(), root, 0usize)];
    while let Some((at, folder, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(bad(format!("it is deeper than {MAX_DEPTH} folders")));
        }
        let below = walk.folder(&at, &folder).map_err(bad)?;
        stack.extend(below.into_iter().map(|(p, d)| (p, d, depth + 1)));
    }
    Ok(walk.entries)
}

/// A tree being walked: its folders by digest, the entries found so far and how many more may be.
struct Walk<'a> {
    children: HashMap<(String, i64), &'a [u8]>,
    budget: &'a mut usize,
    entries: Vec<(String, FileDigest)>,
}

impl Walk<'_> {
    /// The entries of the folder at `at`; returns its subfolders, to walk next.
    fn folder(
        &mut self,
        at: &str,
        folder: &re::Directory,
    ) -> Result<Vec<(String, re::Directory)>, String> {
        let mut names = HashSet::new();
        for f in &folder.files {
            let entry = file_entry(
                f.digest.as_ref(),
                f.is_executable,
                &f.node_properties,
                &f.name,
            )?;
            self.add(at, &f.name, entry, &mut names)?;
        }
        for l in &folder.symlinks {
            self.add(at, &l.name, link_digest(&l.target), &mut names)?;
        }
        let mut below = Vec::new();
        for d in &folder.directories {
            let key = d.digest.as_ref().map(|d| (d.hash.clone(), d.size_bytes));
            let child = key
                .and_then(|k| self.children.get(&k))
                .ok_or_else(|| format!("`{}` is not in its tree", join(at, &d.name)))?;
            let child = decode(child)?;
            let mode = mode_of(&child.node_properties, 0o755);
            let path = self.add(at, &d.name, FileDigest::folder(mode), &mut names)?;
            below.push((path, child));
        }
        Ok(below)
    }

    fn add(
        &mut self,
        at: &str,
        name: &str,
        entry: FileDigest,
        names: &mut HashSet<String>,
    ) -> Result<String, String> {
        if !is_name(name) || !names.insert(name.to_string()) {
            return Err(format!("`{at}` names `{name}`, not one plain name once"));
        }
        *self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| format!("it holds more than {MAX_ENTRIES} entries"))?;
        let path = join(at, name);
        self.entries.push((path.clone(), entry));
        Ok(path)
    }
}

/// A `Tree`'s root and children as the bytes they were sent as: a `Directory`'s digest is over
/// its producer's encoding, which decoding and encoding again need not reproduce.
fn split_tree(mut bytes: &[u8]) -> Result<(&[u8], Vec<&[u8]>), String> {
    let mut root = None;
    let mut children = Vec::new();
    while !bytes.is_empty() {
        let key = prost::encoding::decode_varint(&mut bytes).map_err(|e| e.to_string())?;
        let len = prost::encoding::decode_varint(&mut bytes).map_err(|e| e.to_string())?;
        let len = usize::try_from(len).ok().filter(|l| *l <= bytes.len());
        let Some(len) = len.filter(|_| key & 7 == 2) else {
            return Err("its tree is not a Tree message".into());
        };
        let (message, rest) = bytes.split_at(len);
        bytes = rest;
        match key >> 3 {
            1 if root.is_none() => root = Some(message),
            1 => return Err("its tree has two roots".into()),
            2 => children.push(message),
            _ => return Err("its tree is not a Tree message".into()),
        }
    }
    Ok((root.ok_or("its tree has no root")?, children))
}

fn decode(bytes: &[u8]) -> Result<re::Directory, String> {
    re::Directory::decode(bytes).map_err(|e| format!("a folder of its tree does not decode: {e}"))
}

fn mode_of(p: &Option<re::NodeProperties>, default: u32) -> u32 {
    p.as_ref()
        .and_then(|p| p.unix_mode.as_ref())
        .map_or(default, |m| m.value)
}

/// One plain path component.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazel_remote_apis::google::protobuf::UInt32Value;

    fn file(name: &str, content: &[u8], mode: Option<u32>) -> re::FileNode {
        re::FileNode {
            name: name.into(),
            digest: Some(digest_of(content)),
            is_executable: mode.is_some_and(|m| m & 0o100 != 0),
            node_properties: mode.map(|m| re::NodeProperties {
                unix_mode: Some(UInt32Value { value: m }),
                ..Default::default()
            }),
        }
    }

    fn sub(name: &str, d: &re::Directory) -> re::DirectoryNode {
        re::DirectoryNode {
            name: name.into(),
            digest: Some(digest_of(&d.encode_to_vec())),
        }
    }

    /// `dist/` holding app.js (0644), bin/run (0755), a link and an empty folder shared twice.
    fn tree() -> (re::Tree, re::Directory) {
        let empty = re::Directory::default();
        let bin = re::Directory {
            files: vec![file("run", b"#!/bin/sh\n", Some(0o755))],
            directories: vec![sub("e", &empty)],
            ..Default::default()
        };
        let root = re::Directory {
            files: vec![file("app.js", b"x()", Some(0o644))],
            directories: vec![sub("bin", &bin), sub("e", &empty)],
            symlinks: vec![re::SymlinkNode {
                name: "current".into(),
                target: "bin/run".into(),
                node_properties: None,
            }],
            ..Default::default()
        };
        let t = re::Tree {
            root: Some(root.clone()),
            children: vec![bin, empty],
        };
        (t, root)
    }

    fn result_of(path: &str, t: &re::Tree) -> (re::ActionResult, Trees) {
        let bytes = t.encode_to_vec();
        let d = digest_of(&bytes);
        let result = re::ActionResult {
            output_directories: vec![re::OutputDirectory {
                path: path.into(),
                tree_digest: Some(d.clone()),
                root_directory_digest: t.root.as_ref().map(|r| digest_of(&r.encode_to_vec())),
                ..Default::default()
            }],
            ..Default::default()
        };
        (result, [(d.hash, bytes)].into())
    }

    fn expanded(path: &str, t: &re::Tree) -> Result<Manifest, String> {
        let (result, trees) = result_of(path, t);
        assert_eq!(tree_blobs(&result).unwrap().len(), 1);
        let mut m = Manifest::new();
        expand_all(&result, &trees, &mut m).map(|()| m)
    }

    #[test]
    fn a_tree_becomes_the_entries_of_a_flat_record() {
        let (t, _) = tree();
        let m = expanded("dist", &t).unwrap();
        let paths: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "dist",
                "dist/app.js",
                "dist/bin",
                "dist/bin/e",
                "dist/bin/run",
                "dist/current",
                "dist/e"
            ]
        );
        assert!(m["dist"].dir && m["dist/e"].dir && m["dist/bin/e"].dir);
        let run = &m["dist/bin/run"];
        assert_eq!(run.sha256, digest_of(b"#!/bin/sh\n").hash);
        assert_eq!((run.executable, run.mode), (true, Some(0o755)));
        assert_eq!(m["dist/app.js"].mode, Some(0o644));
        assert_eq!(m["dist/current"].link.as_deref(), Some("bin/run"));
        crate::cache::materialize::check(&m).unwrap();
        // The whole working folder (path ""): its content, no entry for the folder itself.
        let m = expanded("", &t).unwrap();
        assert!(m.contains_key("app.js") && m.contains_key("bin/run") && !m.contains_key(""));
    }

    #[test]
    fn hostile_trees_are_refused() {
        let (t, root) = tree();
        let with_root = |r: re::Directory| re::Tree {
            root: Some(r),
            children: t.children.clone(),
        };
        let mut cases: Vec<(&str, re::Tree)> = Vec::new();
        for name in ["..", ".", "", "a/b"] {
            let mut r = root.clone();
            r.files[0].name = name.into();
            cases.push(("a name that is not one plain name", with_root(r)));
        }
        let mut r = root.clone();
        r.symlinks[0].name = "app.js".into();
        cases.push(("a name twice", with_root(r)));
        let mut r = root.clone();
        r.directories[0].digest = Some(digest_of(b"no such folder"));
        cases.push(("a folder not in the tree", with_root(r)));
        let mut r = root.clone();
        r.files[0].digest.as_mut().unwrap().hash = "../../etc/passwd".into();
        cases.push(("a malformed file digest", with_root(r)));
        for (what, t) in cases {
            assert!(expanded("dist", &t).is_err(), "{what} must be refused");
        }
        // Bytes that are not the tree the digest names.
        let (mut result, trees) = result_of("dist", &t);
        let other = re::Tree::default().encode_to_vec();
        let swapped: Trees = trees.keys().map(|k| (k.clone(), other.clone())).collect();
        let mut m = Manifest::new();
        assert!(expand_all(&result, &swapped, &mut m).is_err());
        // A root that is not the one `root_directory_digest` names.
        result.output_directories[0].root_directory_digest = Some(digest_of(b"x"));
        assert!(expand_all(&result, &trees, &mut Manifest::new()).is_err());
        // Not fetched at all.
        assert!(expand_all(&result, &Trees::new(), &mut Manifest::new()).is_err());
    }

    #[test]
    fn links_and_paths_go_through_the_records_rules() {
        let (t, mut root) = tree();
        root.symlinks[0].target = "../../../etc/passwd".into();
        let t = re::Tree {
            root: Some(root),
            children: t.children,
        };
        let m = expanded("dist", &t).unwrap();
        assert!(
            crate::cache::materialize::check(&m).is_err(),
            "a link out of the project"
        );
        let m = expanded("../up", &tree().0).unwrap();
        assert!(
            crate::cache::materialize::check(&m).is_err(),
            "an output folder outside"
        );
    }

    #[test]
    fn a_tree_naming_one_folder_many_times_stays_bounded() {
        // Each level names the one below twice: 2^40 paths from 41 small messages.
        let mut d = re::Directory::default();
        let mut children = Vec::new();
        for _ in 0..40 {
            let up = re::Directory {
                directories: vec![sub("a", &d), sub("b", &d)],
                ..Default::default()
            };
            children.push(d);
            d = up;
        }
        let t = re::Tree {
            root: Some(d),
            children,
        };
        let err = expanded("o", &t).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
