//! Which builds of a project are running: a file per run in the cache folder, holding its process
//! and host. A run killed before it could clean up (SIGKILL, a crash) leaves its file behind, and
//! the next build removes that run's containers. A build that finds nothing stale makes no engine
//! call for it, so a no-change build stays free of Docker calls.

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct RunRegistry {
    dir: PathBuf,
}

/// This run's entry, removed when the run ends normally.
#[derive(Debug)]
pub struct RunEntry {
    path: PathBuf,
}

impl Drop for RunEntry {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RunRegistry {
    pub fn new(dir: PathBuf) -> RunRegistry {
        RunRegistry { dir }
    }

    /// Records the run `id` of this process.
    pub fn register(&self, id: &str) -> Result<RunEntry> {
        std::fs::create_dir_all(&self.dir)
            .map_err(Error::io("cannot create the runs folder", &self.dir))?;
        let path = self.dir.join(id);
        let text = format!("{} {}\n", std::process::id(), super::docker::hostname());
        std::fs::write(&path, text).map_err(Error::io("cannot record the run", &path))?;
        Ok(RunEntry { path })
    }

    /// Runs of this host whose process is gone.
    pub fn stale(&self) -> Vec<String> {
        let me = super::docker::hostname();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let id = e.file_name().to_str()?.to_string();
                let text = std::fs::read_to_string(e.path()).ok()?;
                let (pid, host) = text.trim().split_once(' ')?;
                let pid: i32 = pid.parse().ok()?;
                (host == me && !super::docker::process_alive(pid)).then_some(id)
            })
            .collect()
    }

    pub fn forget(&self, id: &str) {
        let _ = std::fs::remove_file(self.dir.join(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_process_leaves_a_stale_run() {
        let dir = tempfile::tempdir().unwrap();
        let reg = RunRegistry::new(dir.path().to_path_buf());
        let entry = reg.register("alive").unwrap();
        // A pid that cannot be running: beyond the kernel's pid_max.
        std::fs::write(
            dir.path().join("dead"),
            format!("99999999 {}\n", super::super::docker::hostname()),
        )
        .unwrap();
        std::fs::write(dir.path().join("elsewhere"), "99999999 another-host\n").unwrap();
        assert_eq!(reg.stale(), ["dead"]);
        reg.forget("dead");
        drop(entry);
        assert!(reg.stale().is_empty());
        assert!(!dir.path().join("alive").exists());
    }
}
