//! Tars going into a task (deterministic: sorted, explicit folders, fixed owner, mode and time)
//! and tars coming out of it (every entry checked before anything lands in the workspace).

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::config::OutputPath;
use crate::error::{Error, Result};
use crate::fingerprint::{ArchiveTree, FileKind, InputFile, Node, output_mode};

/// The folder tasks run in, inside their container.
pub const WORKSPACE: &str = "workspace";

/// Every entry's mtime: 2000-01-01, a fixed time that zip and friends still accept.
const MTIME: u64 = 946_684_800;

/// Writes the tar of a task's files, rooted at `/`: `workspace/`, every folder on the way to
/// each file and every folder given (a dependency's, empty or not) as explicit entries owned by
/// `user`, files in path order. An input that cannot be read fails with its path; `out` failing
/// is the upload of `task` breaking.
pub fn write_input_tar<W: Write>(
    out: W,
    files: &[InputFile],
    user: (u32, u32),
    task: &str,
) -> Result<W> {
    let broke = |source| Error::Upload {
        task: task.to_string(),
        source,
    };
    // Folders first (sorted, so parents before children), then files: the order is a function of
    // the file set alone.
    let mut b = tar::Builder::new(out);
    for dir in input_folders(files) {
        let mut h = header(tar::EntryType::Directory, 0o755, user);
        h.set_size(0);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .map_err(broke)?;
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
                let mut input = Input {
                    file: file.take(size),
                    failed: false,
                };
                match b.append_data(&mut h, &name, &mut input) {
                    Err(e) if input.failed => {
                        return Err(Error::io("cannot read input", &f.abs)(e));
                    }
                    r => r.map_err(broke)?,
                }
            }
            FileKind::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, user);
                h.set_size(0);
                b.append_link(&mut h, &name, target).map_err(broke)?;
            }
            FileKind::Dir => {} // with the folders above
        }
    }
    b.into_inner().map_err(broke)
}

/// `workspace` and every folder of the task's files, sorted.
fn input_folders(files: &[InputFile]) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    dirs.insert(WORKSPACE.to_string());
    for f in files {
        let mut parts: Vec<&str> = f.rel.split('/').collect();
        if f.kind != FileKind::Dir {
            parts.pop();
        }
        let mut acc = String::from(WORKSPACE);
        for p in parts {
            acc.push('/');
            acc.push_str(p);
            dirs.insert(acc.clone());
        }
    }
    dirs
}

/// An input file being copied into the archive, remembering whether reading it failed (rather
/// than writing the archive).
struct Input<R> {
    file: R,
    failed: bool,
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read(buf);
        self.failed |= read.is_err();
        read
    }
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
/// path component) into `staging`, refusing absolute paths, `..`, links that leave the project
/// (resolved through the archive's own links, never the host's), hard links to anything but a
/// regular file extracted before them, device nodes and anything outside the output. Files and
/// folders keep their modes (see [`output_mode`]). Returns the number of files written.
pub fn extract_output<R: Read>(
    reader: R,
    task: &str,
    output: &OutputPath,
    staging: &Path,
) -> Result<usize> {
    let mut x = Extraction::new(task, output, staging);
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| x.io(e))? {
        let entry = entry.map_err(|e| x.io(e))?;
        x.entry(entry)?;
    }
    x.finish()
}

/// One output archive being extracted: what it has written so far, as a tree in memory.
struct Extraction<'a> {
    task: &'a str,
    output: &'a OutputPath,
    staging: &'a Path,
    prefix: String,
    /// The output's parent folder ("" at the root): the archive's names are relative to it.
    parent: String,
    tree: ArchiveTree,
    /// Folders of staging known to be real folders (not links), by project-relative path.
    folders: HashSet<String>,
    written: usize,
}

impl<'a> Extraction<'a> {
    fn new(task: &'a str, output: &'a OutputPath, staging: &'a Path) -> Extraction<'a> {
        let prefix = output.prefix();
        let parent = prefix.rsplit_once('/').map_or("", |(p, _)| p).to_string();
        Extraction {
            task,
            output,
            staging,
            prefix,
            parent,
            tree: ArchiveTree::default(),
            folders: HashSet::new(),
            written: 0,
        }
    }

    fn refuse(&self, entry: &str, reason: &str) -> Error {
        Error::UnsafeArchive {
            task: self.task.to_string(),
            entry: entry.to_string(),
            reason: reason.to_string(),
        }
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Io {
            context: "cannot read the output archive",
            path: PathBuf::from(&self.prefix),
            source: e,
        }
    }

    /// The project-relative path of an archive name; None for the archive's root.
    fn rel_of(&self, name: &str) -> std::result::Result<Option<String>, String> {
        let mut parts = Vec::new();
        for c in Path::new(name).components() {
            match c {
                Component::Normal(p) => parts.push(p.to_str().ok_or("name is not UTF-8")?),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
                Component::ParentDir => return Err("path contains `..`".into()),
            }
        }
        Ok((!parts.is_empty()).then(|| match self.parent.as_str() {
            "" => parts.join("/"),
            parent => format!("{parent}/{}", parts.join("/")),
        }))
    }

    /// The archive name of a project-relative path of this output.
    fn name_of<'r>(&self, rel: &'r str) -> &'r str {
        match self.parent.as_str() {
            "" => rel,
            parent => rel
                .strip_prefix(parent)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(rel),
        }
    }

    fn in_output(&self, rel: &str) -> bool {
        self.prefix.is_empty()
            || rel == self.prefix
            || rel
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|r| r.starts_with('/'))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(rel) = self.rel_of(&raw).map_err(|why| self.refuse(&raw, &why))? else {
            return Ok(());
        };
        if !self.in_output(&rel) {
            return Err(self.refuse(&raw, "outside the declared output"));
        }
        let kind = entry.header().entry_type();
        // A glob output: only its matching files come back, and no folders.
        if self.output.is_glob() && (kind.is_dir() || !self.output.contains(&rel)) {
            return Ok(());
        }
        let mode = |e: &tar::Entry<'_, R>| e.header().mode().map_err(|e| self.io(e));
        match kind {
            tar::EntryType::Directory => {
                let mode = mode(&entry)?;
                self.add(&raw, &rel, Node::Dir)?;
                self.make_folders(&raw, &rel)?;
                let dest = self.staging.join(&rel);
                return set_mode(&dest, output_mode(mode, true));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mode = mode(&entry)?;
                self.add(&raw, &rel, Node::File)?;
                let mut f = self.create(&raw, &rel)?;
                let dest = self.staging.join(&rel);
                std::io::copy(&mut entry, &mut f)
                    .map_err(Error::io("cannot write output", &dest))?;
                set_mode(&dest, output_mode(mode, false))?;
            }
            tar::EntryType::Symlink => self.symlink(&raw, &rel, &entry)?,
            tar::EntryType::Link => self.hard_link(&raw, &rel, &entry)?,
            other => {
                return Err(self.refuse(
                    &raw,
                    &format!("{other:?} entries (devices, fifos) are not allowed"),
                ));
            }
        }
        self.written += 1;
        Ok(())
    }

    fn add(&mut self, raw: &str, rel: &str, node: Node) -> Result<()> {
        let refused = self.tree.add(rel, node).err();
        refused.map_or(Ok(()), |why| Err(self.refuse(raw, &why)))
    }

    /// Makes `rel` and the folders on the way to it, none of them through a link: each is checked
    /// once (a folder made by an earlier output of the task may stand there). A folder of the
    /// output that its archive does not name gets mode 0755.
    fn make_folders(&mut self, raw: &str, rel: &str) -> Result<()> {
        let ends = rel.match_indices('/').map(|(i, _)| i).chain([rel.len()]);
        for end in ends {
            let folder = &rel[..end];
            if self.folders.contains(folder) {
                continue;
            }
            let path = self.staging.join(folder);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => {
                    let what = if m.file_type().is_symlink() {
                        "a symbolic link"
                    } else {
                        "a file"
                    };
                    let why = format!("{what} stands where a folder is expected (`{folder}`)");
                    return Err(self.refuse(raw, &why));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&path)
                        .map_err(Error::io("cannot create output folder", &path))?;
                    if self.in_output(folder) && self.tree.get(folder).is_none() {
                        self.add(raw, folder, Node::Dir)?;
                        set_mode(&path, 0o755)?;
                    }
                }
                Err(e) => return Err(Error::io("cannot create output folder", &path)(e)),
            }
            self.folders.insert(folder.to_string());
        }
        Ok(())
    }

    /// A new file at `rel` (never through a link, never over something already there).
    fn create(&mut self, raw: &str, rel: &str) -> Result<std::fs::File> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.make_folders(raw, parent)?;
        }
        let dest = self.staging.join(rel);
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(Error::io("cannot write output", &dest))
    }

    fn symlink<R: Read>(&mut self, raw: &str, rel: &str, entry: &tar::Entry<'_, R>) -> Result<()> {
        let target = entry
            .link_name()
            .map_err(|e| self.io(e))?
            .ok_or_else(|| self.refuse(raw, "symlink without a target"))?;
        // Kept as text in manifests and keys: a target that is not UTF-8 would change on the way.
        let target = target
            .to_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.refuse(raw, "symlink target is empty or not UTF-8"))?
            .to_string();
        // Against what is extracted so far here, and against the whole archive at the end (a
        // later entry can change where an earlier link leads).
        self.tree
            .resolve_link(rel, &target)
            .map_err(|why| self.refuse(raw, &why))?;
        self.add(raw, rel, Node::Symlink(target.clone()))?;
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.make_folders(raw, parent)?;
        }
        let dest = self.staging.join(rel);
        std::os::unix::fs::symlink(&target, &dest).map_err(Error::io("cannot write output", &dest))
    }

    /// A hard link may only repeat a regular file extracted before it from this same archive:
    /// it becomes a copy of that file, read without following any link.
    fn hard_link<R: Read>(
        &mut self,
        raw: &str,
        rel: &str,
        entry: &tar::Entry<'_, R>,
    ) -> Result<()> {
        let target = entry
            .link_name()
            .map_err(|e| self.io(e))?
            .ok_or_else(|| self.refuse(raw, "hard link without a target"))?
            .to_string_lossy()
            .into_owned();
        let not_ours = |why: &str| format!("hard link to `{target}`, which {why}");
        let t_rel = match self.rel_of(&target) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(self.refuse(raw, &not_ours("is not part of the output"))),
            Err(why) => {
                let why = format!("is not part of the output ({why})");
                return Err(self.refuse(raw, &not_ours(&why)));
            }
        };
        let why = match self.tree.get(&t_rel) {
            Some(Node::File) => None,
            Some(Node::Symlink(_)) => Some("is a symbolic link, not a regular file"),
            Some(Node::Dir) => Some("is a folder, not a regular file"),
            None => Some("is not part of the output"),
        };
        if let Some(why) = why {
            return Err(self.refuse(raw, &not_ours(why)));
        }
        self.add(raw, rel, Node::File)?;
        let src_path = self.staging.join(&t_rel);
        let mut src = std::fs::File::options()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&src_path)
            .map_err(Error::io("cannot read output", &src_path))?;
        let mode = src
            .metadata()
            .map_err(Error::io("cannot read output", &src_path))?
            .permissions()
            .mode();
        let mut f = self.create(raw, rel)?;
        let dest = self.staging.join(rel);
        std::io::copy(&mut src, &mut f).map_err(Error::io("cannot write output", &dest))?;
        set_mode(&dest, output_mode(mode, false))
    }

    /// Checks every link against the whole archive, and, when it holds links, against every
    /// output of the task staged so far (links of two outputs can lead out together); returns the
    /// number of files written.
    fn finish(self) -> Result<usize> {
        if let Err((rel, why)) = self.tree.check_links() {
            return Err(self.refuse(self.name_of(&rel), &why));
        }
        if self.tree.has_links() {
            let staged = ArchiveTree::of_folder(self.staging)
                .map_err(Error::io("cannot read staged outputs", self.staging))?;
            if let Err((rel, why)) = staged.check_links() {
                return Err(self.refuse(&rel, &format!("with the task's other outputs: {why}")));
            }
        }
        Ok(self.written)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io("cannot set the mode of output", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::place_outputs;

    fn out(p: &str) -> OutputPath {
        OutputPath::new(p).unwrap()
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let with_modes: Vec<_> = entries
            .iter()
            .map(|(n, k, d)| (*n, *k, *d, 0o644))
            .collect();
        tar_with_modes(&with_modes)
    }

    fn tar_with_modes(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
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
        let one = write_input_tar(Vec::new(), &files, (1000, 1001), "t").unwrap();
        let two = write_input_tar(Vec::new(), &files, (1000, 1001), "t").unwrap();
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
    fn an_unreadable_input_is_named_and_a_broken_upload_is_the_upload() {
        #[derive(Debug)]
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let file = |rel: &str| InputFile {
            rel: rel.into(),
            abs: dir.path().join(rel),
            kind: FileKind::File {
                executable: false,
                size: 1,
            },
            stat: None,
        };
        std::fs::write(dir.path().join("f"), "x").unwrap();
        // A folder opens as a file but cannot be read.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x"), "x").unwrap();
        let err = write_input_tar(Vec::new(), &[file("d")], (0, 0), "t").unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, .. } if *path == dir.path().join("d")),
            "{err:?}"
        );
        let err = write_input_tar(Closed, &[file("f")], (0, 0), "t").unwrap_err();
        assert!(
            matches!(&err, Error::Upload { task, .. } if task == "t"),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), 3);
    }

    type Entries<'a> = &'a [(&'a str, tar::EntryType, &'a str)];

    /// Archives for output `web/static`, and what refusing each says.
    const HOSTILE: &[(Entries, &str)] = {
        use tar::EntryType::*;
        &[
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
            // Issue 10 finding 1: link targets are resolved through the links extracted before
            // them (and after: the whole archive), never by their text alone or through the
            // host; a hard link names only a regular file extracted before it. Failed on main
            // before this change: each of these was extracted.
            (
                &[
                    ("static/", Directory, ""),
                    ("static/d", Symlink, ".."),
                    ("static/L", Symlink, "d/static/d/static/../../../etc/passwd"),
                ],
                "symlink points outside the workspace",
            ),
            (
                &[
                    ("static/L", Symlink, "d/../../.."),
                    ("static/d", Symlink, "../.."),
                ],
                "symlink points outside the workspace",
            ),
            (
                &[
                    ("static/d", Symlink, ".."),
                    ("static/L", Symlink, "d/static/d/static/../../../etc/passwd"),
                    ("static/h", Link, "static/L"),
                ],
                "symlink points outside the workspace",
            ),
            (
                &[
                    ("static/L", Symlink, "d/static/d/static/../../../etc/passwd"),
                    ("static/h", Link, "static/L"),
                    ("static/d", Symlink, ".."),
                ],
                "hard link to `static/L`, which is a symbolic link, not a regular file",
            ),
            (
                &[
                    ("static/app.js", Regular, "x"),
                    ("static/l", Symlink, "app.js"),
                    ("static/h", Link, "static/l"),
                ],
                "is a symbolic link, not a regular file",
            ),
            (
                &[
                    ("static/app.js", Regular, "x"),
                    ("static/h", Link, "static/../static/app.js"),
                ],
                "`..`",
            ),
            (
                &[
                    ("static/sub/", Directory, ""),
                    ("static/d", Symlink, "sub"),
                    ("static/d/x", Regular, "x"),
                ],
                "a symbolic link stands where a folder is expected",
            ),
            (
                &[("static/a", Regular, "x"), ("static/a", Symlink, "b")],
                "appears twice",
            ),
            (
                &[("static/a", Symlink, "b"), ("static/a", Symlink, "a")],
                "appears twice",
            ),
        ]
    };

    #[test]
    fn hostile_entries_are_refused_before_anything_is_written() {
        for (entries, why) in HOSTILE {
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

    // Issue 10 finding 1: a hard link to a symlink chained through `d -> ..` never reads the
    // host file the chain resolves to. Failed on main before this change: `h` held the file
    // outside the staging folder (copied through the links by `std::fs::copy`).
    #[test]
    fn a_hard_link_to_a_chained_symlink_never_reads_the_host() {
        use tar::EntryType::*;
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("secret"), "TOP SECRET").unwrap();
        let staging = base.path().join("s");
        std::fs::create_dir(&staging).unwrap();
        // On the host: staging/web/static/d -> staging/web, so the chain ends at
        // staging/web/static, and three `..` climb to `base`.
        let tar = tar_of(&[
            ("static/", Directory, ""),
            ("static/d", Symlink, ".."),
            ("static/L", Symlink, "d/static/d/static/../../../secret"),
            ("static/h", Link, "static/L"),
        ]);
        let err = extract_output(&tar[..], "t", &out("web/static"), &staging).unwrap_err();
        assert!(matches!(err, Error::UnsafeArchive { .. }), "{err}");
        assert!(err.to_string().contains("`static/L`"), "{err}");
        let h = staging.join("web/static/h");
        assert!(
            std::fs::read_to_string(&h).map_or(true, |t| !t.contains("TOP SECRET")),
            "the host file was read"
        );
    }

    // Issue 10 finding 1: the links of a task's outputs are resolved together: `a/l` climbs out
    // only through `b/up`, another output of the same task.
    #[test]
    fn links_of_two_outputs_cannot_lead_out_together() {
        use tar::EntryType::*;
        for order in [["a", "b"], ["b", "a"]] {
            let staging = tempfile::tempdir().unwrap();
            let mut result = Ok(0);
            for o in order {
                let tar = match o {
                    "a" => tar_of(&[("a/", Directory, ""), ("a/l", Symlink, "../b/up/../x")]),
                    _ => tar_of(&[("b/", Directory, ""), ("b/up", Symlink, "..")]),
                };
                result = extract_output(&tar[..], "t", &out(o), staging.path());
                if result.is_err() {
                    break;
                }
            }
            let err = result.unwrap_err();
            assert!(err.to_string().contains("refused entry `a/l`"), "{err}");
            assert!(
                err.to_string().contains("with the task's other outputs"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_hard_link_to_a_regular_file_is_an_independent_copy() {
        use tar::EntryType::*;
        let staging = tempfile::tempdir().unwrap();
        let tar = tar_with_modes(&[
            ("static/", Directory, "", 0o755),
            ("static/app.js", Regular, "code", 0o600),
            ("static/h", Link, "static/app.js", 0o600),
        ]);
        assert_eq!(
            extract_output(&tar[..], "t", &out("web/static"), staging.path()).unwrap(),
            2
        );
        let h = staging.path().join("web/static/h");
        assert_eq!(std::fs::read_to_string(&h).unwrap(), "code");
        assert_eq!(mode_of(&h), 0o600);
        assert!(
            !std::fs::symlink_metadata(&h)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    // Issue 10 finding 12: outputs keep the permission bits the task gave them, minus setuid,
    // setgid and sticky (the owner can always read a file, and read, write and enter a folder).
    // Failed on main before this change: 0600 and 0444 became 0644, the 0700 folder 0755.
    #[test]
    fn modes_are_kept_as_the_task_made_them() {
        use tar::EntryType::*;
        let staging = tempfile::tempdir().unwrap();
        let tar = tar_with_modes(&[
            ("o/", Directory, "", 0o750),
            ("o/a", Regular, "a", 0o600),
            ("o/b", Regular, "b", 0o444),
            ("o/x", Regular, "x", 0o4755),
            ("o/none", Regular, "n", 0o000),
            ("o/d/", Directory, "", 0o700),
            ("o/d/c", Regular, "c", 0o640),
            ("o/ro/", Directory, "", 0o555),
            ("o/implicit/f", Regular, "f", 0o644),
        ]);
        extract_output(&tar[..], "t", &out("o"), staging.path()).unwrap();
        let got = |rel: &str| mode_of(&staging.path().join(rel));
        for (rel, want) in [
            ("o", 0o750),
            ("o/a", 0o600),
            ("o/b", 0o444),
            ("o/x", 0o755),
            ("o/none", 0o400),
            ("o/d", 0o700),
            ("o/d/c", 0o640),
            ("o/ro", 0o755),
            ("o/implicit", 0o755),
        ] {
            assert_eq!(got(rel), want, "{rel}: {:o}", got(rel));
        }
    }

    // Issue 10 finding 8: folders are extracted (an empty one too) and their modes kept.
    #[test]
    fn empty_folders_are_extracted() {
        use tar::EntryType::*;
        let staging = tempfile::tempdir().unwrap();
        let tar = tar_with_modes(&[
            ("out/", Directory, "", 0o755),
            ("out/sub/", Directory, "", 0o700),
        ]);
        assert_eq!(
            extract_output(&tar[..], "t", &out("out"), staging.path()).unwrap(),
            0
        );
        assert_eq!(mode_of(&staging.path().join("out/sub")), 0o700);
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
