//! The commit a project's HEAD names, read from git's own files without spawning `git`: a
//! no-change build must not pay for a process (see `scheduler::source_date`).

use std::path::{Path, PathBuf};

/// What HEAD names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// A commit id (hex, as git writes it).
    Commit(String),
    /// A branch with no commit yet.
    Unborn,
    /// No `.git` in the project's folder or above it.
    NotGit,
}

/// HEAD of the repository holding `root`, or None when git's files say something this reader
/// does not follow (reftable, `GIT_DIR`, a broken link): the caller asks `git` then.
pub(crate) fn read_head(root: &Path) -> Option<Head> {
    if std::env::var_os("GIT_DIR").is_some() || std::env::var_os("GIT_COMMON_DIR").is_some() {
        return None;
    }
    let Some(git_dir) = find_git_dir(root)? else {
        return Some(Head::NotGit);
    };
    let common = common_dir(&git_dir)?;
    if common.join("reftable").exists() {
        return None;
    }
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let mut target = head.trim().to_string();
    // A symbolic ref may name another; git stops after 5 levels too.
    for _ in 0..5 {
        let Some(name) = target.strip_prefix("ref:").map(str::trim) else {
            return is_id(&target).then_some(Head::Commit(target));
        };
        if !name.starts_with("refs/") || name.split('/').any(|c| c == ".." || c.is_empty()) {
            return None;
        }
        let dir = if per_worktree(name) {
            &git_dir
        } else {
            &common
        };
        target = match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match packed_ref(&common, name)? {
                    Some(id) => id,
                    None => return Some(Head::Unborn),
                }
            }
            Err(_) => return None,
        };
    }
    None
}

/// The git dir of the first folder at or above `root` that holds `.git` (a folder, or a file
/// `gitdir: …` as in a linked worktree or a submodule); Some(None) when there is none.
fn find_git_dir(root: &Path) -> Option<Option<PathBuf>> {
    for dir in root.ancestors() {
        let dot = dir.join(".git");
        let Ok(meta) = std::fs::metadata(&dot) else {
            continue;
        };
        if meta.is_dir() {
            return Some(Some(dot));
        }
        let text = std::fs::read_to_string(&dot).ok()?;
        let target = text.trim().strip_prefix("gitdir:")?.trim();
        return Some(Some(dir.join(target)));
    }
    Some(None)
}

/// Where the shared refs live: a linked worktree's git dir names it in `commondir`.
fn common_dir(git_dir: &Path) -> Option<PathBuf> {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => Some(git_dir.join(text.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(git_dir.to_path_buf()),
        Err(_) => None,
    }
}

/// Refs a linked worktree keeps for itself rather than in the common dir.
fn per_worktree(name: &str) -> bool {
    name.starts_with("refs/bisect/")
        || name.starts_with("refs/worktree/")
        || name.starts_with("refs/rewritten/")
}

/// The id `packed-refs` gives `name`: Some(None) when it has none (or there is no such file).
fn packed_ref(common: &Path, name: &str) -> Option<Option<String>> {
    let text = match std::fs::read_to_string(common.join("packed-refs")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(None),
        Err(_) => return None,
    };
    let found = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, r)| r.trim() == name)
        .map(|(id, _)| id.to_string());
    match found {
        Some(id) if is_id(&id) => Some(Some(id)),
        Some(_) => None,
        None => Some(None),
    }
}

/// A full SHA-1 or SHA-256 object id.
fn is_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_loose_ref() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join(".git/HEAD"), "ref: refs/heads/main\n");
        write(&t.path().join(".git/refs/heads/main"), &format!("{A}\n"));
        // The project may be a folder of the repository.
        let sub = t.path().join("sub/project");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(read_head(&sub), Some(Head::Commit(A.into())));
    }

    #[test]
    fn a_packed_ref_and_the_loose_one_first() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join(".git/HEAD"), "ref: refs/heads/main\n");
        let packed = format!(
            "# pack-refs with: peeled fully-peeled sorted\n{B} refs/heads/dev\n{A} refs/heads/main\n^{B}\n"
        );
        write(&t.path().join(".git/packed-refs"), &packed);
        assert_eq!(read_head(t.path()), Some(Head::Commit(A.into())));
        write(&t.path().join(".git/refs/heads/main"), &format!("{B}\n"));
        assert_eq!(read_head(t.path()), Some(Head::Commit(B.into())));
    }

    #[test]
    fn detached_unborn_and_outside_git() {
        let t = tempfile::tempdir().unwrap();
        let plain = t.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(read_head(&plain), Some(Head::NotGit));
        write(&t.path().join("r/.git/HEAD"), &format!("{A}\n"));
        assert_eq!(read_head(&t.path().join("r")), Some(Head::Commit(A.into())));
        write(&t.path().join("r/.git/HEAD"), "ref: refs/heads/main\n");
        assert_eq!(read_head(&t.path().join("r")), Some(Head::Unborn));
        write(&t.path().join("r/.git/HEAD"), "garbage\n");
        assert_eq!(read_head(&t.path().join("r")), None);
    }

    #[test]
    fn a_linked_worktree() {
        let t = tempfile::tempdir().unwrap();
        let main = t.path().join("main/.git");
        write(&main.join("refs/heads/main"), &format!("{A}\n"));
        write(&main.join("packed-refs"), &format!("{B} refs/heads/wt\n"));
        write(&main.join("worktrees/wt/HEAD"), "ref: refs/heads/wt\n");
        write(&main.join("worktrees/wt/commondir"), "../..\n");
        let wt = t.path().join("wt");
        write(
            &wt.join(".git"),
            &format!("gitdir: {}\n", main.join("worktrees/wt").display()),
        );
        assert_eq!(read_head(&wt), Some(Head::Commit(B.into())));
        // A relative `gitdir:` is relative to the folder holding `.git`.
        write(&wt.join(".git"), "gitdir: ../main/.git/worktrees/wt\n");
        assert_eq!(read_head(&wt), Some(Head::Commit(B.into())));
    }

    #[test]
    fn reftable_and_escaping_refs_are_left_to_git() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join(".git/HEAD"), "ref: refs/heads/../../x\n");
        assert_eq!(read_head(t.path()), None);
        write(&t.path().join(".git/HEAD"), "ref: refs/heads/.invalid\n");
        std::fs::create_dir_all(t.path().join(".git/reftable")).unwrap();
        assert_eq!(read_head(t.path()), None);
    }
}
