//! Walking the project for a task's declared inputs, and for the outputs its dependencies left in
//! the workspace.
//!
//! Nothing under an input glob is left out without a word: a nested `.git` (a repository's own
//! state) or a socket is skipped with a warning that names it, and a name that is not UTF-8 or is
//! too long for a container's file system is an error naming the file. The project's `.git` and
//! the cache folder are never inputs, nor are outputs, except those of a dependency's dependencies
//! (in place before the task starts; a direct dependency's reach it as dependency outputs). No
//! input is read through a symbolic link in a folder of its path.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::stat_cache::Stat;
use crate::config::{Config, InputSet, OutputIndex, OutputPath, Task};
use crate::error::{Error, Result};
use crate::workspace::paths;

/// The longest file name every container file system takes: 255 bytes, less the 4 of the `.wh.`
/// prefix that fuse-overlayfs (rootless Docker) and other whiteout-file drivers add to a name.
const CONTAINER_NAME_MAX: usize = 251;

/// Why a nested `.git` is left out.
const NESTED_GIT: &str = "a repository's .git is never an input";

/// What a file in the workspace is, as far as a task can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    File {
        executable: bool,
        size: u64,
    },
    /// A relative link that stays inside the project.
    Symlink {
        target: String,
    },
    /// A folder of an output (see [`InputFiles::output_tree`]); inputs are files and links.
    Dir,
}

/// One file given to a task: its project-relative path (with `/`) and where it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub rel: String,
    pub abs: PathBuf,
    pub kind: FileKind,
    /// What the walk saw of it, so hashing need not stat it again.
    pub stat: Option<Stat>,
}

/// A path an input glob covers that is left out, and why: for a warning that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub rel: String,
    pub why: &'static str,
}

/// The files of a task, sorted by path, plus the include patterns that matched nothing.
#[derive(Debug, Default, Clone)]
pub struct InputFiles {
    pub files: Vec<InputFile>,
    /// Indices into the input set's patterns of includes that matched no file.
    pub unmatched: Vec<usize>,
    /// What the globs cover but is never an input (nested `.git`, sockets, devices).
    pub skipped: Vec<Skipped>,
}

impl InputFiles {
    /// A task's declared input files, without the cache folder, `.git`, and outputs: its own,
    /// its direct dependencies' (they reach it as dependency outputs) and those of any task that
    /// does not finish before it starts. A pattern that would be read through a symbolic link is
    /// an error at its line; so is an output that would be written through one, here, before the
    /// task runs.
    pub fn of_task(config: &Config, task: &Task) -> Result<InputFiles> {
        let root = &config.root;
        for out in &task.outputs {
            paths::check_output(root, out)?;
        }
        let skip = [config.cache_dir(), root.join(".git")];
        let outputs = Outputs {
            index: config.all_outputs(),
            task: Some((config, task)),
            upstream: None,
        };
        InputFiles::walk(root, &task.inputs, &skip, outputs)
            .map_err(|e| locate_linked(config, task, e))
    }

    /// The files of the project matching `inputs`, never looking into `skip` folders (the cache,
    /// `.git`) or following links out of the root.
    pub fn collect(root: &Path, inputs: &InputSet, skip: &[PathBuf]) -> Result<InputFiles> {
        let outputs = Outputs {
            index: Arc::default(),
            task: None,
            upstream: None,
        };
        InputFiles::walk(root, inputs, skip, outputs)
    }

    fn walk(
        root: &Path,
        inputs: &InputSet,
        skip: &[PathBuf],
        outputs: Outputs<'_>,
    ) -> Result<InputFiles> {
        let mut walk = Walk {
            root,
            inputs,
            skip,
            outputs,
            files: Vec::new(),
            matched: vec![false; inputs.patterns.len()],
            skipped: Vec::new(),
        };
        for start in inputs.roots() {
            walk.start(start)?;
        }
        let Walk {
            mut files,
            matched,
            skipped,
            ..
        } = walk;
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        let unmatched = inputs
            .patterns
            .iter()
            .enumerate()
            .filter(|(i, p)| !p.starts_with('!') && !matched[*i])
            .map(|(i, _)| i)
            .collect();
        Ok(InputFiles {
            files,
            unmatched,
            skipped,
        })
    }

    /// The files a finished task left in the workspace for its declared outputs. A folder on the
    /// way to an output (for a glob, its literal part too) may not be a symbolic link.
    pub fn from_outputs(root: &Path, outputs: &[OutputPath]) -> Result<Vec<InputFile>> {
        Self::outputs_below(root, outputs, false)
    }

    /// The files and the folders a finished task left for its declared outputs: a folder output
    /// and every folder in it (so empty ones are kept); a glob output's matches are files only.
    pub fn output_tree(root: &Path, outputs: &[OutputPath]) -> Result<Vec<InputFile>> {
        Self::outputs_below(root, outputs, true)
    }

    fn outputs_below(root: &Path, outputs: &[OutputPath], folders: bool) -> Result<Vec<InputFile>> {
        let mut files = Vec::new();
        for out in outputs {
            paths::check_output(root, out)?;
            let start = root.join(out.prefix());
            let meta = match std::fs::symlink_metadata(&start) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("cannot read output", start)(e)),
            };
            if !meta.is_dir() {
                if let Some(f) = input_file(root, &start, &meta)?
                    && out.contains(&f.rel)
                {
                    files.push(f);
                }
                continue;
            }
            for entry in ignore::WalkBuilder::new(&start)
                .standard_filters(false)
                .follow_links(false)
                .build()
            {
                let entry = entry.map_err(|e| walk_error("cannot walk the outputs", &start, e))?;
                let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
                // A glob output is its matching files; a folder output keeps its folders when asked.
                if is_dir && (!folders || out.is_glob()) {
                    continue;
                }
                let meta = entry
                    .path()
                    .symlink_metadata()
                    .map_err(Error::io("cannot read output", entry.path()))?;
                if is_dir {
                    if let Some(rel) = rel_path(root, entry.path()).filter(|r| !r.is_empty()) {
                        files.push(InputFile {
                            rel,
                            abs: entry.path().to_path_buf(),
                            kind: FileKind::Dir,
                            stat: Some(Stat::of(&meta)),
                        });
                    }
                    continue;
                }
                if let Some(f) = input_file(root, entry.path(), &meta)?
                    && out.contains(&f.rel)
                {
                    files.push(f);
                }
            }
        }
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        Ok(files)
    }
}

/// An input path through a symbolic link, as an error at the line of the pattern that declared
/// it; any other error as it is.
fn locate_linked(config: &Config, task: &Task, e: Error) -> Error {
    let Error::Io { context, path, .. } = &e else {
        return e;
    };
    if *context != paths::LINKED_PARENT {
        return e;
    }
    let Some(link) = lossy_rel(&config.root, path) else {
        return e;
    };
    let patterns = &task.inputs.patterns;
    let Some(i) = patterns
        .iter()
        .position(|p| *p == link || p.starts_with(&format!("{link}/")))
    else {
        return e;
    };
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    let span = task.input_spans.get(i).cloned().flatten();
    Error::Config(vec![config.source.diagnostic(
        span,
        format!(
            "task `{}`: input `{}`: `{link}` is a symbolic link (to {target}); no input is read \
             through a symbolic link",
            task.name, patterns[i]
        ),
    )])
}

fn walk_error(context: &'static str, start: &Path, e: ignore::Error) -> Error {
    // The walk says which entry it could not read; name that, not where the walk began.
    let path = error_path(&e).unwrap_or(start).to_path_buf();
    Error::Io {
        context,
        path,
        source: e
            .into_io_error()
            .unwrap_or_else(|| std::io::Error::other("walk failed")),
    }
}

fn error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        _ => None,
    }
}

/// Which outputs a walk leaves out: for a task, all but those of its dependencies' dependencies
/// (finished and in place before it starts); for a plain walk, none.
struct Outputs<'a> {
    index: Arc<OutputIndex>,
    task: Option<(&'a Config, &'a Task)>,
    /// The dependencies of the task's dependencies, all the way up; found when first needed.
    upstream: Option<HashSet<&'a str>>,
}

impl<'a> Outputs<'a> {
    /// Whether `rel` is an output the task never reads as an input.
    fn exclude(&mut self, rel: &str) -> bool {
        let Some(owner) = self.index.owner(rel) else {
            return false;
        };
        let Some((config, task)) = self.task else {
            return false;
        };
        if owner == task.name || task.deps.iter().any(|d| d == owner) {
            return true;
        }
        !self
            .upstream
            .get_or_insert_with(|| upstream(config, task))
            .contains(owner)
    }

    /// The tasks whose output folders a walk need not enter: the task's own and its direct
    /// dependencies'.
    fn pruned(&self) -> Vec<String> {
        self.task
            .map(|(_, t)| std::iter::once(&t.name).chain(&t.deps).cloned().collect())
            .unwrap_or_default()
    }
}

/// The dependencies of `task`'s dependencies, and theirs, all the way up.
fn upstream<'a>(config: &'a Config, task: &'a Task) -> HashSet<&'a str> {
    let deps_of = |name: &str| config.tasks.get(name).map(|t| t.deps.as_slice());
    let mut stack: Vec<&str> = task
        .deps
        .iter()
        .filter_map(|d| deps_of(d))
        .flatten()
        .map(String::as_str)
        .collect();
    let mut seen = HashSet::new();
    while let Some(t) = stack.pop() {
        if seen.insert(t) {
            stack.extend(deps_of(t).unwrap_or_default().iter().map(String::as_str));
        }
    }
    seen
}

/// One walk over the roots of a task's input patterns.
struct Walk<'a> {
    root: &'a Path,
    inputs: &'a InputSet,
    skip: &'a [PathBuf],
    outputs: Outputs<'a>,
    files: Vec<InputFile>,
    /// Per pattern: whether it matched a file.
    matched: Vec<bool>,
    skipped: Vec<Skipped>,
}

impl Walk<'_> {
    /// Everything below one root of the patterns ("" is the project root).
    fn start(&mut self, start: &str) -> Result<()> {
        if let Some(left_out) = self.excluded(start) {
            self.skipped.push(left_out);
            return Ok(());
        }
        paths::check_parents(self.root, start)?;
        let path = if start.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(start)
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("cannot read input", path)(e)),
        };
        if meta.is_dir() {
            return self.walk_dir(&path);
        }
        if meta.file_type().is_symlink() && !self.inputs.matches(start) {
            // The patterns name paths below it: a folder on their way is a link.
            return Err(paths::linked(&path, start));
        }
        self.consider(&path, Some(&meta))
    }

    /// A root inside `.git` or the cache folder: never walked (the configuration refuses such
    /// patterns; this holds whatever it lets through).
    fn excluded(&self, start: &str) -> Option<Skipped> {
        let parts: Vec<&str> = start.split('/').collect();
        if let Some(i) = parts.iter().position(|p| *p == ".git") {
            let why = if i == 0 {
                "the project's .git is never an input"
            } else {
                NESTED_GIT
            };
            return Some(Skipped {
                rel: parts[..=i].join("/"),
                why,
            });
        }
        let path = self.root.join(start);
        self.skip
            .iter()
            .find(|s| path.starts_with(s))
            .map(|s| Skipped {
                rel: lossy_rel(self.root, s).unwrap_or_else(|| s.display().to_string()),
                why: "the cache folder is never an input",
            })
    }

    fn walk_dir(&mut self, start: &Path) -> Result<()> {
        let filter = DirFilter {
            root: self.root.to_path_buf(),
            skip: self.skip.to_vec(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.index.clone(),
            pruned: self.outputs.pruned(),
            nested_git: Arc::default(),
        };
        let nested_git = filter.nested_git.clone();
        let walker = ignore::WalkBuilder::new(start)
            .standard_filters(false)
            .follow_links(false)
            .sort_by_file_name(|a, b| a.cmp(b))
            .filter_entry(move |e| filter.enters(e))
            .build();
        for entry in walker {
            let entry = entry.map_err(|e| walk_error("cannot walk the inputs", start, e))?;
            if entry.file_type().is_some_and(|t| t.is_dir()) {
                continue;
            }
            if entry.depth() > 0 && entry.file_name() == ".git" {
                self.git_file(entry.path());
                continue;
            }
            // Match by name first: only inputs are stat'ed.
            self.consider(entry.path(), None)?;
        }
        let found = std::mem::take(&mut *nested_git.lock().expect("walk"));
        self.skipped.extend(found.into_iter().map(|rel| Skipped {
            rel,
            why: NESTED_GIT,
        }));
        Ok(())
    }

    /// A `.git` file (a submodule's or worktree's pointer to its repository): never an input.
    fn git_file(&mut self, path: &Path) {
        if let Some(rel) = lossy_rel(self.root, path)
            && rel != ".git"
            && self.inputs.matches(&rel)
        {
            self.skipped.push(Skipped {
                rel,
                why: NESTED_GIT,
            });
        }
    }

    /// Takes `path` when the patterns match it and it is no output the task may not read.
    fn consider(&mut self, path: &Path, meta: Option<&std::fs::Metadata>) -> Result<()> {
        let Some(rel) = rel_path(self.root, path) else {
            return self.not_utf8(path);
        };
        let hits = self.inputs.matching_patterns(&rel);
        if hits.is_empty() {
            return Ok(());
        }
        if self.outputs.exclude(&rel) {
            // Never an input, but the pattern names something: a dependency's outputs reach the
            // task as such.
            for i in hits {
                self.matched[i] = true;
            }
            return Ok(());
        }
        too_long_for_a_container(path, &rel)?;
        let looked;
        let meta = match meta {
            Some(m) => m,
            None => {
                looked = path
                    .symlink_metadata()
                    .map_err(Error::io("cannot read input", path))?;
                &looked
            }
        };
        if !meta.is_file() && !meta.file_type().is_symlink() {
            self.skipped.push(Skipped {
                rel,
                why: "not a file, folder or symbolic link",
            });
            return Ok(());
        }
        let f = input_file_at(rel, path, meta)?.expect("a file or a link");
        for i in hits {
            self.matched[i] = true;
        }
        self.files.push(f);
        Ok(())
    }

    /// A name that is not UTF-8 (keys and archives name files in UTF-8): an error when the globs
    /// cover it as it prints, else no concern of this task.
    fn not_utf8(&mut self, path: &Path) -> Result<()> {
        let Some(rel) = lossy_rel(self.root, path) else {
            return Ok(());
        };
        if !self.inputs.matches(&rel) || self.outputs.exclude(&rel) {
            return Ok(());
        }
        Err(Error::Io {
            context: "input file name is not valid UTF-8",
            path: path.to_path_buf(),
            source: std::io::Error::other(
                "rename it, or leave it out with a `!` pattern (names as printed here)",
            ),
        })
    }
}

/// Refuses an input with a name no container can hold, before any container is made (the
/// engine would refuse the upload, naming it only in its own words).
fn too_long_for_a_container(path: &Path, rel: &str) -> Result<()> {
    match rel.split('/').find(|c| c.len() > CONTAINER_NAME_MAX) {
        None => Ok(()),
        Some(long) => Err(Error::Io {
            context: "input file name is too long for a container",
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "a name of {} bytes; container file systems take at most {CONTAINER_NAME_MAX}",
                long.len()
            )),
        }),
    }
}

/// Which folders a walk goes into (files always pass: they are matched by name after).
struct DirFilter {
    root: PathBuf,
    skip: Vec<PathBuf>,
    inputs: InputSet,
    outputs: Arc<OutputIndex>,
    /// Tasks whose output folders are never entered (see [`Outputs::pruned`]).
    pruned: Vec<String>,
    /// Nested `.git` folders met, for the warning.
    nested_git: Arc<Mutex<Vec<String>>>,
}

impl DirFilter {
    fn enters(&self, e: &ignore::DirEntry) -> bool {
        if !e.file_type().is_some_and(|t| t.is_dir()) {
            return true;
        }
        if self.skip.iter().any(|s| s == e.path()) {
            return false;
        }
        // Names that are not UTF-8 as they print, so that the files below still meet the rule.
        let Some(rel) = lossy_rel(&self.root, e.path()) else {
            return false;
        };
        if rel.is_empty() {
            return true;
        }
        if !self.inputs.may_contain(&rel) {
            return false;
        }
        if let Some(owner) = self.outputs.folder_owner(&rel)
            && self.pruned.iter().any(|t| t == owner)
        {
            return false;
        }
        if e.file_name() == ".git" {
            if rel != ".git" {
                self.nested_git.lock().expect("walk").push(rel);
            }
            return false;
        }
        true
    }
}

/// An [`InputFile`] for a regular file or an in-project symlink; other kinds (sockets, devices)
/// are None, links out of the project refused.
fn input_file(root: &Path, path: &Path, meta: &std::fs::Metadata) -> Result<Option<InputFile>> {
    match rel_path(root, path) {
        Some(rel) => input_file_at(rel, path, meta),
        None => Ok(None),
    }
}

/// [`input_file`] for a path whose project-relative form `rel` the caller already has.
fn input_file_at(rel: String, path: &Path, meta: &std::fs::Metadata) -> Result<Option<InputFile>> {
    let kind = if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(Error::io("cannot read link", path))?;
        if !link_stays_inside(&rel, &target) {
            return Err(Error::Io {
                context: "input is a symlink pointing outside the project",
                path: path.to_path_buf(),
                source: std::io::Error::other(format!("it points to {}", target.display())),
            });
        }
        FileKind::Symlink {
            target: target.to_string_lossy().into_owned(),
        }
    } else if meta.is_file() {
        FileKind::File {
            executable: meta.permissions().mode() & 0o111 != 0,
            size: meta.len(),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(InputFile {
        rel,
        abs: path.to_path_buf(),
        kind,
        stat: Some(Stat::of(meta)),
    }))
}

/// `path` relative to `root`, with `/` separators; None outside the root or not UTF-8.
pub(crate) fn rel_path(root: &Path, path: &Path) -> Option<String> {
    if let Some(rel) = plain_rel(root, path) {
        return Some(rel.to_string());
    }
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// The walks ask for the relative path of every entry they meet, and a walk's paths are the root
/// joined with plain names: this is that case without splitting the path into components (what
/// `strip_prefix` and `components` cost was an eighth of a no-change build's instructions). None
/// when the path is not of that form (the caller then takes the general way) or not UTF-8.
fn plain_rel<'p>(root: &Path, path: &'p Path) -> Option<&'p str> {
    let rest = path
        .as_os_str()
        .as_encoded_bytes()
        .strip_prefix(root.as_os_str().as_encoded_bytes())?;
    let rest = match rest {
        [] => return Some(""),
        [b'/', rest @ ..] => std::str::from_utf8(rest).ok()?,
        _ => return None,
    };
    // What `components` would change: empty and `.` parts, a trailing `/`.
    rest.split('/')
        .all(|part| !part.is_empty() && part != ".")
        .then_some(rest)
}

/// `path` relative to `root`, with `/` separators and names that are not UTF-8 as they print
/// (U+FFFD for what is not); None outside the root.
fn lossy_rel(root: &Path, path: &Path) -> Option<String> {
    if let Some(rel) = plain_rel(root, path) {
        return Some(rel.to_string());
    }
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<_> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    Some(parts.join("/"))
}

/// Whether a link at project-relative `rel` with `target` resolves inside the project.
pub(crate) fn link_stays_inside(rel: &str, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.split('/').count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn collects_matching_files_sorted_and_reports_unmatched_globs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "go.mod", "module x");
        write(root, "cmd/a/main.go", "package main");
        write(root, "cmd/a/zz.gen.go", "package main");
        write(root, "web/static/.keep", "");
        write(root, ".build-cache/artifacts/x", "no");
        write(root, "secret.txt", "no");
        std::fs::set_permissions(
            root.join("cmd/a/main.go"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let set = InputSet::new(&[
            "go.mod".into(),
            "cmd/**".into(),
            "!**/*.gen.go".into(),
            "web/static".into(),
            "pkg/**".into(),
        ])
        .unwrap();
        let got = InputFiles::collect(root, &set, &[root.join(".build-cache")]).unwrap();
        let rels: Vec<&str> = got.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["cmd/a/main.go", "go.mod", "web/static/.keep"]);
        assert_eq!(
            got.files[0].kind,
            FileKind::File {
                executable: true,
                size: 12
            }
        );
        assert_eq!(got.unmatched, [4]);
    }

    #[test]
    fn the_plain_way_to_a_relative_path_agrees_with_components() {
        let general = |root: &str, path: &str| -> Option<String> {
            let rel = Path::new(path).strip_prefix(root).ok()?;
            let parts: Option<Vec<&str>> =
                rel.components().map(|c| c.as_os_str().to_str()).collect();
            Some(parts?.join("/"))
        };
        let cases = [
            ("/p", "/p"),
            ("/p", "/p/a"),
            ("/p", "/p/a/b.go"),
            ("/p", "/p//a"),
            ("/p", "/p/./a"),
            ("/p", "/p/a/."),
            ("/p", "/p/a/"),
            ("/p", "/p/a/../b"),
            ("/p", "/pq/a"),
            ("/p", "/q/a"),
            ("/p/", "/p/a"),
            ("/", "/a/b"),
            ("p", "p/a"),
        ];
        for (root, path) in cases {
            let want = general(root, path);
            assert_eq!(rel_path(Path::new(root), Path::new(path)), want, "{path}");
            assert_eq!(lossy_rel(Path::new(root), Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn links_that_leave_the_project_are_refused() {
        assert!(link_stays_inside("a/b", Path::new("c")));
        assert!(link_stays_inside("a/b", Path::new("../c")));
        assert!(!link_stays_inside("a/b", Path::new("../../c")));
        assert!(!link_stays_inside("a", Path::new("/etc/passwd")));
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in/x", "");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("in/evil")).unwrap();
        let set = InputSet::new(&["in/**".into()]).unwrap();
        assert!(InputFiles::collect(dir.path(), &set, &[]).is_err());
    }

    fn config(root: &Path, tasks: &str) -> Config {
        let text = format!("[toolchains.go]\nimage = \"go\"\n{tasks}");
        Config::parse(
            root.to_path_buf(),
            crate::config::Source::new("flamenco-build.toml", text),
            false,
        )
        .unwrap()
    }

    // Issue 10 finding 2: no input is read through a symlink in any folder of its path below
    // the root; the error names the link at the pattern's line. Failed on main before this
    // change: `ext/secret.txt` was read from the outside folder.
    #[test]
    fn an_input_below_a_symlinked_folder_is_a_located_error() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", "TOP-SECRET");
        write(outside.path(), "sub/b.txt", "TOP-SECRET");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "src/a.txt", "a");
        std::os::unix::fs::symlink(outside.path(), root.join("ext")).unwrap();
        std::os::unix::fs::symlink("ext/sub", root.join("src/sub")).unwrap();
        for (input, link) in [
            ("ext/secret.txt", "ext"),
            ("ext/**", "ext"),
            ("src/sub/b.txt", "src/sub"),
        ] {
            let c = config(
                root,
                &format!(
                    "[tasks.t]\ntoolchain = \"go\"\nrun = \"true\"\noutputs = [\"o\"]\ninputs = [\"src/a.txt\", \"{input}\"]\n"
                ),
            );
            let err = InputFiles::of_task(&c, &c.tasks["t"]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("flamenco-build.toml:7:")
                    && text.contains(&format!("`{link}` is a symbolic link")),
                "{input}: {text}"
            );
            assert_eq!(err.exit_code(), 2);
        }
        // A link that is itself a declared input stays one (sent as a link, not followed).
        let c = config(
            root,
            "[tasks.t]\ntoolchain = \"go\"\nrun = \"true\"\noutputs = [\"o\"]\ninputs = [\"src/**\"]\n",
        );
        let got = InputFiles::of_task(&c, &c.tasks["t"]).unwrap();
        let rels: Vec<&str> = got.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["src/a.txt", "src/sub"]);
    }

    // Issue 10 finding 9: a task never reads as inputs its own outputs or those of a task that
    // does not finish before it starts (only its dependencies' dependencies' are in place; its
    // direct dependencies' reach it as dependency outputs). Failed on main before this change: a
    // task with `inputs = ["**"]` read its own `out/x` and an unrelated task's `b.txt`.
    #[test]
    fn outputs_are_never_inputs_unless_finished_before_the_task_starts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "src/s.go",
            "out/x",
            "b.txt",
            "gen/a.gen.go",
            "gen/a.go",
            "up.txt",
            "mid.txt",
        ] {
            write(root, rel, "x");
        }
        let c = config(
            root,
            r#"
[tasks.a]
toolchain = "go"
run = "true"
inputs = ["**"]
outputs = ["out"]

[tasks.b]
toolchain = "go"
run = "true"
inputs = ["src/**"]
outputs = ["b.txt", "gen/*.gen.go"]

[tasks.up]
toolchain = "go"
run = "true"
outputs = ["up.txt"]

[tasks.mid]
toolchain = "go"
deps = ["up"]
run = "true"
outputs = ["mid.txt"]

[tasks.c]
toolchain = "go"
deps = ["mid"]
run = "true"
inputs = ["*.txt", "out/**"]
outputs = ["c.txt"]
"#,
        );
        let rels = |t: &str| -> Vec<String> {
            let got = InputFiles::of_task(&c, &c.tasks[t]).unwrap();
            got.files.into_iter().map(|f| f.rel).collect()
        };
        assert_eq!(rels("a"), ["gen/a.go", "src/s.go"]);
        // `up` finished before `c` starts (through `mid`): its output is an input; `mid`'s
        // reaches `c` as a dependency output; `a`'s and `b`'s may not exist yet.
        assert_eq!(rels("c"), ["up.txt"]);
        let got = InputFiles::of_task(&c, &c.tasks["c"]).unwrap();
        assert!(
            got.unmatched.is_empty(),
            "`out/**` names outputs: no warning"
        );
    }

    // Issue 10 finding 10: a file under an input glob whose name is not UTF-8 is an error naming
    // it; one no glob covers is no concern. Failed on main before this change: it was silently
    // left out.
    #[test]
    fn a_non_utf8_name_under_an_input_glob_is_an_error_naming_it() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "src/a.txt", "a");
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("other").join(name), "x").unwrap();
        let set = InputSet::new(&["src/**".into(), "other/*.go".into()]).unwrap();
        assert!(InputFiles::collect(root, &set, &[]).is_ok());
        std::fs::write(root.join("src").join(name), "x").unwrap();
        let err = InputFiles::collect(root, &set, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not valid UTF-8") && err.contains("src/caf\u{FFFD}.txt"),
            "{err}"
        );
        // In a folder whose own name is not UTF-8, too.
        std::fs::remove_file(root.join("src").join(name)).unwrap();
        std::fs::create_dir_all(root.join("src").join(name)).unwrap();
        std::fs::write(root.join("src").join(name).join("x.txt"), "x").unwrap();
        let err = InputFiles::collect(root, &set, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("src/caf\u{FFFD}.txt/x.txt"), "{err}");
    }

    // Issue 10 finding 10: nothing under an input glob is left out without a word: a nested
    // `.git` (folder or file) and a socket are skipped by name; the project's own `.git` is never
    // an input. Failed on main before this change: did not compile (no `skipped`); the walk
    // dropped the nested `.git` folder and the socket without a word, and took the `.git` file.
    #[test]
    fn nested_git_and_sockets_under_a_glob_are_skipped_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, ".git/HEAD", "ref: refs/heads/main");
        write(root, "vendor/lib/a.go", "package lib");
        write(root, "vendor/lib/.git/HEAD", "ref: refs/heads/main");
        write(root, "vendor/sub/.git", "gitdir: ../../.git/modules/sub");
        let _socket = std::os::unix::net::UnixListener::bind(root.join("vendor/sock")).unwrap();
        let set = InputSet::new(&["**".into()]).unwrap();
        let got = InputFiles::collect(root, &set, &[root.join(".git")]).unwrap();
        let rels: Vec<&str> = got.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["vendor/lib/a.go"]);
        let skipped: Vec<&str> = got.skipped.iter().map(|s| s.rel.as_str()).collect();
        assert_eq!(
            skipped,
            ["vendor/sock", "vendor/sub/.git", "vendor/lib/.git"]
        );
        // A pattern rooted inside a `.git` is never walked either.
        let set = InputSet::new(&["vendor/lib/.git/**".into()]).unwrap();
        let got = InputFiles::collect(root, &set, &[]).unwrap();
        assert!(got.files.is_empty());
        assert_eq!(got.skipped[0].rel, "vendor/lib/.git");
    }

    // Issue 10 finding 14: an input whose name is longer than container file systems take is an
    // error naming it. Failed on main before this change: it was accepted, and the engine refused
    // the upload later ("file name too long", exit 3).
    #[test]
    fn an_input_name_too_long_for_a_container_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let ok = format!("{}.txt", "x".repeat(247));
        let long = format!("{}.txt", "y".repeat(248));
        write(dir.path(), &format!("src/{ok}"), "fits");
        let set = InputSet::new(&["src/**".into()]).unwrap();
        assert_eq!(
            InputFiles::collect(dir.path(), &set, &[])
                .unwrap()
                .files
                .len(),
            1
        );
        write(dir.path(), &format!("src/{long}"), "too long");
        let err = InputFiles::collect(dir.path(), &set, &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("too long") && text.contains(&format!("src/{long}")),
            "{text}"
        );
        assert_eq!(err.exit_code(), 5);
    }
}
