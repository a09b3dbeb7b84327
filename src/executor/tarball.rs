//! Tars going into a task (deterministic: sorted, explicit folders, fixed owner, mode and time)
//! and tars coming out of it (every entry checked before anything lands in the workspace).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::workspace_paths;
use crate::config::OutputPath;
use crate::error::{Error, Result};
use crate::fingerprint::{FileKind, InputFile};

/// The folder tasks run in, inside their container.
pub const WORKSPACE: &str = "workspace";

/// Every entry's mtime: 2000-01-01, a fixed time that zip and friends still accept.
const MTIME: u64 = 946_684_800;

/// Writes the tar of a task's files, rooted at `/`: `workspace/` and every folder on the way to
/// each file as explicit entries owned by `user`, files in path order.
pub fn write_input_tar<W: Write>(out: W, files: &[InputFile], user: (u32, u32)) -> Result<W> {
    let mut dirs: BTreeMap<String, ()> = BTreeMap::new();
    dirs.insert(WORKSPACE.to_string(), ());
    for f in files {
        let mut parts: Vec<&str> = f.rel.split('/').collect();
        parts.pop();
        let mut acc = String::from(WORKSPACE);
        for p in parts {
            acc.push('/');
            acc.push_str(p);
            dirs.insert(acc.clone(), ());
        }
    }
    // Folders first (sorted, so parents before children), then files: the order is a function of
    // the file set alone.
    let mut b = tar::Builder::new(out);
    let tar_err = |e: std::io::Error| Error::Io {
        context: "cannot write the input archive",
        path: PathBuf::from("<upload>"),
        source: e,
    };
    for dir in dirs.keys() {
        let mut h = header(tar::EntryType::Directory, 0o755, user);
        h.set_size(0);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .map_err(tar_err)?;
    }
    for f in files {
        let name = format!("{WORKSPACE}/{}", f.rel);
        match &f.kind {
            FileKind::File { executable, .. } => {
                let file =
                    std::fs::File::open(&f.abs).map_err(Error::io("cannot read input", &f.abs))?;
                let size = file
                    .metadata()
                    .map_err(Error::io("cannot read input", &f.abs))?
                    .len();
                let mode = if *executable { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, user);
                h.set_size(size);
                b.append_data(&mut h, &name, file.take(size))
                    .map_err(tar_err)?;
            }
            FileKind::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, user);
                h.set_size(0);
                b.append_link(&mut h, &name, target).map_err(tar_err)?;
            }
        }
    }
    b.into_inner().map_err(tar_err)
}

fn header(kind: tar::EntryType, mode: u32, (uid, gid): (u32, u32)) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(MTIME);
    h
}

/// Extracts the archive the engine gave for one output (its entries start with the output's last
/// path component) into `staging`, refusing absolute paths, `..`, links out of the project, device
/// nodes and anything outside the output. Returns the number of files written.
pub fn extract_output<R: Read>(
    reader: R,
    task: &str,
    output: &OutputPath,
    staging: &Path,
) -> Result<usize> {
    let prefix = output.prefix();
    let (parent, _) = match prefix.rsplit_once('/') {
        Some((p, b)) => (p.to_string(), b.to_string()),
        None => (String::new(), prefix.clone()),
    };
    let refuse = |entry: &str, reason: &str| Error::UnsafeArchive {
        task: task.to_string(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let io = |e: std::io::Error| Error::Io {
        context: "cannot read the output archive",
        path: PathBuf::from(&prefix),
        source: e,
    };
    let mut archive = tar::Archive::new(reader);
    let mut written = 0;
    let mut extracted: HashMap<String, PathBuf> = HashMap::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut parts = Vec::new();
        for c in Path::new(&raw).components() {
            match c {
                Component::Normal(p) => parts.push(
                    p.to_str()
                        .ok_or_else(|| refuse(&raw, "name is not UTF-8"))?
                        .to_string(),
                ),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse(&raw, "absolute path"));
                }
                Component::ParentDir => return Err(refuse(&raw, "path contains `..`")),
            }
        }
        if parts.is_empty() {
            continue;
        }
        let rel = if parent.is_empty() {
            parts.join("/")
        } else {
            format!("{parent}/{}", parts.join("/"))
        };
        if !(prefix.is_empty() || rel == prefix || rel.starts_with(&format!("{prefix}/"))) {
            return Err(refuse(&raw, "outside the declared output"));
        }
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        if !is_dir && !output.contains(&rel) {
            continue; // a glob output: only its matches come back
        }
        let dest = staging.join(&rel);
        // A file where the entry needs a folder, or a folder where it needs a file: the archive
        // contradicts itself (or tries to reuse a path with another meaning); refuse it.
        if let Some(conflict) = type_conflict(staging, &rel, is_dir) {
            return Err(refuse(&raw, &conflict));
        }
        match kind {
            tar::EntryType::Directory => {
                if !output.is_glob() {
                    std::fs::create_dir_all(&dest)
                        .map_err(Error::io("cannot create output folder", &dest))?;
                }
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                make_parent(&dest)?;
                let mode = entry.header().mode().map_err(io)?;
                let mut f = std::fs::File::create(&dest)
                    .map_err(Error::io("cannot write output", &dest))?;
                std::io::copy(&mut entry, &mut f)
                    .map_err(Error::io("cannot write output", &dest))?;
                let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                f.set_permissions(std::fs::Permissions::from_mode(perm))
                    .map_err(Error::io("cannot write output", &dest))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| refuse(&raw, "symlink without a target"))?
                    .into_owned();
                if !crate::fingerprint::link_stays_inside(&rel, &target) {
                    return Err(refuse(
                        &raw,
                        &format!(
                            "symlink points outside the workspace ({})",
                            target.display()
                        ),
                    ));
                }
                make_parent(&dest)?;
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(Error::io("cannot write output", &dest))?;
            }
            tar::EntryType::Link => {
                // A hard link may only repeat a file of this same output.
                let target = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| refuse(&raw, "hard link without a target"))?
                    .into_owned();
                let t = target
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_string();
                let t_rel = if parent.is_empty() {
                    t.clone()
                } else {
                    format!("{parent}/{t}")
                };
                let Some(src) = extracted.get(&t_rel) else {
                    return Err(refuse(
                        &raw,
                        &format!("hard link to `{t}`, which is not part of the output"),
                    ));
                };
                make_parent(&dest)?;
                std::fs::copy(src, &dest).map_err(Error::io("cannot write output", &dest))?;
            }
            other => {
                return Err(refuse(
                    &raw,
                    &format!("{other:?} entries (devices, fifos) are not allowed"),
                ));
            }
        }
        extracted.insert(rel, dest);
        written += 1;
    }
    Ok(written)
}

/// Whether extracting `rel` (a folder when `is_dir`) into `staging` would meet a path of another
/// type: a file standing where a folder is expected, or a folder where a file is.
fn type_conflict(staging: &Path, rel: &str, is_dir: bool) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut at = staging.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&at) {
            Err(_) => return None,
            Ok(m) if !last && !m.is_dir() => {
                return Some(format!(
                    "a file stands where a folder is expected (`{}`)",
                    parts[..=i].join("/")
                ));
            }
            Ok(m) if last && m.is_dir() && !is_dir => {
                return Some(format!(
                    "a folder stands where a file is expected (`{rel}`)"
                ));
            }
            Ok(m) if last && !m.is_dir() && is_dir => {
                return Some(format!(
                    "a file stands where a folder is expected (`{rel}`)"
                ));
            }
            Ok(_) => {}
        }
    }
    None
}

fn make_parent(path: &Path) -> Result<()> {
    let parent = path.parent().expect("inside staging");
    std::fs::create_dir_all(parent).map_err(Error::io("cannot create output folder", parent))
}

/// Moves staged outputs into the workspace. A folder output replaces the old folder whole; a glob
/// output first removes the old files it matched. Nothing is removed or written through a
/// symbolic link in a folder of an output's path: every output is checked before the first change.
pub fn place_outputs(staging: &Path, root: &Path, outputs: &[OutputPath]) -> Result<()> {
    for out in outputs {
        workspace_paths::check_output(root, out)?;
    }
    for out in outputs {
        if out.is_glob() {
            let old =
                crate::fingerprint::InputFiles::from_outputs(root, std::slice::from_ref(out))?;
            for f in old {
                workspace_paths::remove(root, &f.rel)?;
            }
            let staged =
                crate::fingerprint::InputFiles::from_outputs(staging, std::slice::from_ref(out))?;
            for f in staged {
                // Below the glob's literal part, a folder of the workspace may be a link.
                workspace_paths::check_parents(root, &f.rel)?;
                move_into_place(&f.abs, &root.join(&f.rel))?;
            }
        } else {
            workspace_paths::remove(root, &out.path)?;
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
            workspace_paths::remove_path(parent)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &str) -> OutputPath {
        OutputPath::new(p).unwrap()
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, name, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    // Bypass the builder's own path checks to write hostile names.
                    let bytes = name.as_bytes();
                    let gnu = h.as_gnu_mut().unwrap();
                    gnu.name[..bytes.len()].copy_from_slice(bytes);
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn input_tar_is_deterministic_with_explicit_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/c.txt"), "hi").unwrap();
        std::fs::write(dir.path().join("z"), "z").unwrap();
        let files = vec![
            InputFile {
                rel: "a/b/c.txt".into(),
                abs: dir.path().join("a/b/c.txt"),
                kind: FileKind::File {
                    executable: false,
                    size: 2,
                },
                stat: None,
            },
            InputFile {
                rel: "z".into(),
                abs: dir.path().join("z"),
                kind: FileKind::File {
                    executable: true,
                    size: 1,
                },
                stat: None,
            },
        ];
        let one = write_input_tar(Vec::new(), &files, (1000, 1001)).unwrap();
        let two = write_input_tar(Vec::new(), &files, (1000, 1001)).unwrap();
        assert_eq!(one, two);
        let mut ar = tar::Archive::new(&one[..]);
        let got: Vec<(String, u32, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                    e.header().uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("workspace/".into(), 0o755, 1000),
                ("workspace/a/".into(), 0o755, 1000),
                ("workspace/a/b/".into(), 0o755, 1000),
                ("workspace/a/b/c.txt".into(), 0o644, 1000),
                ("workspace/z".into(), 0o755, 1000),
            ]
        );
    }

    #[test]
    fn hostile_entries_are_refused_before_anything_is_written() {
        use tar::EntryType::*;
        type Entries<'a> = &'a [(&'a str, tar::EntryType, &'a str)];
        let cases: &[(Entries, &str)] = &[
            (&[("/etc/passwd", Regular, "x")], "absolute"),
            (&[("static/../../x", Regular, "x")], "`..`"),
            (
                &[("static/l", Symlink, "../../../etc")],
                "outside the workspace",
            ),
            (
                &[("static/l", Symlink, "/etc/passwd")],
                "outside the workspace",
            ),
            (
                &[("static/h", Link, "/etc/passwd")],
                "not part of the output",
            ),
            (&[("static/dev", Char, "")], "not allowed"),
            (&[("other/x", Regular, "x")], "outside the declared output"),
            (
                &[("static/a", Regular, "x"), ("static/a/b", Regular, "y")],
                "a file stands where a folder is expected",
            ),
            (
                &[("static/d/", Directory, ""), ("static/d", Regular, "y")],
                "a folder stands where a file is expected",
            ),
        ];
        for (entries, why) in cases {
            let staging = tempfile::tempdir().unwrap();
            let err = extract_output(
                &tar_of(entries)[..],
                "t",
                &out("web/static"),
                staging.path(),
            )
            .unwrap_err();
            assert!(err.to_string().contains(why), "{err} should say {why}");
            assert!(matches!(err, Error::UnsafeArchive { .. }));
        }
    }

    #[test]
    fn outputs_replace_old_folders_whole() {
        use tar::EntryType::*;
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("web/static")).unwrap();
        std::fs::write(root.path().join("web/static/stale.js"), "old").unwrap();
        let staging = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            ("static/", Directory, ""),
            ("static/app.js", Regular, "new"),
            ("static/l", Symlink, "app.js"),
        ]);
        assert_eq!(
            extract_output(&tar[..], "t", &out("web/static"), staging.path()).unwrap(),
            2
        );
        place_outputs(staging.path(), root.path(), &[out("web/static")]).unwrap();
        assert!(!root.path().join("web/static/stale.js").exists());
        assert_eq!(
            std::fs::read_to_string(root.path().join("web/static/l")).unwrap(),
            "new"
        );
    }

    // Issue 10 finding 2: no output is written or removed through a symlink in any folder of its
    // path. Failed on main before this change: placing `ext/keep` deleted the outside
    // `keep/a.txt` and moved the new files there; the glob output wrote through `gen -> ext/gen`.
    #[test]
    fn outputs_are_never_placed_through_a_symlinked_folder() {
        use tar::EntryType::*;
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("keep")).unwrap();
        std::fs::create_dir_all(outside.path().join("gen")).unwrap();
        std::fs::write(outside.path().join("keep/a.txt"), "VICTIM").unwrap();
        std::fs::write(outside.path().join("gen/x.txt"), "VICTIM").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("ext")).unwrap();
        std::os::unix::fs::symlink("ext/gen", root.path().join("gen")).unwrap();
        for (o, tar) in [
            (
                out("ext/keep"),
                tar_of(&[("keep/", Directory, ""), ("keep/b.txt", Regular, "new")]),
            ),
            (
                out("gen/*.txt"),
                tar_of(&[("gen/", Directory, ""), ("gen/x.txt", Regular, "new")]),
            ),
        ] {
            let staging = tempfile::tempdir().unwrap();
            extract_output(&tar[..], "t", &o, staging.path()).unwrap();
            let err = place_outputs(staging.path(), root.path(), std::slice::from_ref(&o))
                .unwrap_err()
                .to_string();
            assert!(err.contains("a parent folder is a symbolic link"), "{err}");
        }
        assert_eq!(
            std::fs::read_to_string(outside.path().join("keep/a.txt")).unwrap(),
            "VICTIM"
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("gen/x.txt")).unwrap(),
            "VICTIM"
        );
        assert!(!outside.path().join("keep/b.txt").exists());
    }

    #[test]
    fn glob_outputs_keep_only_matches() {
        use tar::EntryType::*;
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("pkg/api")).unwrap();
        std::fs::write(root.path().join("pkg/api/old.gen.go"), "old").unwrap();
        std::fs::write(root.path().join("pkg/api/keep.go"), "mine").unwrap();
        let staging = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            ("api/", Directory, ""),
            ("api/a.gen.go", Regular, "gen"),
            ("api/keep.go", Regular, "theirs"),
        ]);
        let o = out("pkg/api/*.gen.go");
        assert_eq!(
            extract_output(&tar[..], "t", &o, staging.path()).unwrap(),
            1
        );
        place_outputs(staging.path(), root.path(), &[o]).unwrap();
        assert!(!root.path().join("pkg/api/old.gen.go").exists());
        assert_eq!(
            std::fs::read_to_string(root.path().join("pkg/api/a.gen.go")).unwrap(),
            "gen"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("pkg/api/keep.go")).unwrap(),
            "mine"
        );
    }
}
