//! `--executor remote` against BuildGrid with a `flamenco-build worker` on this machine's
//! engine: a task built remotely lands exactly as a local run's, with the worker named; a
//! second build executes nothing; a failing task fails as locally, with its log tail; a task
//! whose image no worker holds fails naming the image; `local_only` runs here, with a note.

use std::process::{Child, Command, Stdio};

use crate::servers::{BuildGrid, Postgres};
use crate::support::{Project, require_toolchain_images};

/// A worker process on the local engine, killed with the test.
struct Worker {
    child: Child,
    log: tempfile::NamedTempFile,
    volume: String,
}

impl Worker {
    fn start(grid: &BuildGrid, id: &str) -> Worker {
        let log = tempfile::NamedTempFile::new().unwrap();
        // The test's own cache volume, removed with the worker.
        let volume = format!("fbtest-worker-{id}-{}", std::process::id());
        let child = Command::new(env!("CARGO_BIN_EXE_flamenco-build"))
            .args(["worker", "--server", &grid.url(), "--bot-id", id])
            .args(["--cache-volume", &volume])
            // Only the image the tests use (see remote_exec.rs).
            .args(["--image", "flamenco-build/go:1.23"])
            .env("FLAMENCO_BUILD_LOG", "flamenco_build=debug")
            .stdout(log.reopen().unwrap())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("start the worker");
        Worker { child, log, volume }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

const TASKS: &str = r#"
[tasks.gen]
toolchain = "go"
inputs = ["src/**"]
outputs = ["out/gen"]
run = "mkdir -p out/gen && cp src/a.txt out/gen/a.txt && echo made > out/gen/b.txt && echo gen-ran"

[tasks.use]
toolchain = "go"
deps = ["gen"]
inputs = []
outputs = ["out/use.txt"]
run = "cat out/gen/a.txt out/gen/b.txt > out/use.txt"
"#;

fn remote_args(grid: &BuildGrid, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "build-optimized",
        "--executor",
        "remote",
        "--remote-executor",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(grid.url());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn a_build_runs_on_the_worker_and_lands_as_a_local_one() {
    require_toolchain_images();
    let pg = Postgres::start();
    let grid = BuildGrid::start_exec(&pg);
    let worker = Worker::start(&grid, "w-client");
    let p = Project::tiny(&format!("{TASKS}\n[remote]\nqueue_timeout = \"40s\"\n"));
    p.write("src/a.txt", "hello\n");
    let args = remote_args(&grid, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let built = p.build(&args);
    assert_eq!(
        built.run.code,
        0,
        "{}\nworker:\n{}",
        built.run.all(),
        worker.log()
    );
    for task in ["gen", "use"] {
        assert!(built.ran(task), "{task}: {}", built.run.all());
        assert_eq!(built.task_json(task)["worker"], "w-client", "{task}");
    }
    let read = |rel: &str| std::fs::read_to_string(p.path().join(rel)).unwrap();
    assert_eq!(read("out/use.txt"), "hello\nmade\n");
    assert!(
        built.run.stderr.contains("Completed gen on w-client")
            || built.run.stdout.contains("Completed gen on w-client")
    );

    // Nothing changed: the local cache answers, the engine executes nothing.
    let again = p.build(&args).ok();
    assert!(again.up_to_date("gen") && again.up_to_date("use"));

    // A failing task fails exactly as locally: exit 1 with its log's last lines.
    p.write(
        "flamenco-build.toml",
        &std::fs::read_to_string(p.path().join("flamenco-build.toml"))
            .unwrap()
            .replace("echo gen-ran", "echo gen-ran; echo broken >&2; exit 3"),
    );
    let failed = p.build(&args);
    assert_eq!(failed.run.code, 1, "{}", failed.run.all());
    let all = failed.run.all();
    assert!(all.contains("broken") && all.contains("gen"), "{all}");
}

#[test]
fn an_image_no_worker_holds_is_named_within_the_queue_timeout() {
    require_toolchain_images();
    let pg = Postgres::start();
    let grid = BuildGrid::start_exec(&pg);
    // No worker at all: nothing can take the task.
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\ninputs = []\noutputs = [\"o.txt\"]\nrun = \"echo > o.txt\"\n",
    );
    let text = std::fs::read_to_string(p.path().join("flamenco-build.toml")).unwrap();
    p.write(
        "flamenco-build.toml",
        &format!("{text}\n[remote]\nqueue_timeout = \"5s\"\n"),
    );
    let args = remote_args(&grid, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let run = p.run(&args);
    assert_ne!(run.code, 0, "{}", run.all());
    let all = run.all();
    assert!(
        all.contains("no worker holds image flamenco-build/go:1.23@sha256:"),
        "{all}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(!p.path().join("o.txt").exists());
}

#[test]
fn a_local_only_task_runs_here_with_a_note() {
    require_toolchain_images();
    // The executor is never reached: an unused port.
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\nlocal_only = true\ninputs = []\noutputs = [\"o.txt\"]\nrun = \"echo here > o.txt\"\n",
    );
    let built = p.build(&[
        "build",
        "--executor",
        "remote",
        "--remote-executor",
        "grpc://127.0.0.1:9",
    ]);
    assert_eq!(built.run.code, 0, "{}", built.run.all());
    assert!(built.run.all().contains("task `t` is local_only"));
    assert_eq!(
        std::fs::read_to_string(p.path().join("o.txt")).unwrap(),
        "here\n"
    );
}
