//! nginx WebDAV (Debian's nginx-extras): Bazel's HTTP cache protocol, `GET/PUT/HEAD
//! /cache/ac/<key>` and `/cache/cas/<sha256>`, stored as plain files that fault tests can damage.

use super::process::Process;
use super::{ensure_installed, free_port, request};
use nix::unistd::{Uid, User, chown};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const CONFIG: &str = include_str!("nginx-webdav.conf");
const START_LIMIT: Duration = Duration::from_secs(20);

pub(crate) struct Nginx {
    process: Process,
    port: u16,
    startup: Duration,
    dir: TempDir,
}

impl Nginx {
    pub(crate) fn start() -> Nginx {
        ensure_installed();
        let dir = tempfile::tempdir().expect("temp folder for nginx");
        prepare(dir.path());
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        let text = CONFIG
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@PORT@", &port.to_string());
        std::fs::write(&conf, text).expect("write the nginx config");
        let error_log = dir.path().join("logs/error.log");
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-c").arg(&conf).arg("-p").arg(dir.path());
        // -e: not even a first message goes to the system's error log.
        cmd.arg("-e").arg(&error_log);
        let started = Instant::now();
        let mut process =
            Process::spawn("nginx", cmd, &dir.path().join("nginx.out")).also_log(error_log);
        let startup = process.wait_ready(started, START_LIMIT, || {
            request(port, "HEAD", "/cache/", b"").is_ok()
        });
        Nginx {
            process,
            port,
            startup,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT/cache`: the base of `ac/` and `cas/`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The folder behind `url()`: `ac/<key>` and `cas/<sha256>` are files in it.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data/cache")
    }

    /// One line per request (method, path, status, bytes): what a build asked for.
    pub(crate) fn access_log(&self) -> PathBuf {
        self.dir.path().join("logs/access.log")
    }

    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    pub(crate) fn running(&mut self) -> bool {
        self.process.running()
    }

    /// Stops nginx now; its data stays.
    pub(crate) fn stop(&mut self) {
        self.process.kill();
    }
}

/// Folders of the config; those the worker writes belong to its user (nobody) when we are root,
/// else every PUT is a 500. The test folder itself must let that user through.
fn prepare(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["logs", "tmp", "data/cache"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    if !Uid::effective().is_root() {
        return;
    }
    let worker = User::from_name("nobody")
        .ok()
        .flatten()
        .expect("no user nobody for nginx's workers");
    for sub in ["tmp", "data", "data/cache"] {
        chown(&dir.join(sub), Some(worker.uid), Some(worker.gid)).expect("chown for nginx");
    }
}

/// /usr/sbin is not on every user's PATH.
fn nginx_bin() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("nginx")
    }
}
