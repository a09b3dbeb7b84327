//! Reliability under faults (issue 6): the build process killed with SIGKILL at any moment, four
//! builds on one cache, a lock whose holder was killed, the Docker engine going away mid-build, a
//! task's container killed from outside, and memory and CPU limits.
//!
//! `FB_FAULT_KILLS` sets how many SIGKILLs the crash-safety loop lands (default 6; the heavy run
//! uses 20 or more).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::remote_engine::{IMAGES, SecondEngine};
use crate::support::{Project, Run, Spawned, docker_lines, require_toolchain_images};

const BIN: &str = env!("CARGO_BIN_EXE_flamenco-build");

// ---------------------------------------------------------------------------------------------
// Helpers

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// Polls `cond`; the limit only keeps a condition that never comes from hanging the test (it
/// fails with `what`), it is not a speed requirement.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Relative path → SHA-256 of every file under `root`, minus the top-level entries in `skip`.
fn file_hashes(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(&path, root, skip, out);
            } else {
                let digest = Sha256::digest(std::fs::read(&path).unwrap());
                out.insert(rel, hex::encode(digest));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

/// Every file under `dir` whose name starts with `prefix`.
fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(files_named(&p, prefix));
        }
    }
    found
}

/// `cache-verify`: (entries checked, bad entries), from its last line.
fn verify_counts(r: &Run) -> (usize, usize) {
    let line = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Cache: verified "))
        .unwrap_or_else(|| panic!("no summary from cache-verify:\n{}", r.all()));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

fn remove_path(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).unwrap(),
        Ok(_) => std::fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Crash safety: SIGKILL at many moments of build-optimized

/// gen (hashes a 20 MB input, writes 3 MB) → pack → final ← other. Deterministic outputs.
const CRASH_TASKS: &str = r#"
[tasks.gen]
toolchain = "go"
inputs = ["src/**"]
run = "yes abc | head -c 3000000 > big.bin && sha256sum src/data.txt src/a.txt > gen.txt"
outputs = ["big.bin", "gen.txt"]

[tasks.other]
toolchain = "go"
run = "seq 1 300000 > nums.txt && yes xyz | head -c 2000000 > other.bin"
outputs = ["nums.txt", "other.bin"]

[tasks.pack]
toolchain = "go"
deps = ["gen"]
run = "mkdir -p pack && cp big.bin pack/copy.bin && sha256sum big.bin gen.txt > pack/sums && sleep 1"
outputs = ["pack"]

[tasks.final]
toolchain = "go"
deps = ["pack", "other"]
run = "mkdir -p final && cat pack/sums nums.txt | sha256sum > final/sum.txt && head -c 1000000 other.bin > final/part.bin"
outputs = ["final"]
"#;

const CRASH_OUTPUTS: [&str; 6] = [
    "big.bin",
    "gen.txt",
    "nums.txt",
    "other.bin",
    "pack",
    "final",
];
const NOT_OUTPUTS: [&str; 3] = [".build-cache", "src", "flamenco-build.toml"];

fn crash_project() -> Project {
    let p = Project::tiny(CRASH_TASKS);
    p.write("src/a.txt", "alpha\n");
    p.write("src/data.txt", &"input line\n".repeat(20_000_000 / 11));
    p
}

fn remove_outputs(p: &Project) {
    for o in CRASH_OUTPUTS {
        remove_path(&p.path().join(o));
    }
}

/// Tasks that had started and not ended when the progress output stopped. (A build killed with
/// SIGKILL prints no --json summary: its progress lines are all there is, and only for the log.)
fn in_flight(stdout: &str) -> Vec<String> {
    let mut started = BTreeSet::new();
    for l in stdout.lines() {
        let Some(rest) = l.split("] ").nth(1) else {
            continue;
        };
        if let Some(t) = rest.strip_prefix("Starting ") {
            started.insert(t.trim().to_string());
        }
        for word in ["Completed ", "Restored ", "Up to date ", "Failed "] {
            if let Some(t) = rest.strip_prefix(word) {
                started.remove(t.split(' ').next().unwrap());
            }
        }
    }
    started.into_iter().collect()
}

/// How many tasks the progress output reports as finished.
fn done(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| {
            ["] Completed ", "] Restored ", "] Up to date "]
                .iter()
                .any(|w| l.contains(w))
        })
        .count()
}

#[test]
fn crash_safety_sigkill_at_many_moments_then_the_next_build_recovers() {
    require_toolchain_images();
    let kills: usize = std::env::var("FB_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
        .max(1);
    let p = crash_project();
    let build = || p.build(&["build-optimized"]);

    // A clean build: the reference outputs, and how long a cold build takes.
    let t = Instant::now();
    build().ok();
    let cold = t.elapsed();
    let reference = file_hashes(p.path(), &NOT_OUTPUTS);
    assert_eq!(
        reference.keys().collect::<Vec<_>>(),
        [
            "big.bin",
            "final/part.bin",
            "final/sum.txt",
            "gen.txt",
            "nums.txt",
            "other.bin",
            "pack/copy.bin",
            "pack/sums",
        ]
    );
    assert_eq!(
        std::fs::read(p.path().join("big.bin")).unwrap(),
        b"abc\n".repeat(750_000)
    );
    // ... and how long a build that restores everything takes (the second time: with the
    // stat cache warm, as in the loop).
    let mut restore = Duration::MAX;
    for _ in 0..2 {
        remove_outputs(&p);
        let t = Instant::now();
        let b = build().ok();
        restore = restore.min(t.elapsed());
        assert!(b.restored("pack"), "{}", b.run.all());
        assert_eq!(file_hashes(p.path(), &NOT_OUTPUTS), reference);
    }
    eprintln!(
        "crash-safety: a cold build takes {:.2}s, a restoring build {:.2}s",
        cold.as_secs_f64(),
        restore.as_secs_f64()
    );

    let runs_dir = p.path().join(".build-cache/runs");
    let (mut landed, mut recovered, mut leftover, mut bad) = (0, 0, 0, 0);
    let mut reaped_after = 0;
    let mut problems = Vec::new();
    for i in 0..kills {
        // Even iterations: a cold build (hashing, upload, run, download, save). Odd: every output
        // deleted, so the build restores. Each at its own fraction of that build's duration.
        let cold_variant = i % 2 == 0;
        if cold_variant {
            p.run(&["clean-cache"]).ok();
        }
        remove_outputs(&p);
        let base = if cold_variant { cold } else { restore };
        let frac = (i as f64 + 0.5) / kills as f64;
        let mut delay = base.mul_f64(frac);
        // A build faster than measured ends before the kill: try again, earlier.
        let mut killed = None;
        for _ in 0..4 {
            let mut b = Spawned::new(p.cmd(&["build-optimized", "--progress", "plain"]));
            std::thread::sleep(delay);
            if b.running() {
                killed = Some(b.sigkill());
                break;
            }
            b.wait_for(Duration::from_secs(300))
                .expect("a build that was not killed did not end")
                .ok();
            if cold_variant {
                p.run(&["clean-cache"]).ok();
            }
            remove_outputs(&p);
            delay = delay.mul_f64(0.6);
        }
        let Some(killed) = killed else {
            eprintln!(
                "kill {}/{kills}: the build always finished before the kill",
                i + 1
            );
            continue;
        };
        landed += 1;
        let left = p.labels.containers().len();
        if left > 0 {
            reaped_after += 1;
        }
        eprintln!(
            "kill {}/{kills}: {} build, SIGKILL at {:.2}s ({:.0}%): {} task(s) done, in flight {:?}; {} container(s) left behind",
            i + 1,
            if cold_variant { "cold" } else { "restoring" },
            delay.as_secs_f64(),
            delay.as_secs_f64() * 100.0 / base.as_secs_f64(),
            done(&killed.stdout),
            in_flight(&killed.stdout),
            left
        );

        // The next build succeeds, reaps the killed run's containers, and gives the same bytes.
        let r = p.run(&["build-optimized", "--progress", "plain"]);
        let mut ok = true;
        if r.code != 0 {
            problems.push(format!(
                "kill {}: the next build failed:\n{}",
                i + 1,
                r.all()
            ));
            ok = false;
        }
        let now = file_hashes(p.path(), &NOT_OUTPUTS);
        if now != reference {
            problems.push(format!(
                "kill {}: outputs differ from the clean build's:\n{now:?}\nvs\n{reference:?}",
                i + 1
            ));
            ok = false;
        }
        let containers = p.labels.containers();
        if !containers.is_empty() {
            leftover += containers.len();
            problems.push(format!(
                "kill {}: containers left after the next build: {containers:?}",
                i + 1
            ));
            ok = false;
        }
        let stale: Vec<_> = std::fs::read_dir(&runs_dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if !stale.is_empty() {
            problems.push(format!(
                "kill {}: run records left in .build-cache/runs: {stale:?}",
                i + 1
            ));
            ok = false;
        }
        let v = p.run(&["cache-verify"]);
        let (_, b) = verify_counts(&v);
        bad += b;
        if v.code != 0 || b != 0 {
            problems.push(format!("kill {}: cache-verify:\n{}", i + 1, v.all()));
            ok = false;
        }
        if ok {
            recovered += 1;
        }
    }
    eprintln!(
        "crash-safety: {landed} kills, {recovered} recovered, {leftover} leftover containers, {bad} bad cache entries"
    );
    // Not asserted (a later cleanup's business): what the killed runs left in the cache folder.
    let cache = p.path().join(".build-cache");
    eprintln!(
        "crash-safety: left by the killed runs: {} temp file(s) {:?}, {} staging folder(s)",
        files_named(&cache, ".tmp").len(),
        files_named(&cache, ".tmp")
            .iter()
            .map(|f| f.strip_prefix(&cache).unwrap().to_path_buf())
            .collect::<Vec<_>>(),
        std::fs::read_dir(cache.join("tmp")).map_or(0, |d| d.count())
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // The loop has to have tested something: most kills land, and some leave containers that
    // the next build must reap.
    assert!(
        landed * 2 >= kills,
        "only {landed} of {kills} kills landed before the build ended"
    );
    if kills >= 4 {
        assert!(
            reaped_after > 0,
            "no kill left a container behind: the reaping was never exercised"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Concurrency: four builds on one cache; a lock whose holder was killed

const SHARED_TASKS: &str = r#"
[tasks.gen]
toolchain = "go"
inputs = ["src/**"]
run = "mkdir -p out && cat src/*.txt > out/all.txt && yes abc | head -c 2000000 > out/big.bin"
outputs = ["out"]

[tasks.use]
toolchain = "go"
deps = ["gen"]
run = "sha256sum out/all.txt out/big.bin > final.txt && sleep 1"
outputs = ["final.txt"]
"#;

#[test]
fn faults_four_builds_on_one_cache_and_a_killed_lock_holder() {
    require_toolchain_images();
    // Four checkouts in different folders, one absolute cache folder, one cache volume, one label.
    let owner = Project::tiny(SHARED_TASKS);
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let config = std::fs::read_to_string(owner.path().join("flamenco-build.toml"))
        .unwrap()
        .replace(
            "[settings]\n",
            &format!("[settings]\ncache_dir = \"{}\"\n", cache.display()),
        );
    let others: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let dirs: Vec<&Path> = std::iter::once(owner.path())
        .chain(others.iter().map(|d| d.path()))
        .collect();
    for (i, d) in dirs.iter().enumerate() {
        std::fs::write(d.join("flamenco-build.toml"), &config).unwrap();
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::write(d.join("src/b.txt"), "beta\n").unwrap();
        // Two of them with another edit.
        let a = if i < 2 { "alpha\n" } else { "alpha, edited\n" };
        std::fs::write(d.join("src/a.txt"), a).unwrap();
    }
    let cmd = |d: &Path, args: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg("-C")
            .arg(d)
            .arg("--label")
            .arg(owner.labels.arg())
            .args(args);
        c
    };
    let all_at_once = |args: &[&str]| -> Vec<Run> {
        let mut spawned: Vec<Spawned> = dirs.iter().map(|d| Spawned::new(cmd(d, args))).collect();
        spawned
            .iter_mut()
            .map(|s| {
                s.wait_for(Duration::from_secs(180))
                    .expect("a build did not finish")
            })
            .collect()
    };
    let lock_free = || {
        Command::new("flock")
            .arg("-n")
            .arg(cache.join("lock"))
            .arg("true")
            .status()
            .unwrap()
            .success()
    };

    // Round 1: all four build at once; two keys per task end up in the one cache.
    for r in all_at_once(&["build-optimized", "--json"]) {
        let b = r.json().ok();
        assert!(b.done("gen") && b.done("use"), "{}", b.run.all());
    }
    let finals: Vec<String> = dirs
        .iter()
        .map(|d| std::fs::read_to_string(d.join("final.txt")).unwrap())
        .collect();
    assert_eq!(finals[0], finals[1]);
    assert_eq!(finals[2], finals[3]);
    assert_ne!(finals[0], finals[2]);
    assert_eq!(
        std::fs::read_to_string(dirs[2].join("out/all.txt")).unwrap(),
        "alpha, edited\nbeta\n"
    );
    let status = Run::from(cmd(dirs[0], &["cache-status", "--json"]).output().unwrap()).ok();
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(
            t["entries"], 2,
            "a concurrent save was lost: {}",
            status.stdout
        );
    }
    for r in all_at_once(&["cache-verify"]) {
        let r = r.ok();
        assert_eq!(verify_counts(&r), (4, 0), "{}", r.stdout);
    }
    assert!(lock_free(), "the cache lock is still held after the builds");

    // Round 2: every output deleted, all four restore at once.
    for d in &dirs {
        std::fs::remove_dir_all(d.join("out")).unwrap();
        std::fs::remove_file(d.join("final.txt")).unwrap();
    }
    for r in all_at_once(&["build-optimized", "--json"]) {
        let b = r.json().ok();
        assert!(b.restored("gen") && b.restored("use"), "{}", b.run.all());
    }
    for (d, f) in dirs.iter().zip(&finals) {
        assert_eq!(&std::fs::read_to_string(d.join("final.txt")).unwrap(), f);
    }
    for r in all_at_once(&["cache-verify"]) {
        assert_eq!(verify_counts(&r.ok()), (4, 0));
    }
    assert!(
        lock_free(),
        "the cache lock is still held after the restores"
    );
    assert!(owner.labels.containers().is_empty());

    // A lock holder that is killed: `flock <cache>/lock sleep 600`, in its own process group so
    // that the kill takes the lock's every holder (flock and the sleep that inherits its fd).
    let mut holder = Command::new("flock")
        .arg(cache.join("lock"))
        .args(["sleep", "600"])
        .process_group(0)
        .spawn()
        .unwrap();
    struct Group(i32);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let group = Group(holder.id() as i32);
    wait_until("flock to take the lock", Duration::from_secs(10), || {
        !lock_free()
    });
    // While it lives, a build that must place restored outputs waits for it ...
    std::fs::remove_file(dirs[0].join("final.txt")).unwrap();
    let mut b = Spawned::new(cmd(dirs[0], &["build-optimized", "--json"]));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        b.running(),
        "the build did not wait for the cache lock: {:?}",
        b.wait_for(Duration::ZERO).map(|r| r.all())
    );
    // ... and once it is killed with SIGKILL (the kernel drops its lock), the build goes on and
    // restores. The limit only keeps a build blocked for good from hanging the test.
    drop(group); // SIGKILL to the group, once (its id may be reused after this)
    let killed = Instant::now();
    holder.wait().unwrap();
    let b = b
        .wait_for(Duration::from_secs(120))
        .expect("the build is still blocked 120s after the lock holder was killed")
        .json()
        .ok();
    let took = killed.elapsed();
    assert!(b.restored("use"), "{}", b.run.all());
    assert_eq!(
        std::fs::read_to_string(dirs[0].join("final.txt")).unwrap(),
        finals[0]
    );
    assert!(lock_free());
    eprintln!(
        "concurrency: 4 builds on one cache ok; a build blocked by a killed lock holder finished {:.2}s after the kill",
        took.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Engine faults

/// The pid and arguments of the dockerd serving `host` (one of our own).
fn dockerd_serving(host: &str) -> (i32, Vec<String>) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("dockerd"))
            && args.windows(2).any(|w| w[0] == "-H" && w[1] == host)
        {
            return (pid, args);
        }
    }
    panic!("no dockerd serving {host}");
}

/// Whether a process has exited (gone, or a zombie nobody has reaped yet).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// A dockerd this test restarted; stopped on drop (before its SecondEngine removes the folders).
struct Restarted(Child);

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn engine_answers(host: &str) -> bool {
    Command::new("docker")
        .args(["-H", host, "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn faults_the_engine_stops_mid_build_then_comes_back() {
    require_toolchain_images();
    let docker0 = Path::new("/sys/class/net/docker0");
    let had_docker0 = docker0.exists();
    // The task sleeps 5s: a stopping dockerd gives running containers 10s before it kills them,
    // so the task ends on its own and the build's next call (the download) finds no engine.
    // (A task that outlives those 10s ends with 137, reported as a task failure: see the report.)
    let engine = SecondEngine::start();
    engine.load(
        IMAGES
            .iter()
            .find(|i| i.starts_with("flamenco-build/go:"))
            .unwrap(),
    );
    let host = engine.host.clone();
    let p = Project::tiny(
        r#"
[tasks.quick]
toolchain = "go"
run = "echo q > q.out"
outputs = ["q.out"]

[tasks.slow]
toolchain = "go"
deps = ["quick"]
run = "sleep 60 && echo s > s.out"
outputs = ["s.out"]
"#,
    );
    let on_engine = |filter: &[&str]| {
        let mut args = vec!["-H", &host, "ps", "-q", "--filter"];
        let f = p.labels.filter();
        args.push(&f);
        for x in filter {
            args.extend(["--filter", x]);
        }
        docker_lines(&args)
    };
    let build = || {
        let mut c = p.build_cmd(&["build-optimized"]);
        c.env("DOCKER_HOST", &host);
        c
    };

    let mut b = Spawned::new(build());
    wait_until(
        "the slow task's container to run",
        Duration::from_secs(60),
        || !on_engine(&["label=dev.flamenco-build.task=slow"]).is_empty(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (pid, args) = dockerd_serving(&host);
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let stopped = Instant::now();
    // The limit only keeps a build that never notices from hanging the test.
    let r = b
        .wait_for(Duration::from_secs(180))
        .expect("the build did not end within 180s of the engine stopping");
    let took = stopped.elapsed();
    eprintln!(
        "engine stopped: the build ended {:.1}s later with exit {}: {}",
        took.as_secs_f64(),
        r.code,
        r.stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("")
    );
    if std::env::var_os("FB_FAULT_SHOW").is_some() {
        eprintln!("{}", r.all());
    }
    assert_eq!(
        r.code,
        3,
        "an engine failure, not a task failure: {}",
        r.all()
    );
    assert!(
        r.stderr.contains(&host) && r.stderr.contains("Docker engine"),
        "the error should name the engine {host}:\n{}",
        r.all()
    );
    assert!(!p.path().join("s.out").exists());
    // Nothing half-written in the cache: quick's entry verifies, no temp files, no staging.
    let v = p.run(&["cache-verify"]).ok();
    assert_eq!(verify_counts(&v), (1, 0), "{}", v.stdout);
    let cache = p.path().join(".build-cache");
    assert_eq!(
        files_named(&cache.join("artifacts"), ".tmp-"),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        std::fs::read_dir(cache.join("tmp")).unwrap().count(),
        0,
        "staging folders left in .build-cache/tmp"
    );

    // The same dockerd again, on the same data root (the image is still there).
    wait_until("the dockerd to exit", Duration::from_secs(60), || {
        exited(pid)
    });
    let data_root = args
        .windows(2)
        .find(|w| w[0] == "--data-root")
        .map(|w| PathBuf::from(&w[1]))
        .unwrap();
    let log = std::fs::File::create(data_root.with_file_name("dockerd-restarted.log")).unwrap();
    let restarted = Restarted(
        Command::new(&args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until(
        "the restarted dockerd to answer",
        Duration::from_secs(60),
        || engine_answers(&host),
    );
    let b = Run::from(build().output().unwrap()).json().ok();
    assert!(b.up_to_date("quick") && b.ran("slow"), "{}", b.run.all());
    assert_eq!(
        std::fs::read_to_string(p.path().join("s.out")).unwrap(),
        "s\n"
    );
    // The stopped run's container, back with the engine, was reaped by this build.
    assert_eq!(on_engine(&["status=exited"]), Vec::<String>::new());
    let all = docker_lines(&["-H", &host, "ps", "-aq", "--filter", &p.labels.filter()]);
    assert!(all.is_empty(), "containers left on the engine: {all:?}");
    let v = p.run(&["cache-verify"]).ok();
    assert_eq!(verify_counts(&v), (2, 0), "{}", v.stdout);
    drop(restarted);
    drop(engine);
    assert_eq!(
        docker0.exists(),
        had_docker0,
        "the second engine must leave the machine's docker0 alone"
    );
}

#[test]
fn faults_a_task_container_killed_from_outside() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.victim]
toolchain = "go"
run = "sleep 30 && echo done > v.out"
outputs = ["v.out"]
"#,
    );
    let mut b = Spawned::new(p.build_cmd(&["build-optimized"]));
    let f = p.labels.filter();
    let find = || {
        docker_lines(&[
            "ps",
            "-q",
            "--filter",
            &f,
            "--filter",
            "label=dev.flamenco-build.task=victim",
        ])
    };
    wait_until(
        "the task's container to run",
        Duration::from_secs(60),
        || !find().is_empty(),
    );
    let id = find().pop().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    assert!(
        Command::new("docker")
            .args(["kill", &id])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    // The limit only keeps a build that never notices from hanging the test.
    let b = b
        .wait_for(Duration::from_secs(120))
        .expect("the build did not notice its task was killed")
        .json();
    eprintln!("the build ended {:?} after the kill", killed.elapsed());
    let r = &b.run;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(b.status("victim"), "failed");
    assert!(
        b.task_json("victim")["error"]
            .as_str()
            .is_some_and(|e| e.contains("SIGKILL from outside")),
        "{}",
        b.summary
    );
    assert!(
        r.stderr.contains(
            "task `victim` was killed: SIGKILL from outside the task (docker kill, or the engine) (exit code 137)"
        ),
        "{}",
        r.stderr
    );
    assert!(!p.path().join("v.out").exists());
    assert!(
        p.labels.containers().is_empty(),
        "containers left: {:?}",
        p.labels.containers()
    );
    let v = p.run(&["cache-verify"]).ok();
    assert_eq!(verify_counts(&v), (0, 0), "{}", v.stdout);
}

// ---------------------------------------------------------------------------------------------
// 4. Resource limits

const LIMIT_TASKS: &str = r#"
[tasks.hog]
toolchain = "go"
memory = "64MB"
run = "head -c 200000000 /dev/zero | tail > /dev/null && echo survived > hog.out"
outputs = ["hog.out"]

[tasks.limited]
toolchain = "go"
memory = "256MiB"
cpus = 0.5
run = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us > limits.txt"
outputs = ["limits.txt"]
"#;

#[test]
fn faults_a_task_over_its_memory_limit_is_killed_as_out_of_memory() {
    require_toolchain_images();
    let p = Project::tiny(LIMIT_TASKS);
    let r = p.run(&["build-optimized", "--progress", "plain", "hog"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("task `hog` was killed: out of memory"),
        "{}",
        r.stderr
    );
    assert!(!p.path().join("hog.out").exists());
    assert!(p.labels.containers().is_empty());
}

#[test]
fn faults_cpu_and_memory_limits_reach_the_task() {
    require_toolchain_images();
    let p = Project::tiny(LIMIT_TASKS);
    p.run(&["build-optimized", "--progress", "plain", "limited"])
        .ok();
    // The container is gone (no `docker inspect` afterwards): the task wrote what its cgroup says.
    assert!(p.labels.containers().is_empty());
    let limits = std::fs::read_to_string(p.path().join("limits.txt")).unwrap();
    let v: Vec<&str> = limits.lines().collect();
    assert_eq!(
        v,
        ["268435456", "50000", "100000"],
        "memory limit, CPU quota and period"
    );
}
