//! Walking the project for a task's declared inputs, and for the outputs its dependencies left in
//! the workspace.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::stat_cache::Stat;
use crate::config::{Config, InputSet, OutputPath, Task};
use crate::error::{Error, Result};

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

/// The files of a task, sorted by path, plus the include patterns that matched nothing.
#[derive(Debug, Default, Clone)]
pub struct InputFiles {
    pub files: Vec<InputFile>,
    /// Indices into the input set's patterns of includes that matched no file.
    pub unmatched: Vec<usize>,
}

impl InputFiles {
    /// A task's declared input files, without the cache folder, `.git`, and what its direct
    /// dependencies' outputs cover (those reach it as dependency outputs).
    pub fn of_task(config: &Config, task: &Task) -> Result<InputFiles> {
        let root = &config.root;
        let skip = [config.cache_dir(), root.join(".git")];
        let mut found = InputFiles::collect(root, &task.inputs, &skip)?;
        let covered = |rel: &str| {
            task.deps
                .iter()
                .any(|d| config.tasks[d].outputs.iter().any(|o| o.contains(rel)))
        };
        found.files.retain(|f| !covered(&f.rel));
        Ok(found)
    }

    /// The files of the project matching `inputs`, never looking into `skip` folders (the cache,
    /// `.git`) or following links out of the root.
    pub fn collect(root: &Path, inputs: &InputSet, skip: &[PathBuf]) -> Result<InputFiles> {
        let mut files = Vec::new();
        let mut matched = vec![false; inputs.patterns.len()];
        for start in inputs.roots() {
            let start_path = if start.is_empty() {
                root.to_path_buf()
            } else {
                root.join(start)
            };
            let meta = match std::fs::symlink_metadata(&start_path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("cannot read input", start_path)(e)),
            };
            if !meta.is_dir() {
                consider(
                    root,
                    &start_path,
                    Some(&meta),
                    inputs,
                    &mut matched,
                    &mut files,
                )?;
                continue;
            }
            let skip_dirs: Vec<PathBuf> = skip.to_vec();
            let filter_root = root.to_path_buf();
            let filter_inputs = inputs.clone();
            let walker = ignore::WalkBuilder::new(&start_path)
                .standard_filters(false)
                .follow_links(false)
                .sort_by_file_name(|a, b| a.cmp(b))
                .filter_entry(move |e| {
                    if !e.file_type().is_some_and(|t| t.is_dir()) {
                        return true;
                    }
                    if e.file_name() == ".git" || skip_dirs.iter().any(|s| s == e.path()) {
                        return false;
                    }
                    match rel_path(&filter_root, e.path()) {
                        Some(rel) => rel.is_empty() || filter_inputs.may_contain(&rel),
                        None => false,
                    }
                })
                .build();
            for entry in walker {
                let entry =
                    entry.map_err(|e| walk_error("cannot walk the inputs", &start_path, e))?;
                if entry.file_type().is_some_and(|t| t.is_dir()) {
                    continue;
                }
                // Match by name first: only inputs are stat'ed.
                consider(root, entry.path(), None, inputs, &mut matched, &mut files)?;
            }
        }
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        let unmatched = inputs
            .patterns
            .iter()
            .enumerate()
            .filter(|(i, p)| !p.starts_with('!') && !matched[*i])
            .map(|(i, _)| i)
            .collect();
        Ok(InputFiles { files, unmatched })
    }

    /// The files a finished task left in the workspace for its declared outputs.
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

fn walk_error(context: &'static str, path: &Path, e: ignore::Error) -> Error {
    Error::Io {
        context,
        path: path.to_path_buf(),
        source: e
            .into_io_error()
            .unwrap_or_else(|| std::io::Error::other("walk failed")),
    }
}

fn consider(
    root: &Path,
    path: &Path,
    meta: Option<&std::fs::Metadata>,
    inputs: &InputSet,
    matched: &mut [bool],
    files: &mut Vec<InputFile>,
) -> Result<()> {
    let Some(rel) = rel_path(root, path) else {
        return Ok(());
    };
    let hits = inputs.matching_patterns(&rel);
    if hits.is_empty() {
        return Ok(());
    }
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
    if let Some(f) = input_file(root, path, meta)? {
        for i in hits {
            matched[i] = true;
        }
        files.push(f);
    }
    Ok(())
}

/// An [`InputFile`] for a regular file or an in-project symlink; other kinds (sockets, devices)
/// are skipped, links out of the project refused.
fn input_file(root: &Path, path: &Path, meta: &std::fs::Metadata) -> Result<Option<InputFile>> {
    let Some(rel) = rel_path(root, path) else {
        return Ok(None);
    };
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
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
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
}
