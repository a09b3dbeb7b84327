//! Project paths are read, written and removed only when no folder on their way below the project
//! root is a symbolic link. A link in a parent folder carries a read or a write wherever it points
//! (out of the project, or elsewhere in it) whatever the path's text says, so such a path is
//! refused with an error naming the link. The last component may itself be a link: it is read as
//! a link (never followed) and removed as one.
//!
//! Checked by looking at each folder with `lstat` from the root down, just before the path is
//! used: what could change a folder into a link between the look and the use is the user's own
//! hand, not a task (tasks run in containers and reach the workspace only through checked tars).

use std::io::ErrorKind;
use std::path::Path;

use crate::config::OutputPath;
use crate::error::{Error, Result};

/// The context of the error for a path through a symbolic link; callers that can say which
/// configuration line declared the path recognise it by this.
pub(crate) const LINKED_PARENT: &str = "a parent folder is a symbolic link";

/// Refuses project-relative `rel` when a folder above it (below `root`) is a symbolic link.
pub(crate) fn check_parents(root: &Path, rel: &str) -> Result<()> {
    match rel.rsplit_once('/') {
        Some((parent, _)) => check_folder(root, parent, rel),
        None => Ok(()),
    }
}

/// Refuses `rel` when `folder` (a path at or above it) or any folder above that is a symbolic
/// link. A missing folder ends the look: nothing below it exists, and what is created there later
/// is a real folder.
pub(crate) fn check_folder(root: &Path, folder: &str, rel: &str) -> Result<()> {
    let mut at = root.to_path_buf();
    for part in folder.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(linked(&at, rel)),
            Ok(m) if m.is_dir() => {}
            // A file: nothing lies below it (whoever needs a folder there replaces it).
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(());
            }
            Err(e) => return Err(Error::io("cannot read", &at)(e)),
        }
    }
    Ok(())
}

/// Refuses an output whose path goes through a symbolic link: for a glob, its literal part too
/// (the folder its matches lie in); the output itself may be a link.
pub(crate) fn check_output(root: &Path, out: &OutputPath) -> Result<()> {
    if out.is_glob() {
        check_folder(root, &out.prefix(), &out.path)
    } else {
        check_parents(root, &out.path)
    }
}

/// The error for project-relative `rel`, which would go through the link at `link`.
pub(crate) fn linked(link: &Path, rel: &str) -> Error {
    let target = std::fs::read_link(link)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|e| format!("an unreadable target ({e})"));
    Error::Io {
        context: LINKED_PARENT,
        path: link.to_path_buf(),
        source: std::io::Error::other(format!(
            "it links to {target}; `{rel}` is never read or written through it"
        )),
    }
}

/// Removes the workspace path `rel` (a file, a folder with what it holds, or a link itself,
/// never what a link points to), refusing it when a folder above it is a symbolic link.
pub(crate) fn remove(root: &Path, rel: &str) -> Result<()> {
    check_parents(root, rel)?;
    remove_path(&root.join(rel))
}

/// Removes `path` without following it when it is a link; a missing path is fine.
pub(crate) fn remove_path(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        // remove_dir_all does not follow links inside the folder either.
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).map_err(Error::io("cannot remove output", path))
        }
        Ok(_) => std::fs::remove_file(path).map_err(Error::io("cannot remove output", path)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove output", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_in_any_parent_folder_is_refused_naming_it() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("keep")).unwrap();
        std::fs::write(outside.path().join("keep/a.txt"), "VICTIM").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a/ext")).unwrap();
        // A link whose text stays inside, to a folder that is itself reached through a link.
        std::os::unix::fs::symlink("a/ext", root.join("inside")).unwrap();
        for rel in [
            "a/ext/keep/a.txt",
            "a/ext/keep",
            "inside/keep",
            "inside/x/y/z",
        ] {
            let err = remove(root, rel).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(LINKED_PARENT), "{text}");
            assert!(text.contains(&format!("`{rel}`")), "{text}");
            assert_eq!(err.exit_code(), 5);
        }
        assert!(outside.path().join("keep/a.txt").exists());
        // Real folders, missing ones and a file in the way are fine.
        check_parents(root, "a/b/c").unwrap();
        check_parents(root, "a/missing/deeper/x").unwrap();
        check_parents(root, "top").unwrap();
        // The last component may be a link: it is removed itself, never what it points to.
        remove(root, "a/ext").unwrap();
        assert!(!root.join("a/ext").exists());
        assert!(outside.path().join("keep/a.txt").exists());
    }
}
