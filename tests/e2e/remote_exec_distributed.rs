//! `--executor remote` beyond one machine: BuildGrid schedules to two `flamenco-build worker`s,
//! each on a dockerd of its own (its own data root; the toolchain images loaded with `docker save
//! | docker load`). The example builds across both, byte for byte as locally; a second build
//! creates no container on any of the three engines. Then the faults a distributed build meets:
//! the engine stopped mid-build, and Ctrl-C while a task runs on a worker. Each test prints how
//! long the fault took to be noticed and to be recovered from (`--nocapture` shows it).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::remote_engine::SecondEngine;
use crate::remote_exec::Worker;
use crate::servers::{BuildGrid, Postgres};
use crate::support::{
    EXAMPLE_TASKS, Events, Project, Spawned, docker_lines, require_toolchain_images,
};

/// The images the example's tasks run in.
const EXAMPLE_IMAGES: [&str; 3] = [
    "flamenco-build/go:1.23",
    "flamenco-build/node:22",
    "flamenco-build/java:11",
];

/// The small image the fault tests' tasks run in (quick to load into an engine).
const DEBIAN: &str = "flamenco-build/debian:bookworm";

/// Tags of the test's own for shared toolchain images. Another worktree's tests re-point the
/// `flamenco-build/*` tags at their own builds of the images (toolchain-images.sh tags its
/// content-tagged image on every run): an image loaded into a worker's engine could then differ
/// from the one the client resolves a moment later, and no worker would hold the image asked for.
struct OwnTags {
    /// (shared reference, the test's own reference to the same image ID)
    tags: Vec<(String, String)>,
}

impl OwnTags {
    fn of(images: &[&str]) -> OwnTags {
        let prefix = format!("fbtest-{}-{}", std::process::id(), crate::support::uuid());
        let tags = images
            .iter()
            .map(|image| {
                let id = docker_lines(&["image", "inspect", "--format", "{{.Id}}", image])
                    .pop()
                    .unwrap_or_else(|| panic!("no image {image}"));
                let name = image.rsplit('/').next().unwrap();
                let own = format!("{prefix}/{name}");
                let ok = std::process::Command::new("docker")
                    .args(["tag", &id, &own])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "docker tag {id} {own}");
                (image.to_string(), own)
            })
            .collect();
        OwnTags { tags }
    }

    fn own(&self, image: &str) -> &str {
        let found = self.tags.iter().find(|(shared, _)| shared == image);
        &found.expect("an image tagged by the test").1
    }

    fn all(&self) -> Vec<&str> {
        self.tags.iter().map(|(_, own)| own.as_str()).collect()
    }

    /// `text` with every shared reference replaced by the test's own.
    fn apply(&self, text: &str) -> String {
        self.tags.iter().fold(text.to_string(), |t, (shared, own)| {
            t.replace(&format!("\"{shared}\""), &format!("\"{own}\""))
        })
    }
}

impl Drop for OwnTags {
    fn drop(&mut self) {
        // Untags only: the image keeps its other tags (and is never removed while it has one).
        for (_, own) in &self.tags {
            let tags = docker_lines(&["image", "inspect", "--format", "{{len .RepoTags}}", own]);
            if tags.first().is_some_and(|n| n != "1") {
                let _ = std::process::Command::new("docker")
                    .args(["rmi", own])
                    .output();
            }
        }
    }
}

fn remote_args(grid: &BuildGrid) -> Vec<String> {
    [
        "build-optimized",
        "--executor",
        "remote",
        "--remote-executor",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([grid.url()])
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `n` engines of the test's own, `images` loaded into each (the engines load at once).
fn engines_holding(n: usize, images: &[&str]) -> Vec<SecondEngine> {
    let engines: Vec<SecondEngine> = (0..n).map(|_| SecondEngine::start()).collect();
    std::thread::scope(|s| {
        for e in &engines {
            s.spawn(|| e.load_all(images));
        }
    });
    engines
}

/// A unique bot name for this test process.
fn bot(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The seconds since the epoch, as `docker events --since` takes them.
fn now_secs() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{:.3}", t.as_secs_f64())
}

/// Containers created on the engine at `host` since `since` (every container there is ours).
fn creates_on(host: &str, since: &str) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(200));
    let until = now_secs();
    docker_lines(&[
        "-H",
        host,
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--format",
        "{{.ID}}",
    ])
}

/// What a project folder holds, outside the cache and the configuration (which names each
/// copy's own cache volume): per path its kind, permission bits and content (a link's target),
/// so that two builds compare byte for byte and mode for mode.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".build-cache" || rel == "flamenco-build.toml" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(&path, root, out);
                format!("dir {mode:o}")
            } else {
                let bytes = std::fs::read(&path).unwrap();
                use sha2::Digest;
                format!("file {mode:o} {}", hex::encode(sha2::Sha256::digest(bytes)))
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The paths where two trees differ, for a failure message.
fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {:?} vs {:?}", a.get(k), b.get(k)))
        .collect()
}

fn logs_of(workers: &[&Worker]) -> String {
    workers.iter().map(|w| w.log()).collect()
}

#[test]
fn the_example_builds_across_two_workers_each_on_its_own_engine() {
    require_toolchain_images();
    let pg = Postgres::start();
    let grid = BuildGrid::start_exec(&pg);
    let images = OwnTags::of(&EXAMPLE_IMAGES);
    let example = || {
        let p = Project::example();
        let config = p.path().join("flamenco-build.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, images.apply(&text)).unwrap();
        p
    };
    // The reference: a local build of another copy, while the images load into the engines.
    let local = example();
    let (engines, reference) = std::thread::scope(|s| {
        let reference = s.spawn(|| local.build(&["build-optimized"]));
        let engines = engines_holding(2, &images.all());
        (engines, reference.join().unwrap())
    });
    let reference = reference.ok();
    assert!(EXAMPLE_TASKS.iter().all(|t| reference.ran(t)));
    let ids = [bot("dist-a"), bot("dist-b")];
    // One lease at a time each (the default `--capacity 1`): tasks that can run together go to
    // both workers.
    let workers: Vec<Worker> = engines
        .iter()
        .zip(&ids)
        .map(|(e, id)| Worker::start_on_own_engine(&grid, id, &e.host))
        .collect();
    let all: Vec<&Worker> = workers.iter().collect();
    let p = example();
    let args = remote_args(&grid);
    let started = Instant::now();
    let built = p.build(&strs(&args));
    let wall = started.elapsed();
    assert_eq!(built.run.code, 0, "{}\n{}", built.run.all(), logs_of(&all));
    let mut on = BTreeMap::new();
    for task in EXAMPLE_TASKS {
        assert!(built.ran(task), "{task}: {}", built.run.all());
        let t = built.task_json(task);
        assert!(t["engine_cache"].is_null(), "{task} ran: {t}");
        let worker = t["worker"]
            .as_str()
            .unwrap_or_else(|| panic!("{task}: {t}"));
        eprintln!(
            "distributed: {task} on {worker}: {:.1}s (queued {:.1}s, run {:.1}s)",
            t["times_ms"]["total"].as_f64().unwrap() / 1000.0,
            t["times_ms"]["create"].as_f64().unwrap() / 1000.0,
            t["times_ms"]["run"].as_f64().unwrap() / 1000.0,
        );
        on.insert(task, worker.to_string());
    }
    eprintln!(
        "distributed: the example in {wall:?} on two workers (the local reference: {:.1}s)",
        reference.summary["wall_ms"].as_f64().unwrap() / 1000.0
    );
    let used: BTreeSet<&String> = on.values().collect();
    assert_eq!(used, ids.iter().collect(), "both workers ran tasks: {on:?}");
    let want = tree(local.path());
    let diff = differences(&tree(p.path()), &want);
    assert!(
        diff.is_empty(),
        "remote vs local build:\n{}",
        diff.join("\n")
    );

    // Nothing changed: nothing runs anywhere, and no container is created on any engine.
    let since = now_secs();
    let events = Events::start();
    let again = p.build(&strs(&args)).ok();
    assert!(EXAMPLE_TASKS.iter().all(|t| again.up_to_date(t)));
    // A fresh clone: the engine's action cache answers every task; no worker runs any.
    let fresh = example();
    let t = Instant::now();
    let hits = fresh.build(&strs(&args)).ok();
    eprintln!(
        "distributed: a fresh clone from the engine's action cache in {:?}",
        t.elapsed()
    );
    for task in EXAMPLE_TASKS {
        let j = hits.task_json(task);
        assert!(hits.done(task), "{task}: {j}");
        assert!(j["worker"].is_null(), "{task} ran on a worker again: {j}");
        assert_eq!(j["engine_cache"], "hit", "{task}: {j}");
    }
    let diff = differences(&tree(fresh.path()), &want);
    assert!(
        diff.is_empty(),
        "engine cache hit vs local build:\n{}",
        diff.join("\n")
    );
    for e in &engines {
        assert_eq!(
            creates_on(&e.host, &since),
            Vec::<String>::new(),
            "on {}",
            e.host
        );
    }
    assert!(events.actions(&p.labels).is_empty());
    assert!(events.actions(&fresh.labels).is_empty());
    for w in &workers {
        assert!(w.containers().is_empty(), "{} left a container", w.id);
    }
}

/// Two tasks on the small Debian image: `first`, then `slow`, which sleeps `SLEEP` seconds
/// before it writes three files (so a fault lands while it runs).
fn fault_project(images: &OwnTags) -> Project {
    let p = Project::tiny(&format!(
        r#"[toolchains.deb]
image = "{}"

[tasks.first]
toolchain = "deb"
inputs = ["src/**"]
outputs = ["out/first.txt"]
run = "mkdir -p out && cat src/a.txt > out/first.txt"

[tasks.slow]
toolchain = "deb"
deps = ["first"]
inputs = []
outputs = ["out/slow"]
env = ["SLEEP"]
run = "sleep $SLEEP; mkdir -p out/slow; for i in 1 2 3; do echo $i > out/slow/$i.txt; done"

[remote]
queue_timeout = "60s"
"#,
        images.own(DEBIAN)
    ));
    p.write("src/a.txt", "a\n");
    p
}

/// Starts the remote build of `p` and returns once `slow` runs on `worker`.
fn build_until_slow_runs(p: &Project, grid: &BuildGrid, worker: &Worker, sleep: &str) -> Spawned {
    let mut cmd = p.build_cmd(&strs(&remote_args(grid)));
    cmd.env("SLEEP", sleep);
    let mut build = Spawned::new(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    let slow_runs = || p.path().join("out/first.txt").exists() && !worker.containers().is_empty();
    while !slow_runs() {
        if !build.running() || Instant::now() > deadline {
            let run = build.wait_for(Duration::from_secs(30));
            panic!(
                "`slow` never ran on the worker: {:?}\n{}",
                run.map(|r| r.all()),
                worker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    build
}

/// Nothing of a stopped build is left half-written: no staging folder, no scratch folder, none
/// of `slow`'s outputs.
fn assert_nothing_half_written(p: &Project) {
    assert!(!p.path().join("out/slow").exists(), "slow's outputs placed");
    let tmp = p.path().join(".build-cache/tmp");
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", tmp.display());
    let staged: Vec<String> = std::fs::read_dir(p.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".flamenco-build-staging"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn the_engine_stopped_mid_build_is_named_and_leaves_nothing_half_written() {
    require_toolchain_images();
    let pg = Postgres::start();
    let mut grid = BuildGrid::start_exec(&pg);
    let images = OwnTags::of(&[DEBIAN]);
    let engine = SecondEngine::start();
    engine.load(images.own(DEBIAN));
    let worker = Worker::start_on_own_engine(&grid, &bot("dist-stop"), &engine.host);
    let p = fault_project(&images);
    let build = build_until_slow_runs(&p, &grid, &worker, "8");
    let stopped = Instant::now();
    grid.kill();
    let run = build.wait();
    let noticed = stopped.elapsed();
    eprintln!("engine stopped: the build failed {noticed:?} after BuildGrid was killed");
    let all = run.all();
    assert_eq!(run.code, 3, "{all}");
    let named = format!("task `slow` on the remote executor: {}", grid.url());
    assert!(all.contains(&named), "{all}");
    let built = run.json();
    assert_eq!(built.status("first"), "built");
    assert_eq!(built.status("slow"), "failed");
    assert_nothing_half_written(&p);
    // The cache is whole: every entry checks out, and a local build goes on from it.
    p.run(&["cache-verify"]).ok();
    let t = Instant::now();
    let local = p.build(&["build-optimized"]).ok();
    assert!(local.up_to_date("first") && local.ran("slow"));
    eprintln!(
        "engine stopped: a local build finished the rest in {:?}",
        t.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/slow/3.txt")).unwrap(),
        "3\n"
    );
}

#[test]
fn ctrl_c_cancels_the_operation_and_the_worker_removes_its_container() {
    require_toolchain_images();
    let pg = Postgres::start();
    let grid = BuildGrid::start_exec(&pg);
    let images = OwnTags::of(&[DEBIAN]);
    let engine = SecondEngine::start();
    engine.load(images.own(DEBIAN));
    let worker = Worker::start_on_own_engine(&grid, &bot("dist-int"), &engine.host);
    let p = fault_project(&images);
    let mut build = build_until_slow_runs(&p, &grid, &worker, "60");
    let interrupted = Instant::now();
    build.signal(Signal::SIGINT);
    let run = build
        .wait_for(Duration::from_secs(30))
        .expect("the build stops after Ctrl-C");
    eprintln!(
        "ctrl-c: the build exited {:?} after SIGINT",
        interrupted.elapsed()
    );
    assert_eq!(run.code, 130, "{}", run.all());
    // BuildGrid recorded the cancellation: the operation, and its job with it.
    let cancelled = pg.query("select count(*) from operations where cancelled");
    assert_eq!(cancelled, "1", "{}", grid.log_tail());
    assert_eq!(pg.query("select count(*) from jobs where cancelled"), "1");
    // The worker sees its lease cancelled at its next heartbeat and removes the container.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !worker.containers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "container left:\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "ctrl-c: the worker's container gone {:?} after SIGINT",
        interrupted.elapsed()
    );
    assert!(
        worker.log().contains("the engine cancelled the lease"),
        "{}",
        worker.log()
    );
    assert!(
        p.labels.containers().is_empty(),
        "a container on this machine's engine"
    );
    assert_nothing_half_written(&p);
    // The worker is free again: the next build runs there.
    let t = Instant::now();
    let mut cmd = p.build_cmd(&strs(&remote_args(&grid)));
    cmd.env("SLEEP", "0");
    let again = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    assert!(again.up_to_date("first") && again.ran("slow"));
    assert_eq!(again.task_json("slow")["worker"], worker.id.as_str());
    eprintln!(
        "ctrl-c: the next build ran on the same worker in {:?}",
        t.elapsed()
    );
}
