//! Putting a task's staged outputs into the workspace: a folder output replaces the old folder
//! whole, a glob output its old matches; nothing is removed or written through a symbolic link in
//! a folder of an output's path.

use std::path::Path;

use super::paths;
use crate::config::OutputPath;
use crate::error::{Error, Result};

/// Moves staged outputs into the workspace. A folder output replaces the old folder whole; a glob
/// output first removes the old files it matched. Nothing is removed or written through a
/// symbolic link in a folder of an output's path: every output is checked before the first change.
pub fn place_outputs(staging: &Path, root: &Path, outputs: &[OutputPath]) -> Result<()> {
    for out in outputs {
        paths::check_output(root, out)?;
    }
    for out in outputs {
        if out.is_glob() {
            let old =
                crate::fingerprint::InputFiles::from_outputs(root, std::slice::from_ref(out))?;
            for f in old {
                paths::remove(root, &f.rel)?;
            }
            let staged =
                crate::fingerprint::InputFiles::from_outputs(staging, std::slice::from_ref(out))?;
            for f in staged {
                // Below the glob's literal part, a folder of the workspace may be a link.
                paths::check_parents(root, &f.rel)?;
                move_into_place(&f.abs, &root.join(&f.rel))?;
            }
        } else {
            paths::remove(root, &out.path)?;
            move_into_place(&staging.join(&out.path), &root.join(&out.path))?;
        }
    }
    Ok(())
}

/// Renames a staged output to `to`, whose parent folders the caller checked are no links.
fn move_into_place(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        // A file may stand where the output needs a folder: that is the task's to replace.
        if parent.is_file() {
            paths::remove_path(parent)?;
        }
        std::fs::create_dir_all(parent)
            .map_err(Error::io("cannot create output folder", parent))?;
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        // Staging on another file system: copy instead.
        Err(e) if e.raw_os_error() == Some(18) => copy_recursive(from, to),
        Err(e) => Err(Error::io("cannot move output into place", to)(e)),
    }
}

fn copy_recursive(from: &Path, to: &Path) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(from).map_err(Error::io("cannot read staged output", from))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(Error::io("cannot create output folder", to))?;
        for e in std::fs::read_dir(from).map_err(Error::io("cannot read staged output", from))? {
            let e = e.map_err(Error::io("cannot read staged output", from))?;
            copy_recursive(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        let t = std::fs::read_link(from).map_err(Error::io("cannot read staged output", from))?;
        std::os::unix::fs::symlink(t, to).map_err(Error::io("cannot write output", to))
    } else {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(Error::io("cannot write output", to))
    }
}
