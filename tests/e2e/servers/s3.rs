//! An S3 server (PyPI moto[server]) with the bucket `flamenco-cache`. moto wants requests signed
//! (an anonymous GET of an object is a 403) but verifies no signature: any key pair works, and the
//! fake one in `env()` keeps real credentials out of the tests.

use super::process::Process;
use super::{ensure_installed, free_port, request, venv_bin};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub(crate) const BUCKET: &str = "flamenco-cache";
pub(crate) const REGION: &str = "us-east-1";
const START_LIMIT: Duration = Duration::from_secs(30);

pub(crate) struct S3 {
    process: Process,
    port: u16,
    startup: Duration,
    _dir: TempDir,
}

impl S3 {
    pub(crate) fn start() -> S3 {
        ensure_installed();
        let dir = tempfile::tempdir().expect("temp folder for moto");
        let port = free_port();
        let mut cmd = Command::new(venv_bin("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        cmd.env("PYTHONUNBUFFERED", "1").current_dir(dir.path());
        let started = Instant::now();
        let mut process = Process::spawn("moto_server", cmd, &dir.path().join("moto.log"));
        let startup = process.wait_ready(started, START_LIMIT, || {
            request(port, "GET", "/", b"").is_ok()
        });
        // moto takes an unsigned CreateBucket (us-east-1 needs no location body).
        let made = request(port, "PUT", &format!("/{BUCKET}"), b"");
        if !made.as_ref().is_ok_and(|r| r.status == 200) {
            panic!("create bucket {BUCKET}: {made:?}\n{}", process.tail());
        }
        S3 {
            process,
            port,
            startup,
            _dir: dir,
        }
    }

    /// `s3://flamenco-cache/ci`: the bucket and the prefix under which `ac/` and `cas/` go.
    pub(crate) fn url(&self) -> String {
        format!("s3://{BUCKET}/ci")
    }

    /// `http://127.0.0.1:PORT`, path-style.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The variables a client process needs: a fake key pair and the region.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "flamenco-test-key"),
            ("AWS_SECRET_ACCESS_KEY", "flamenco-test-secret"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    pub(crate) fn running(&mut self) -> bool {
        self.process.running()
    }
}
