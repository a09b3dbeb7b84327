//! Redis (Debian's redis-server), in memory only.

use super::process::Process;
use super::{ensure_installed, free_port};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const START_LIMIT: Duration = Duration::from_secs(20);

pub(crate) struct Redis {
    process: Process,
    port: u16,
    startup: Duration,
    _dir: TempDir,
}

impl Redis {
    pub(crate) fn start() -> Redis {
        ensure_installed();
        let dir = tempfile::tempdir().expect("temp folder for Redis");
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
        cmd.args(["--save", "", "--appendonly", "no", "--logfile", ""]);
        cmd.arg("--dir").arg(dir.path());
        let started = Instant::now();
        let mut process = Process::spawn("redis-server", cmd, &dir.path().join("redis.log"));
        let startup = process.wait_ready(started, START_LIMIT, || ping(port));
        Redis {
            process,
            port,
            startup,
            _dir: dir,
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    pub(crate) fn running(&mut self) -> bool {
        self.process.running()
    }
}

/// An inline PING answered by +PONG.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
