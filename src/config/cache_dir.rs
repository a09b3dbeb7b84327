//! Where the artifact cache may be: a folder of its own. flamenco-build clears, trims and
//! replaces what its cache folder holds, so it may never be the project root, a parent of it,
//! `/`, or the home folder, however `cache_dir` is written (`./`, `..`, absolute, through a link).

use std::path::{Component, Path, PathBuf};

/// A `cache_dir` setting, checked.
#[derive(Debug)]
pub(super) struct CacheDir {
    /// What the settings keep: relative to the root when inside it, else absolute; normalised.
    pub setting: PathBuf,
    /// The cache folder's project-relative paths when it lies inside the project: as written
    /// and as the file system resolves it (they differ when a link is on the way).
    pub inside: Vec<String>,
}

/// Checks `raw` (as written in the config) against the project `root` (canonical).
pub(super) fn resolve(root: &Path, raw: &str) -> Result<CacheDir, String> {
    let written = lexical(&root.join(raw));
    let real = resolved(&written);
    let homes: Vec<PathBuf> = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| lexical(Path::new(&h)))
        .map(|h| vec![resolved(&h), h])
        .unwrap_or_default();
    let why = |p: &Path| -> Option<&'static str> {
        if p.parent().is_none() {
            Some("is the file system root")
        } else if p == root {
            Some("is the project root itself")
        } else if root.starts_with(p) {
            Some("is a parent folder of the project root")
        } else if homes.iter().any(|h| p == h) {
            Some("is the home folder")
        } else {
            None
        }
    };
    if let Some(why) = why(&written).or_else(|| why(&real)) {
        return Err(format!(
            "`cache_dir` `{raw}` {why}; flamenco-build clears what its cache folder holds, so \
             give it a folder of its own, such as \".build-cache\""
        ));
    }
    let mut inside: Vec<String> = [&written, &real]
        .iter()
        .filter_map(|p| p.strip_prefix(root).ok())
        .map(|rel| rel.to_string_lossy().into_owned())
        .collect();
    inside.dedup();
    let setting = match written.strip_prefix(root) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) => written.clone(),
    };
    Ok(CacheDir { setting, inside })
}

/// `p` with `.` and `..` taken out by their text (`/` has no parent).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `p` as the file system resolves it: its deepest existing folder made canonical (links
/// followed), the part that does not exist yet appended.
fn resolved(p: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut at = p;
    loop {
        if let Ok(real) = at.canonicalize() {
            return missing.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                at = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_forms_normalise_to_one_place() {
        let root = Path::new("/p");
        for raw in [
            ".build-cache",
            "./.build-cache/",
            "/p/.build-cache",
            "x/../.build-cache",
        ] {
            let c = resolve(root, raw).unwrap();
            assert_eq!(c.setting, Path::new(".build-cache"), "{raw}");
            assert_eq!(c.inside, [".build-cache"], "{raw}");
        }
        let c = resolve(root, "../elsewhere").unwrap();
        assert_eq!(c.setting, Path::new("/elsewhere"));
        assert!(c.inside.is_empty());
    }

    #[test]
    fn a_link_to_the_project_is_seen_through() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("proj");
        std::fs::create_dir(&root).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let e = resolve(&root, &link.display().to_string()).unwrap_err();
        assert!(e.contains("is the project root itself"), "{e}");
        let c = resolve(&root, &link.join("c").display().to_string()).unwrap();
        assert_eq!(c.inside, ["c"]);
    }
}
