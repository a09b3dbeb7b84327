//! A server child process in its own process group, its output in a log file of its temp folder;
//! the group is stopped and reaped on drop, then the folder removed.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to stop after its stop signal before the group is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Process {
    name: &'static str,
    child: Child,
    stop_signal: Signal,
    /// Files whose tail explains a failure: the output, then any log the server writes itself.
    logs: Vec<PathBuf>,
}

impl Process {
    /// Starts `cmd` with stdout and stderr to `log`, in a new process group.
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Process {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone the log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Process {
            name,
            child,
            stop_signal: Signal::SIGTERM,
            logs: vec![log.to_path_buf()],
        }
    }

    /// The signal that stops it cleanly (PostgreSQL: SIGINT, its fast shutdown).
    pub(crate) fn stop_with(mut self, signal: Signal) -> Process {
        self.stop_signal = signal;
        self
    }

    /// Another file to show when it fails (a log the server writes itself).
    pub(crate) fn also_log(mut self, path: PathBuf) -> Process {
        self.logs.push(path);
        self
    }

    /// Polls `ready` until it says yes; panics with the logs' tails when the process exits first
    /// or `limit` passes. Returns how long it took since `since`.
    pub(crate) fn wait_ready(
        &mut self,
        since: Instant,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Duration {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited while starting ({status}):\n{}",
                    self.name,
                    self.tail()
                );
            }
            if ready() {
                return since.elapsed();
            }
            if since.elapsed() > limit {
                panic!("{} not ready after {limit:?}:\n{}", self.name, self.tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its process ID (and process group's).
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit code, once it has exited.
    pub(crate) fn exit_code(&mut self) -> Option<i32> {
        self.child.try_wait().ok().flatten().and_then(|s| s.code())
    }

    /// True while the server process runs.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of each log, for a panic message.
    pub(crate) fn tail(&self) -> String {
        let mut text = String::new();
        for log in &self.logs {
            let body = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = body.lines().collect();
            let start = lines.len().saturating_sub(40);
            text += &format!("--- {} (last lines)\n", log.display());
            text += &lines[start..].join("\n");
            text += "\n";
        }
        text
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Process {
    /// Stops the server now (its files stay), as a crash or an operator would.
    pub(crate) fn kill(&mut self) {
        let _ = killpg(self.group(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let group = self.group();
        let _ = killpg(group, self.stop_signal);
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (workers, a leader that ignored the signal) dies now.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
