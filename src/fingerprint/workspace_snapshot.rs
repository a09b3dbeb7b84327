//! What the workspace holds for every task of a plan, read at once when a build begins: each
//! task's input files with their digests, and its outputs.
//!
//! A no-change build is nothing but this reading, so it is done for all tasks at the same time
//! on all cores, while the toolchain images are looked up, instead of one task after another
//! once the images are known. A task's part stays true until the build puts outputs in the
//! workspace; the scheduler uses it only while none have been (see `Scheduler::snapshot_of`).

use std::collections::HashMap;
use std::sync::Mutex;

use rayon::prelude::*;

use super::{FileDigest, InputFile, InputFiles, Manifest, Skipped, StatCache};
use crate::config::{Config, Task};

/// One task's inputs and outputs as they were when the build began.
#[derive(Debug)]
pub struct TaskSnapshot {
    /// Its declared input files, sorted by path (see [`InputFiles::of_task`]).
    pub inputs: Vec<InputFile>,
    /// The include patterns that matched no file (indices into the task's patterns).
    pub unmatched: Vec<usize>,
    /// What its globs cover but is never an input, for the warning.
    pub skipped: Vec<Skipped>,
    /// The digest of each input, in the same order.
    pub digests: Vec<FileDigest>,
    /// Its outputs in the workspace.
    pub outputs: Manifest,
}

/// The snapshots of a plan's tasks, each handed out once.
#[derive(Debug, Default)]
pub struct WorkspaceSnapshot {
    tasks: Mutex<HashMap<String, TaskSnapshot>>,
}

impl WorkspaceSnapshot {
    /// Reads the inputs and outputs of `plan`'s tasks, several tasks at a time. A task whose files
    /// cannot be read is left out: the build reads them again and reports the error there.
    pub fn take(config: &Config, plan: &[String], stat_cache: &StatCache) -> WorkspaceSnapshot {
        let tasks = plan
            .par_iter()
            .filter_map(|name| {
                let task = config.tasks.get(name)?;
                Some((name.clone(), TaskSnapshot::take(config, task, stat_cache)?))
            })
            .collect();
        WorkspaceSnapshot {
            tasks: Mutex::new(tasks),
        }
    }

    /// The snapshot of `task`, which no one else gets after.
    pub fn claim(&self, task: &str) -> Option<TaskSnapshot> {
        self.tasks.lock().expect("snapshot").remove(task)
    }
}

impl TaskSnapshot {
    fn take(config: &Config, task: &Task, stat_cache: &StatCache) -> Option<TaskSnapshot> {
        let found = InputFiles::of_task(config, task).ok()?;
        let digests = stat_cache.digest_all(&found.files).ok()?;
        let outputs = InputFiles::output_tree(&config.root, &task.outputs).ok()?;
        Some(TaskSnapshot {
            inputs: found.files,
            unmatched: found.unmatched,
            skipped: found.skipped,
            digests,
            outputs: stat_cache.manifest(&outputs).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn write(root: &std::path::Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn holds_what_each_task_would_read_and_hands_it_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let config = Config::parse(
            root.to_path_buf(),
            Source::new(
                "flamenco-build.toml",
                r#"
[toolchains.go]
image = "go"

[tasks.gen]
toolchain = "go"
run = "true"
inputs = ["src/**"]
outputs = ["gen"]

[tasks.use]
toolchain = "go"
deps = ["gen"]
run = "true"
inputs = ["gen/**", "main.go", "docs/**"]
outputs = ["bin"]

[tasks.broken]
toolchain = "go"
run = "true"
inputs = ["evil/**"]
outputs = ["never"]
"#,
            ),
            false,
        )
        .unwrap();
        write(root, "src/a.txt", "a");
        write(root, "src/b.txt", "b");
        write(root, "gen/x", "generated");
        write(root, "main.go", "package main");
        write(root, "bin", "binary");
        std::fs::create_dir_all(root.join("evil")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("evil/link")).unwrap();
        let plan: Vec<String> = ["gen", "use", "broken"].map(String::from).to_vec();
        let stat_cache = StatCache::in_memory();
        let snapshot = WorkspaceSnapshot::take(&config, &plan, &stat_cache);

        let gen_task = snapshot.claim("gen").unwrap();
        let direct = InputFiles::of_task(&config, &config.tasks["gen"]).unwrap();
        assert_eq!(gen_task.inputs, direct.files);
        assert_eq!(
            gen_task.digests,
            StatCache::in_memory().digest_all(&direct.files).unwrap()
        );
        assert_eq!(
            gen_task.outputs.keys().collect::<Vec<_>>(),
            ["gen", "gen/x"]
        );
        assert!(snapshot.claim("gen").is_none(), "handed out twice");

        // `use` does not read what its dependency `gen` produces: that comes as a dep output.
        let use_task = snapshot.claim("use").unwrap();
        let rels: Vec<&str> = use_task.inputs.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["main.go"]);
        assert_eq!(use_task.unmatched, [2], "docs/** matches nothing");
        assert_eq!(use_task.outputs.keys().collect::<Vec<_>>(), ["bin"]);

        // A task whose inputs cannot be read is left for the build to report.
        assert!(snapshot.claim("broken").is_none());
    }
}
