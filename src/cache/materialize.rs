//! Turning a record of outputs back into files in a staging folder, whichever tier holds its
//! blobs: folders and symlinks first, then the files (which the tier fills from its blobs, each
//! checked against its digest), then the folders' modes. A record is checked as hostile input,
//! with the same rules as a task's output archive: safe relative paths, nothing below a file or a
//! link, every link resolved through the record's own links and kept inside the project.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::storage::{BlobRead, BlobRef};
use crate::config::Task;
use crate::fingerprint::{ArchiveTree, FileDigest, Manifest, Node, output_mode};

/// A path of a record that can be joined to a folder safely: relative, `/`-separated, with no
/// empty, `.` or `..` component and no NUL.
pub(crate) fn is_safe_rel(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

fn node_of(d: &FileDigest) -> Node {
    match (&d.link, d.dir) {
        (Some(t), _) => Node::Symlink(t.clone()),
        (None, true) => Node::Dir,
        (None, false) => Node::File,
    }
}

/// Checks a record: every path safe, none below a file or a link, every link inside the project.
pub(crate) fn check(outputs: &Manifest) -> Result<(), String> {
    let mut tree = ArchiveTree::default();
    // Sorted paths put a folder before what it holds.
    for (rel, d) in outputs {
        if !is_safe_rel(rel) {
            return Err(format!("names an unsafe path `{rel}`"));
        }
        tree.add(rel, node_of(d))?;
    }
    tree.check_links()
        .map_err(|(rel, why)| format!("`{rel}`: {why}"))
}

/// Lays out `outputs` in `staging` (folders, parents, symlinks) and returns the files to fill from
/// blobs. The record must have passed [`check`].
pub(crate) fn lay_out(outputs: &Manifest, staging: &Path) -> Result<Vec<BlobRead>, String> {
    let mut files = Vec::new();
    for (rel, d) in outputs {
        let dest = staging.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {rel}: {e}"))?;
        }
        match (&d.link, d.dir) {
            (Some(target), _) => std::os::unix::fs::symlink(target, &dest)
                .map_err(|e| format!("cannot create link {rel}: {e}"))?,
            (None, true) => std::fs::create_dir_all(&dest)
                .map_err(|e| format!("cannot create folder {rel}: {e}"))?,
            (None, false) => files.push(BlobRead {
                blob: BlobRef {
                    sha256: d.sha256.clone(),
                    size: d.size,
                },
                to: dest,
                mode: file_mode(d),
            }),
        }
    }
    Ok(files)
}

/// Gives the folders their recorded modes, deepest first, once their content is in place (a
/// read-only folder could not be filled after).
pub(crate) fn finish(outputs: &Manifest, staging: &Path) -> Result<(), String> {
    for (rel, d) in outputs.iter().rev().filter(|(_, d)| d.dir) {
        let mode = file_mode(d);
        std::fs::set_permissions(staging.join(rel), std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {rel}: {e}"))?;
    }
    Ok(())
}

/// A path of a record from another machine that lies outside the task's declared outputs.
pub(crate) fn outside_outputs<'a>(task: &Task, outputs: &'a Manifest) -> Option<&'a str> {
    let above_an_output = |rel: &str| {
        task.outputs.iter().any(|o| {
            let p = o.prefix();
            p == rel || p.starts_with(&format!("{rel}/"))
        })
    };
    outputs
        .iter()
        .find(|(rel, d)| {
            let declared = task.outputs.iter().any(|o| o.contains(rel));
            !(declared || d.dir && above_an_output(rel))
        })
        .map(|(rel, _)| rel.as_str())
}

/// A declared output of `task` that a record from another machine does not hold.
pub(crate) fn missing_output<'a>(task: &'a Task, outputs: &Manifest) -> Option<&'a str> {
    task.outputs
        .iter()
        .find(|o| !outputs.keys().any(|rel| o.contains(rel)))
        .map(|o| o.path.as_str())
}

/// The mode a file or folder of a record is restored with (see [`output_mode`]); a record
/// without modes goes by the executable bit.
pub(crate) fn file_mode(d: &FileDigest) -> u32 {
    match d.mode {
        Some(m) => output_mode(m, d.dir),
        None if d.dir || d.executable => 0o755,
        None => 0o644,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: &str) -> FileDigest {
        FileDigest {
            sha256: sha.into(),
            size: 1,
            executable: false,
            link: None,
            mode: Some(0o600),
            dir: false,
        }
    }

    fn link(t: &str) -> FileDigest {
        FileDigest {
            link: Some(t.into()),
            ..file("")
        }
    }

    #[test]
    fn hostile_records_are_refused() {
        let cases: Vec<(&str, Manifest)> = vec![
            ("`..`", [("o/../x".to_string(), file("a"))].into()),
            ("absolute", [("/etc/x".to_string(), file("a"))].into()),
            ("empty part", [("o//x".to_string(), file("a"))].into()),
            (
                "below a link",
                [
                    ("o/l".to_string(), link(".")),
                    ("o/l/x".to_string(), file("a")),
                ]
                .into(),
            ),
            (
                "chained links out",
                [
                    ("o/d".to_string(), link("..")),
                    ("o/L".to_string(), link("d/d/d/../../../../etc/passwd")),
                ]
                .into(),
            ),
            ("absolute link", [("o/l".to_string(), link("/etc"))].into()),
        ];
        for (what, m) in cases {
            assert!(check(&m).is_err(), "{what} must be refused");
        }
        let ok: Manifest = [
            ("o".to_string(), FileDigest::folder(0o700)),
            ("o/a".to_string(), file("a")),
            ("o/l".to_string(), link("a")),
        ]
        .into();
        check(&ok).unwrap();
    }

    #[test]
    fn lays_out_folders_links_and_modes() {
        let t = tempfile::tempdir().unwrap();
        let m: Manifest = [
            ("o".to_string(), FileDigest::folder(0o500)),
            ("o/empty".to_string(), FileDigest::folder(0o755)),
            ("o/a".to_string(), file("a")),
            ("o/l".to_string(), link("a")),
        ]
        .into();
        check(&m).unwrap();
        let files = lay_out(&m, t.path()).unwrap();
        assert_eq!(files.len(), 1);
        std::fs::write(&files[0].to, b"x").unwrap();
        finish(&m, t.path()).unwrap();
        let mode = |p: &str| {
            std::fs::symlink_metadata(t.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("o"), 0o700, "the owner keeps rwx on folders");
        assert!(t.path().join("o/empty").is_dir());
        assert_eq!(
            std::fs::read_link(t.path().join("o/l")).unwrap(),
            Path::new("a")
        );
        std::fs::set_permissions(t.path().join("o"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
}
