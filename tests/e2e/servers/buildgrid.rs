//! BuildGrid (PyPI buildgrid 0.4.4): a REAPI gRPC server. Cache-only (CAS, ByteStream, action
//! cache, in memory), or with the Execution service and its scheduler state in PostgreSQL.

use super::process::Process;
use super::{Postgres, ensure_installed, free_port, get_capabilities, venv_bin};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const CACHE_CONFIG: &str = include_str!("buildgrid-cache.yml");
const EXEC_CONFIG: &str = include_str!("buildgrid-exec.yml");
/// Up in about 7 s on an idle machine; much slower while other builds load both cores.
const START_LIMIT: Duration = Duration::from_secs(60);

pub(crate) struct BuildGrid {
    process: Process,
    port: u16,
    startup: Duration,
    _dir: TempDir,
}

impl BuildGrid {
    /// CAS + ByteStream + action cache, in memory.
    pub(crate) fn start_cache() -> BuildGrid {
        BuildGrid::start(CACHE_CONFIG, "")
    }

    /// The cache services plus Execution, scheduling on `pg` (workers are the tests' own bots).
    pub(crate) fn start_exec(pg: &Postgres) -> BuildGrid {
        BuildGrid::start(EXEC_CONFIG, &pg.connection_string())
    }

    fn start(template: &str, sql: &str) -> BuildGrid {
        ensure_installed();
        let dir = tempfile::tempdir().expect("temp folder for BuildGrid");
        let port = free_port();
        let config = dir.path().join("buildgrid.yml");
        let text = template
            .replace("@PORT@", &port.to_string())
            .replace("@SQL@", sql);
        std::fs::write(&config, text).expect("write the BuildGrid config");
        let mut cmd = Command::new(venv_bin("bgd"));
        cmd.args(["server", "start"])
            .arg(&config)
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(dir.path());
        let started = Instant::now();
        let mut process = Process::spawn("BuildGrid", cmd, &dir.path().join("bgd.log"));
        // Ready when a REAPI call is answered, not merely when the port accepts.
        let startup = process.wait_ready(started, START_LIMIT, || {
            get_capabilities(port, Duration::from_secs(5)).is_ok()
        });
        BuildGrid {
            process,
            port,
            startup,
            _dir: dir,
        }
    }

    /// `grpc://127.0.0.1:PORT` (instance name "").
    pub(crate) fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// How long it took to answer its first call.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    pub(crate) fn running(&mut self) -> bool {
        self.process.running()
    }

    /// Stops it now, as a crash would (SIGKILL to its process group).
    pub(crate) fn kill(&mut self) {
        self.process.kill();
    }

    /// The end of its log, for a failing test's message.
    pub(crate) fn log_tail(&self) -> String {
        self.process.tail()
    }
}
