//! Real cache servers on loopback for the remote-cache tests: BuildGrid (gRPC REAPI), nginx WebDAV
//! (Bazel's HTTP cache protocol), an S3 server (moto), Redis, and PostgreSQL for BuildGrid's
//! scheduler; plus fakes for fault tests (a listener that never answers, a server that answers
//! every request with one status). Each starts on a free 127.0.0.1 port in its own temp folder and
//! is stopped, with its whole process group, on drop. `scripts/test-servers.sh` installs them; a
//! missing server fails the test, never skips it.

mod buildgrid;
mod fakes;
mod grpc;
mod http;
mod nginx;
mod postgres;
mod process;
mod redis;
mod s3;

pub(crate) use buildgrid::BuildGrid;
pub(crate) use fakes::{Flaky, Silent};
pub(crate) use grpc::{Field, fields, get_capabilities};
pub(crate) use http::request;
pub(crate) use nginx::Nginx;
pub(crate) use postgres::Postgres;
pub(crate) use process::Process;
pub(crate) use redis::Redis;
pub(crate) use s3::S3;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Runs `scripts/test-servers.sh` once per test process; panics with its output when it fails.
pub(crate) fn ensure_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let script = crate::support::repo().join("scripts/test-servers.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    if let Err(message) = result {
        panic!("the test servers are not installed: {message}");
    }
}

/// A program of the test-server venv (bgd, moto_server).
pub(crate) fn venv_bin(name: &str) -> PathBuf {
    crate::support::repo()
        .join("target/test-servers/venv/bin")
        .join(name)
}

/// A port no server of this process has been given yet and that was free a moment ago. (The
/// kernel may hand the same ephemeral port to two bind(0) calls once the first is closed.)
pub(crate) fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a free port on 127.0.0.1")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}
