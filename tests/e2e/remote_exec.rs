//! `flamenco-build worker` against BuildGrid: the real binary as a bot, actions sent by a small
//! Python REAPI client (tests/e2e/remote_exec_client.py) until `--executor remote` exists.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::remote_engine::SecondEngine;
use crate::servers::{BuildGrid, Postgres, Process, venv_bin};
use crate::support::{docker_lines, repo, require_toolchain_images};

const IMAGE: &str = "flamenco-build/debian:bookworm";

/// A worker process of the test's own, named `id`, on `engine`; on drop it is killed and its
/// containers and cache volume on `engine` removed.
pub(crate) struct Worker {
    pub(crate) process: Process,
    pub(crate) id: String,
    engine: String,
    dir: tempfile::TempDir,
}

impl Worker {
    pub(crate) fn start(grid: &BuildGrid, id: &str, engine: &str) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flamenco-build"));
        cmd.args(["worker", "--server", &grid.url(), "--bot-id", id])
            .args(["--engine", engine, "--grace", "60"])
            .args(["--cache-volume", &volume_of(id)])
            // Only the image the tests use: BuildGrid registers a worker in time exponential in
            // its properties, and a test machine's engine may hold many tags.
            .args(["--image", IMAGE])
            .env("FLAMENCO_BUILD_LOG", "flamenco_build=debug");
        Worker::spawn(cmd, id, engine, dir)
    }

    /// A worker on an engine of the test's own, which holds only the images the test loaded
    /// into it: it offers them all (no `--image`).
    pub(crate) fn start_on_own_engine(grid: &BuildGrid, id: &str, engine: &str) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flamenco-build"));
        cmd.args(["worker", "--server", &grid.url(), "--bot-id", id])
            .args(["--engine", engine, "--grace", "60"])
            .args(["--cache-volume", &volume_of(id)])
            .env("FLAMENCO_BUILD_LOG", "flamenco_build=debug");
        Worker::spawn(cmd, id, engine, dir)
    }

    fn spawn(cmd: Command, id: &str, engine: &str, dir: tempfile::TempDir) -> Worker {
        let process = Process::spawn("worker", cmd, &dir.path().join("worker.log"));
        Worker {
            process,
            id: id.to_string(),
            engine: engine.to_string(),
            dir,
        }
    }

    /// Its whole log (debug level).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }

    /// The worker's containers on its engine.
    pub(crate) fn containers(&self) -> Vec<String> {
        let label = format!("label=dev.flamenco-build.worker={}", self.id);
        docker_lines(&["-H", &self.engine, "ps", "-aq", "--filter", &label])
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.process_id()), s).unwrap();
    }

    fn process_id(&self) -> i32 {
        self.process.id() as i32
    }
}

/// The test's own cache volume for worker `id` (removed with the worker).
fn volume_of(id: &str) -> String {
    format!("fbtest-worker-{id}-{}", std::process::id())
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.process.kill();
        // A worker killed mid-task leaves its container behind.
        let left = self.containers();
        if !left.is_empty() {
            let mut args = vec!["-H", &self.engine, "rm", "-f"];
            args.extend(left.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        let _ = Command::new("docker")
            .args([
                "-H",
                &self.engine,
                "volume",
                "rm",
                "-f",
                &volume_of(&self.id),
            ])
            .output();
    }
}

fn image_id(engine: &str) -> String {
    docker_lines(&[
        "-H", engine, "image", "inspect", "--format", "{{.Id}}", IMAGE,
    ])
    .pop()
    .expect("the image's ID")
}

fn client_script() -> PathBuf {
    repo().join("tests/e2e/remote_exec_client.py")
}

/// Starts one action; `salt` keeps equal commands apart.
fn execute(grid: &BuildGrid, run: &str, output: &str, salt: &str) -> std::process::Child {
    Command::new(venv_bin("python"))
        .arg(client_script())
        .args([
            &grid.port().to_string(),
            IMAGE,
            &image_id(LOCAL),
            run,
            output,
            salt,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the REAPI client")
}

fn outcome(child: std::process::Child, grid: &BuildGrid, workers: &[&Worker]) -> Value {
    let out = child.wait_with_output().unwrap();
    let logs: String = workers.iter().map(|w| w.process.tail()).collect();
    assert!(
        out.status.success(),
        "client failed: {}\n{logs}\n{}",
        String::from_utf8_lossy(&out.stderr),
        grid.log_tail()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const LOCAL: &str = "unix:///var/run/docker.sock";

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_worker_runs_actions_and_reports_results_and_failures() {
    require_toolchain_images();
    let pg = Postgres::start();
    let grid = BuildGrid::start_exec(&pg);
    let worker = Worker::start(&grid, "w-local", LOCAL);
    let run = "mkdir -p out && cat in/data > out/copy && echo done";
    let v = outcome(execute(&grid, run, "out/copy", "1"), &grid, &[&worker]);
    assert_eq!(v["status_code"], 0, "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(v["outputs"]["out/copy"], "input data\n", "{v}");
    assert!(v["stdout"].as_str().unwrap().contains("done"), "{v}");
    assert_eq!(v["worker"], "w-local");
    // A task's own failure: its exit code and its log, not a retry.
    let v = outcome(
        execute(&grid, "echo oops; exit 3", "out", "2"),
        &grid,
        &[&worker],
    );
    assert_eq!(v["status_code"], 0, "{v}");
    assert_eq!(v["exit_code"], 3, "{v}");
    assert!(v["stdout"].as_str().unwrap().contains("oops"), "{v}");
    assert!(worker.containers().is_empty(), "no container left");
}

#[test]
fn sigterm_finishes_the_lease_held_then_the_worker_exits_cleanly() {
    require_toolchain_images();
    let pg = Postgres::start();
    let grid = BuildGrid::start_exec(&pg);
    let mut worker = Worker::start(&grid, "w-term", LOCAL);
    let run = "sleep 4 && mkdir -p out && echo late > out/x";
    let client = execute(&grid, run, "out/x", "term");
    wait_until(Duration::from_secs(60), "the task's container", || {
        !worker.containers().is_empty()
    });
    worker.signal(Signal::SIGTERM);
    let v = outcome(client, &grid, &[&worker]);
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(v["outputs"]["out/x"], "late\n", "{v}");
    wait_until(Duration::from_secs(30), "the worker to exit", || {
        !worker.process.running()
    });
    assert_eq!(
        worker.process.exit_code(),
        Some(0),
        "{}",
        worker.process.tail()
    );
    assert!(worker.containers().is_empty(), "no container left");
}

#[test]
fn a_worker_killed_mid_task_loses_the_job_to_the_other_worker() {
    require_toolchain_images();
    let pg = Postgres::start();
    let grid = BuildGrid::start_exec(&pg);
    let second = SecondEngine::start();
    second.load(IMAGE);
    let mut a = Worker::start(&grid, "w-a", LOCAL);
    let started = Instant::now();
    let run = "sleep 3 && mkdir -p out && echo ok > out/x";
    let client = execute(&grid, run, "out/x", "kill");
    wait_until(Duration::from_secs(60), "the task's container on a", || {
        !a.containers().is_empty()
    });
    a.process.kill();
    // Only now does the other worker exist: the job can only go there.
    let b = Worker::start(&grid, "w-b", &second.host);
    let v = outcome(client, &grid, &[&a, &b]);
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(v["worker"], "w-b", "{v}");
    assert_eq!(v["outputs"]["out/x"], "ok\n", "{v}");
    eprintln!("recovered from the SIGKILL in {:?}", started.elapsed());
}
