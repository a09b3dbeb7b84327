//! The local executor: tasks as processes, for use inside a build container that already carries
//! the toolchains (Dockerfile.dev's `docker build`, where there is no Docker API). Each task gets
//! a fresh folder holding exactly its files, as a container would; its declared outputs go back
//! through the same output path as a container's. Files, archives and the folder's removal are
//! handled on the blocking pool; the process is awaited through tokio.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::log_tail::LogTail;
use super::{Executor, LogSink, TaskJob, Timings, off_async_workers, outputs};
use crate::config::{OutputPath, Toolchain};
use crate::error::{Error, Result};
use crate::fingerprint::{FileKind, InputFile};

/// Runs tasks as child processes in private folders below `scratch`.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    scratch: PathBuf,
}

/// A task's private folder: its files in `workspace/`, `home/` its HOME, the folder its TMPDIR.
struct TaskFolder {
    dir: tempfile::TempDir,
    ws: PathBuf,
    home: PathBuf,
}

impl LocalExecutor {
    pub fn new(scratch: PathBuf) -> LocalExecutor {
        LocalExecutor { scratch }
    }

    /// A toolchain's identity for task keys: the output of its `version_command` (`go version`),
    /// which stands where the Docker executor puts the image ID.
    pub async fn toolchain_id(tc: &Toolchain) -> Result<String> {
        let failed = |reason: String| Error::ToolchainVersion {
            toolchain: tc.name.clone(),
            reason,
        };
        let Some(cmd) = &tc.version_command else {
            return Err(failed(
                "the local executor needs a `version_command` for it (e.g. \"go version\")".into(),
            ));
        };
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .envs(&tc.env)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| failed(format!("cannot run `{cmd}`: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(failed(format!("`{cmd}` failed: {}", stderr.trim())));
        }
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        Ok(format!("local:{}", crate::fingerprint::hash_bytes(&text)))
    }

    /// Runs the task's command in its folder, streaming its log; a non-zero exit is a failure
    /// with the log's last lines.
    async fn run_process(&self, job: &TaskJob<'_>, folder: &TaskFolder) -> Result<()> {
        let workdir = job.workdir_in(&folder.ws);
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&job.task.run)
            .current_dir(&workdir)
            .env("HOME", &folder.home)
            .env("TMPDIR", folder.dir.path())
            .envs(job.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io("cannot start the task", &workdir))?;
        let tail = Arc::new(Mutex::new(LogTail::default()));
        let unreadable = || Error::io("cannot read the task's output", &workdir);
        let out = child.stdout.take().expect("piped").into_owned_fd();
        let err = child.stderr.take().expect("piped").into_owned_fd();
        let a = pump(
            std::fs::File::from(out.map_err(unreadable())?),
            &job.log,
            &tail,
        );
        let b = pump(
            std::fs::File::from(err.map_err(unreadable())?),
            &job.log,
            &tail,
        );
        let status = child
            .wait()
            .await
            .map_err(Error::io("cannot wait for the task", &workdir))?;
        let _ = a.await;
        let _ = b.await;
        if status.success() {
            return Ok(());
        }
        let tail = std::mem::take(&mut *tail.lock().expect("tail")).into_lines();
        Err(Error::TaskFailed {
            task: job.task.name.clone(),
            code: status.code().map_or(128 + 9, i64::from),
            killed: None,
            offline: super::offline::note(&job.task.name, job.task.network, &tail),
            log_tail: tail,
        })
    }
}

/// Sends each line of a task's stream to its log and tail, on the blocking pool.
fn pump(
    stream: impl Read + Send + 'static,
    log: &LogSink,
    tail: &Arc<Mutex<LogTail>>,
) -> tokio::task::JoinHandle<()> {
    let (log, tail) = (log.clone(), tail.clone());
    tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stream)
            .lines()
            .map_while(std::result::Result::ok)
        {
            log(&line);
            tail.lock().expect("tail").push(line);
        }
    })
}

/// Makes a fresh task folder below `scratch`.
fn make_task_folder(scratch: &Path, task: &str) -> Result<TaskFolder> {
    std::fs::create_dir_all(scratch)
        .map_err(Error::io("cannot create the scratch folder", scratch))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{task}-"))
        .tempdir_in(scratch)
        .map_err(Error::io("cannot create the task folder", scratch))?;
    let ws = dir.path().join("workspace");
    let home = dir.path().join("home");
    for d in [&ws, &home] {
        std::fs::create_dir_all(d).map_err(Error::io("cannot create the task folder", d))?;
    }
    Ok(TaskFolder { dir, ws, home })
}

/// Copies the task's files into its workspace folder, as a container would receive them.
fn write_files(files: &[InputFile], ws: &Path) -> Result<()> {
    for f in files {
        let dest = ws.join(&f.rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(Error::io("cannot prepare the task folder", parent))?;
        }
        match &f.kind {
            FileKind::File { executable, .. } => {
                std::fs::copy(&f.abs, &dest).map_err(Error::io("cannot copy input", &f.abs))?;
                let mode = if *executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                    .map_err(Error::io("cannot copy input", &dest))?;
            }
            FileKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &dest)
                    .map_err(Error::io("cannot copy input", &dest))?;
            }
            FileKind::Dir => std::fs::create_dir_all(&dest)
                .map_err(Error::io("cannot prepare the task folder", &dest))?,
        }
    }
    Ok(())
}

/// The archive of one declared output as the task left it in `ws`, named as an engine names it:
/// by the output's last path component, and an output at the root (a glob such as `*.gen`) by
/// its entries' own paths. None when the task did not make it.
fn pack_output(ws: &Path, out: &OutputPath) -> Result<Option<std::io::Cursor<Vec<u8>>>> {
    let prefix = out.prefix();
    let name = prefix.rsplit('/').next().unwrap_or_default();
    let src = if prefix.is_empty() {
        ws.to_path_buf()
    } else {
        ws.join(&prefix)
    };
    if std::fs::symlink_metadata(&src).is_err() {
        return Ok(None);
    }
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let packed = if src.is_dir() {
        b.append_dir_all(name, &src)
    } else {
        b.append_path_with_name(&src, name)
    };
    packed.map_err(Error::io("cannot read output", &src))?;
    let bytes = b
        .into_inner()
        .map_err(Error::io("cannot read output", &src))?;
    Ok(Some(std::io::Cursor::new(bytes)))
}

impl Executor for LocalExecutor {
    async fn run(&self, job: &TaskJob<'_>, staging: &Path) -> Result<Timings> {
        let task = &job.task.name;
        let mut t = Timings::default();
        let started = Instant::now();
        let (scratch, name) = (self.scratch.clone(), task.clone());
        let folder = off_async_workers(task, move || make_task_folder(&scratch, &name)).await?;
        t.create = started.elapsed();

        let started = Instant::now();
        let (files, ws) = (job.files.clone(), folder.ws.clone());
        off_async_workers(task, move || write_files(&files, &ws)).await?;
        t.upload = started.elapsed();

        let started = Instant::now();
        self.run_process(job, &folder).await?;
        t.run = started.elapsed();

        let started = Instant::now();
        let ws = folder.ws.clone();
        outputs::collect_outputs(job.task, staging, move |out| pack_output(&ws, out)).await?;
        t.download = started.elapsed();

        let started = Instant::now();
        off_async_workers(task, move || {
            drop(folder);
            Ok(())
        })
        .await?;
        t.remove = started.elapsed();
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs `output` from `ws` and extracts it into a fresh staging folder; the files written.
    fn round_trip(ws: &Path, output: &str) -> (tempfile::TempDir, Result<usize>) {
        let out = OutputPath::new(output).unwrap();
        let staging = tempfile::tempdir().unwrap();
        let archive = pack_output(ws, &out).unwrap().expect("the output is there");
        let written = super::super::tarball::extract_output(archive, "t", &out, staging.path());
        (staging, written)
    }

    #[test]
    fn outputs_come_back_named_as_an_engine_names_them() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("gen/sub")).unwrap();
        for f in ["a.gen", "b.txt", "gen/sub/c.go", "gen/d.txt"] {
            std::fs::write(ws.path().join(f), f).unwrap();
        }
        // A glob at the root of the workspace, as with the Docker executor.
        let (staging, written) = round_trip(ws.path(), "*.gen");
        assert_eq!(written.unwrap(), 1);
        assert!(staging.path().join("a.gen").is_file());
        assert!(!staging.path().join("b.txt").exists());
        let (staging, written) = round_trip(ws.path(), "gen");
        assert_eq!(written.unwrap(), 2);
        assert!(staging.path().join("gen/sub/c.go").is_file());
        let (staging, written) = round_trip(ws.path(), "gen/d.txt");
        assert_eq!(written.unwrap(), 1);
        assert!(staging.path().join("gen/d.txt").is_file());
        assert!(
            pack_output(ws.path(), &OutputPath::new("none").unwrap())
                .unwrap()
                .is_none()
        );
    }
}
