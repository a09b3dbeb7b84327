//! Whether a folder is a cache folder of ours: one that holds the `CACHEDIR.TAG` flamenco-build
//! writes, or is empty or absent (then it is ours to take). Nothing in a folder is ever cleared,
//! trimmed or written before this holds, and only the entries of our own layout are touched.

use std::path::Path;

use super::write_atomic;
use crate::error::{Error, Result};

pub(crate) const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by flamenco-build.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The first line of every cache directory tag.
pub(crate) const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// The entries a cache folder of ours holds: all that `clean-cache`, trimming and temp cleanup
/// ever touch. Anything else in the folder is left alone.
pub(crate) const OWN_ENTRIES: [&str; 9] = [
    "CACHEDIR.TAG",
    "VERSION",
    "lock",
    "last-gc",
    "stat-cache.json",
    "artifacts",
    "metadata",
    "tmp",
    "runs",
];

/// What a cache folder is to us.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// It holds our CACHEDIR.TAG.
    Ours,
    /// It does not exist, or is empty: ours to take.
    Free,
}

/// Makes sure `dir` is a cache folder of ours before anything is written in it: tags an absent or
/// empty folder; refuses a folder holding anything else (clearing or trimming it would delete a
/// stranger's files).
pub(crate) fn claim(dir: &Path) -> Result<()> {
    if ownership(dir)? == Ownership::Ours {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(Error::io("cannot create the cache folder", dir))?;
    let tag = dir.join("CACHEDIR.TAG");
    write_atomic(&tag, CACHEDIR_TAG.as_bytes()).map_err(Error::io("cannot write", &tag))
}

/// Whether `dir` is a cache folder of ours; an error naming the folder and why when it is not.
pub(crate) fn ownership(dir: &Path) -> Result<Ownership> {
    if tagged(dir)? {
        return Ok(Ownership::Ours);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ownership::Free),
        Err(e) => return Err(Error::io("cannot read the cache folder", dir)(e)),
    };
    // A temp file is what a build that is tagging the folder right now leaves for a moment.
    let strangers = entries
        .flatten()
        .any(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"));
    if !strangers {
        return Ok(Ownership::Free);
    }
    // A build tags a new folder before it writes anything else in it: another build may have
    // just done both since the tag was looked for.
    if tagged(dir)? {
        return Ok(Ownership::Ours);
    }
    Err(foreign(dir, "it holds files and no CACHEDIR.TAG"))
}

fn foreign(dir: &Path, reason: &str) -> Error {
    Error::ForeignCache {
        dir: dir.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Whether `dir` holds our tag (an error when it holds another program's, or is no folder).
fn tagged(dir: &Path) -> Result<bool> {
    let tag = dir.join("CACHEDIR.TAG");
    match std::fs::read_to_string(&tag) {
        Ok(text) if is_our_tag(&text) => Ok(true),
        Ok(_) => Err(foreign(
            dir,
            "its CACHEDIR.TAG was not written by flamenco-build",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(foreign(dir, "it is not a folder (and has no CACHEDIR.TAG)"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("cannot read the cache tag", &tag)(e)),
    }
}

/// Our tag: the standard signature line first, and flamenco-build named below it.
pub(crate) fn is_our_tag(text: &str) -> bool {
    let mut lines = text.lines();
    lines.next().is_some_and(|l| l.trim_end() == TAG_SIGNATURE)
        && lines.any(|l| l.contains("flamenco-build"))
}

/// Makes `dir/sub` a folder of the cache (a link or a file there is refused, not followed).
pub(crate) fn own_folder(dir: &Path, sub: &str) -> Result<()> {
    let p = dir.join(sub);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(foreign(dir, &format!("its `{sub}` is not a folder"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&p).map_err(Error::io("cannot create the cache folder", &p))
        }
        Err(e) => Err(Error::io("cannot read the cache folder", &p)(e)),
    }
}

/// A task name as a file name of the cache: one safe path component.
pub(crate) fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}
