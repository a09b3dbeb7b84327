//! What flamenco-build asks of the project's git: HEAD read from git's files ([`head`]), and,
//! only when HEAD moved, `git` itself for a commit time or a short hash.

pub(crate) mod head;
mod pathspec;

use std::path::Path;
use std::process::{Command, Stdio};

pub(crate) use pathspec::pathspecs;

/// `git -C root ARGS`'s trimmed output, None when git is missing or fails.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The full id of HEAD, when git has to be asked (see [`head::read_head`]).
pub(crate) fn head_id(root: &Path) -> Option<String> {
    git(root, &["rev-parse", "--verify", "-q", "HEAD"]).filter(|s| !s.is_empty())
}

/// `git rev-parse --short HEAD`.
pub(crate) fn short_hash(root: &Path) -> Option<String> {
    git(root, &["rev-parse", "--short", "HEAD"]).filter(|s| !s.is_empty())
}

/// The commit time (seconds since 1970) of the last commit that touched `specs`, "0" when none
/// did, git is missing or `specs` is empty.
pub(crate) fn last_commit_time(root: &Path, specs: &[String]) -> String {
    if specs.is_empty() {
        return "0".into();
    }
    let mut args = vec!["log", "-1", "--no-show-signature", "--format=%ct", "--"];
    args.extend(specs.iter().map(String::as_str));
    git(root, &args)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| "0".into())
}
