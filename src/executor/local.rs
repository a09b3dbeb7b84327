//! The local executor: tasks as processes, for use inside a build container that already carries
//! the toolchains (Dockerfile.dev's `docker build`, where there is no Docker API). Each task gets
//! a fresh folder holding exactly its files, as a container would; its declared outputs go back
//! through the same checks as a container's.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{Executor, TaskJob, Timings, tarball};
use crate::config::Toolchain;
use crate::error::{Error, Result};
use crate::fingerprint::FileKind;

/// Runs tasks as child processes in private folders below `scratch`.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    scratch: PathBuf,
}

impl LocalExecutor {
    pub fn new(scratch: PathBuf) -> LocalExecutor {
        LocalExecutor { scratch }
    }

    /// A toolchain's identity for task keys: the output of its `version_command` (`go version`),
    /// which stands where the Docker executor puts the image ID.
    pub fn toolchain_id(tc: &Toolchain) -> Result<String> {
        let Some(cmd) = &tc.version_command else {
            return Err(Error::ToolchainVersion {
                toolchain: tc.name.clone(),
                reason: "the local executor needs a `version_command` for it (e.g. \"go version\")"
                    .into(),
            });
        };
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .envs(&tc.env)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::ToolchainVersion {
                toolchain: tc.name.clone(),
                reason: format!("cannot run `{cmd}`: {e}"),
            })?;
        if !out.status.success() {
            return Err(Error::ToolchainVersion {
                toolchain: tc.name.clone(),
                reason: format!(
                    "`{cmd}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        Ok(format!("local:{}", crate::fingerprint::hash_bytes(&text)))
    }

    fn write_files(&self, job: &TaskJob<'_>, ws: &Path) -> Result<()> {
        for f in &job.files {
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
}

impl Executor for LocalExecutor {
    async fn run(&self, job: &TaskJob<'_>, staging: &Path) -> Result<Timings> {
        let mut t = Timings::default();
        let started = Instant::now();
        std::fs::create_dir_all(&self.scratch)
            .map_err(Error::io("cannot create the scratch folder", &self.scratch))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", job.task.name))
            .tempdir_in(&self.scratch)
            .map_err(Error::io("cannot create the task folder", &self.scratch))?;
        let ws = dir.path().join("workspace");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&ws).map_err(Error::io("cannot create the task folder", &ws))?;
        std::fs::create_dir_all(&home)
            .map_err(Error::io("cannot create the task folder", &home))?;
        t.create = started.elapsed();

        let started = Instant::now();
        tokio::task::block_in_place(|| self.write_files(job, &ws))?;
        t.upload = started.elapsed();

        let started = Instant::now();
        let workdir = if job.task.workdir == "." {
            ws.clone()
        } else {
            ws.join(&job.task.workdir)
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&job.task.run)
            .current_dir(&workdir)
            .env("HOME", &home)
            .env("TMPDIR", dir.path())
            .envs(job.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io("cannot start the task", &workdir))?;
        let tail = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::new()));
        let pump = |stream: Box<dyn std::io::Read + Send>| {
            let log = job.log.clone();
            let tail = tail.clone();
            tokio::task::spawn_blocking(move || {
                for line in BufReader::new(stream)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    log(&line);
                    let mut t = tail.lock().expect("tail");
                    if t.len() == 50 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        };
        let out = child
            .stdout
            .take()
            .expect("piped")
            .into_owned_fd()
            .map_err(Error::io("cannot read the task's output", &workdir))?;
        let err = child
            .stderr
            .take()
            .expect("piped")
            .into_owned_fd()
            .map_err(Error::io("cannot read the task's output", &workdir))?;
        let a = pump(Box::new(std::fs::File::from(out)));
        let b = pump(Box::new(std::fs::File::from(err)));
        let status = child
            .wait()
            .await
            .map_err(Error::io("cannot wait for the task", &workdir))?;
        let _ = a.await;
        let _ = b.await;
        t.run = started.elapsed();
        if !status.success() {
            return Err(Error::TaskFailed {
                task: job.task.name.clone(),
                code: status.code().map_or(128 + 9, i64::from),
                killed: None,
                log_tail: tail.lock().expect("tail").iter().cloned().collect(),
            });
        }

        // Outputs go back through a tar and the same checks as a container's.
        let started = Instant::now();
        tokio::task::block_in_place(|| {
            for out in &job.task.outputs {
                let prefix = out.prefix();
                let src = if prefix.is_empty() {
                    ws.clone()
                } else {
                    ws.join(&prefix)
                };
                if std::fs::symlink_metadata(&src).is_err() {
                    return Err(Error::MissingOutput {
                        task: job.task.name.clone(),
                        output: out.path.clone(),
                    });
                }
                let name = src
                    .file_name()
                    .map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned());
                let mut b = tar::Builder::new(Vec::new());
                b.follow_symlinks(false);
                let packed = if src.is_dir() {
                    b.append_dir_all(&name, &src)
                } else {
                    b.append_path_with_name(&src, &name)
                };
                packed.map_err(Error::io("cannot read output", &src))?;
                let bytes = b
                    .into_inner()
                    .map_err(Error::io("cannot read output", &src))?;
                let written = tarball::extract_output(&bytes[..], &job.task.name, out, staging)?;
                if written == 0 && out.is_glob() {
                    return Err(Error::MissingOutput {
                        task: job.task.name.clone(),
                        output: out.path.clone(),
                    });
                }
            }
            Ok(())
        })?;
        t.download = started.elapsed();
        let started = Instant::now();
        drop(dir);
        t.remove = started.elapsed();
        Ok(t)
    }
}
