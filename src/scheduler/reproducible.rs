//! `--check-reproducible`: a task runs once more, in a fresh container, from the same inputs, and
//! its outputs are compared file by file with the first run's (or with the cached outputs the
//! workspace holds, for a hit). A difference names the file, both sizes and SHA-256 and, for
//! text, the first line that differs.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::context::Context;
use crate::config::Task;
use crate::error::{Error, Result};
use crate::executor::{Executor, off_async_workers};
use crate::fingerprint::action::TaskAction;
use crate::fingerprint::{FileDigest, InputFile, InputFiles, Manifest, StatCache};

/// Files larger than this are compared by digest only (no first differing line).
const MAX_TEXT: u64 = 16 * 1024 * 1024;

/// What the second run of one task showed.
#[derive(Debug, Clone, Default)]
pub struct ReproCheck {
    /// How many output files (links included) the two runs were compared on.
    pub files: usize,
    pub differences: Vec<FileDifference>,
}

/// One output file that is not the same in both runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDifference {
    pub path: String,
    /// (size, SHA-256) in the first run and the second; None where that run has no such file.
    pub first: Option<(u64, String)>,
    pub second: Option<(u64, String)>,
    /// For text: the first differing line's number (from 1) and that line in each run.
    pub line: Option<(usize, String, String)>,
}

impl ReproCheck {
    pub fn to_json(&self) -> serde_json::Value {
        let side = |s: &Option<(u64, String)>| match s {
            Some((size, sha)) => json!({ "size": size, "sha256": sha }),
            None => serde_json::Value::Null,
        };
        let differ: Vec<serde_json::Value> = self
            .differences
            .iter()
            .map(|d| {
                let mut v =
                    json!({ "path": d.path, "first": side(&d.first), "second": side(&d.second) });
                if let Some((n, a, b)) = &d.line {
                    v["line"] = json!({ "number": n, "first": a, "second": b });
                }
                v
            })
            .collect();
        json!({ "files": self.files, "reproducible": self.differences.is_empty(), "differ": differ })
    }
}

impl std::fmt::Display for FileDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |s: &Option<(u64, String)>| match s {
            Some((size, sha)) => format!("{size} bytes, sha256 {sha}"),
            None => "absent".to_string(),
        };
        write!(
            f,
            "{}: first run {}; second run {}",
            self.path,
            side(&self.first),
            side(&self.second)
        )?;
        if let Some((n, a, b)) = &self.line {
            write!(f, "\n      line {n}: {a:?}\n         vs: {b:?}")?;
        }
        Ok(())
    }
}

impl<E: Executor + Send + Sync + 'static> Context<E> {
    /// Runs `task` again in a fresh container on the same files and compares what it makes with
    /// `first` (the files of `first_root`).
    pub(crate) async fn check_again(
        &self,
        task: &Task,
        files: Vec<InputFile>,
        action: Option<Arc<TaskAction>>,
        first_root: &Path,
        first: &Manifest,
    ) -> Result<ReproCheck> {
        let (_, staging) = self.run_staged(task, files, action, true).await?;
        let (second_root, outputs) = (staging.path().to_path_buf(), task.outputs.clone());
        let (first_root, first) = (first_root.to_path_buf(), first.clone());
        let check = off_async_workers(&task.name, move || {
            let staged = InputFiles::output_tree(&second_root, &outputs)?;
            let second = StatCache::in_memory()
                .manifest(&staged)
                .map_err(Error::io("cannot hash outputs", &second_root))?;
            Ok(compare(&first_root, &first, &second_root, &second))
        })
        .await?;
        drop(staging);
        Ok(check)
    }
}

/// Compares two runs' outputs: every file or link either holds (folders are not compared: a
/// folder differs only through what it holds).
pub(crate) fn compare(
    first_root: &Path,
    first: &Manifest,
    second_root: &Path,
    second: &Manifest,
) -> ReproCheck {
    let mut check = ReproCheck::default();
    let paths: std::collections::BTreeSet<&String> = first
        .iter()
        .chain(second.iter())
        .filter(|(_, d)| !d.dir)
        .map(|(p, _)| p)
        .collect();
    for path in paths {
        check.files += 1;
        let (a, b) = (first.get(path), second.get(path));
        if let (Some(a), Some(b)) = (a, b)
            && same(a, b)
        {
            continue;
        }
        let line = match (a, b) {
            (Some(_), Some(_)) => first_difference(&first_root.join(path), &second_root.join(path)),
            _ => None,
        };
        check.differences.push(FileDifference {
            path: path.clone(),
            first: a.map(side),
            second: b.map(side),
            line,
        });
    }
    check
}

fn same(a: &FileDigest, b: &FileDigest) -> bool {
    a.sha256 == b.sha256 && a.link == b.link && a.mode == b.mode && a.dir == b.dir
}

fn side(d: &FileDigest) -> (u64, String) {
    (d.size, d.sha256.clone())
}

/// The first line that differs between two text files; None for binary or large files.
fn first_difference(a: &Path, b: &Path) -> Option<(usize, String, String)> {
    let read = |p: &Path| -> Option<String> {
        let meta = std::fs::symlink_metadata(p).ok()?;
        if !meta.is_file() || meta.len() > MAX_TEXT {
            return None;
        }
        let text = String::from_utf8(std::fs::read(p).ok()?).ok()?;
        (!text.contains('\0')).then_some(text)
    };
    let (a, b) = (read(a)?, read(b)?);
    let (mut la, mut lb) = (a.lines(), b.lines());
    let mut n = 0;
    loop {
        n += 1;
        match (la.next(), lb.next()) {
            (None, None) => return None,
            (x, y) if x == y => continue,
            (x, y) => {
                let show = |l: Option<&str>| l.map_or("(end of file)".to_string(), clip);
                return Some((n, show(x), show(y)));
            }
        }
    }
}

/// A line as shown in a report: at most 200 characters.
fn clip(line: &str) -> String {
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(root: &Path) -> Manifest {
        let mut m = Manifest::new();
        for entry in std::fs::read_dir(root).unwrap() {
            let p = entry.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            m.insert(
                name,
                FileDigest {
                    sha256: crate::fingerprint::hash_bytes(&bytes),
                    size: bytes.len() as u64,
                    executable: false,
                    link: None,
                    mode: Some(0o644),
                    dir: false,
                },
            );
        }
        m
    }

    #[test]
    fn a_differing_text_file_names_its_first_differing_line() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join("same.txt"), "x\n").unwrap();
        std::fs::write(b.path().join("same.txt"), "x\n").unwrap();
        std::fs::write(a.path().join("stamp.txt"), "v1\nbuilt 10:00\nend\n").unwrap();
        std::fs::write(b.path().join("stamp.txt"), "v1\nbuilt 10:01\nend\n").unwrap();
        std::fs::write(a.path().join("bin"), [0u8, 1, 2]).unwrap();
        std::fs::write(b.path().join("bin"), [0u8, 1, 3]).unwrap();
        std::fs::write(b.path().join("extra"), "new").unwrap();
        let c = compare(
            a.path(),
            &manifest_of(a.path()),
            b.path(),
            &manifest_of(b.path()),
        );
        assert_eq!(c.files, 4);
        let paths: Vec<&str> = c.differences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["bin", "extra", "stamp.txt"]);
        let stamp = &c.differences[2];
        assert_eq!(
            stamp.line,
            Some((2, "built 10:00".into(), "built 10:01".into()))
        );
        assert_eq!(stamp.first.as_ref().unwrap().0, 19);
        assert_eq!(c.differences[0].line, None, "binary: no line");
        assert_eq!(c.differences[1].first, None, "absent in the first run");
        let shown = stamp.to_string();
        assert!(
            shown.contains("stamp.txt: first run 19 bytes, sha256 "),
            "{shown}"
        );
        assert!(shown.contains("line 2: \"built 10:00\""), "{shown}");
        assert_eq!(c.to_json()["differ"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn equal_runs_have_no_differences_and_long_lines_are_clipped() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [&a, &b] {
            std::fs::write(d.path().join("f"), "same").unwrap();
        }
        let c = compare(
            a.path(),
            &manifest_of(a.path()),
            b.path(),
            &manifest_of(b.path()),
        );
        assert_eq!((c.files, c.differences.len()), (1, 0));
        assert_eq!(clip(&"é".repeat(300)).chars().count(), 201);
    }
}
