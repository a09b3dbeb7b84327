//! Issue 10, the runtime side of the boundary: a cache volume per project, uploads that are
//! what was hashed, signals during restores and tasks, `clean-all` that checks first and keeps
//! what git tracks, engine and project-folder errors found as such, and task times from the
//! task's start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Events, Labels, Project, Run, Spawned, docker_lines, require_toolchain_images,
};

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The running containers of a test that run `task`.
fn running_task(labels: &Labels, task: &str) -> Vec<String> {
    docker_lines(&[
        "ps",
        "-q",
        "--filter",
        &labels.filter(),
        "--filter",
        &format!("label=dev.flamenco-build.task={task}"),
        "--filter",
        "status=running",
    ])
}

/// A tiny project whose config is exactly `config` plus the Go toolchain (no `cache_volume`
/// unless `config` sets one).
fn project_with(config: &str) -> Project {
    let p = Project::tiny("");
    p.write(
        "flamenco-build.toml",
        &format!("{config}\n[toolchains.go]\nimage = \"flamenco-build/go:1.23\"\n"),
    );
    p
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()))
}

fn task_json<'a>(v: &'a serde_json::Value, task: &str) -> &'a serde_json::Value {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == task)
        .unwrap_or_else(|| panic!("no task {task} in {v}"))
}

// ---------------------------------------------------------------------------------------------
// Finding 6: the cache volume

// Issue 10 finding 6: the default cache volume is per project, and task containers have a pids
// limit. Failed on main before this change: both projects used the machine-wide
// `flamenco-build-cache` (project B saw the file project A's task wrote there) and pids.max was
// `max`.
#[test]
fn f6_each_project_gets_its_own_cache_volume_and_tasks_a_pids_limit() {
    require_toolchain_images();
    let a = project_with(
        r#"
[tasks.write]
toolchain = "go"
run = "echo poison > /cache/from-a; { cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; } > pids.txt"
outputs = ["pids.txt"]
"#,
    );
    let b = project_with(
        r#"
[tasks.read]
toolchain = "go"
run = "ls -A /cache > seen.txt"
outputs = ["seen.txt"]
"#,
    );
    a.run(&["build-optimized", "--progress", "plain"]).ok();
    b.run(&["build-optimized", "--progress", "plain"]).ok();
    let (va, vb) = (a.labels.volumes(), b.labels.volumes());
    assert_eq!(va.len(), 1, "project A's build made its own volume: {va:?}");
    assert_eq!(vb.len(), 1, "project B's build made its own volume: {vb:?}");
    assert_ne!(va, vb);
    for v in [&va[0], &vb[0]] {
        let hex = v.strip_prefix("flamenco-build-cache-").unwrap_or_default();
        assert!(
            hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "`{v}` is not flamenco-build-cache-<12 hex>"
        );
    }
    let seen = std::fs::read_to_string(b.path().join("seen.txt")).unwrap();
    assert!(
        !seen.contains("from-a"),
        "project B saw project A's cache: {seen}"
    );
    assert_eq!(
        std::fs::read_to_string(a.path().join("pids.txt"))
            .unwrap()
            .trim(),
        "4096"
    );
}

// Issue 10 finding 6: `clean-all` removes only a volume flamenco-build created (it carries our
// label). Failed on main before this change: it removed a volume it had not created.
#[test]
fn f6_clean_all_refuses_a_volume_it_did_not_create() {
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\nrun = \"echo x > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    // Someone else's volume, named as the cache volume (labelled only for the test's cleanup).
    let ok = Command::new("docker")
        .args(["volume", "create", "--label", &p.labels.arg(), &p.volume])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok);
    p.write("out.txt", "x\n");
    let r = p.run(&["clean-all"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains(&format!(
            "the cache volume `{}` was not created by flamenco-build",
            p.volume
        )),
        "{}",
        r.all()
    );
    assert_eq!(
        p.labels.volumes(),
        vec![p.volume.clone()],
        "it is still there"
    );
    assert!(
        p.path().join("out.txt").exists(),
        "nothing is removed when the volume check fails"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 7: an input edited while the build runs

// Issue 10 finding 7: what a task was given is what its key was computed from, or the result is
// not cached. Failed on main before this change: the second build, with the original content
// back, "hit" and restored the output built from the edited content.
#[test]
fn f7_an_input_edited_while_the_build_runs_is_not_cached_under_the_old_key() {
    require_toolchain_images();
    // Two independent tasks, one slot: the second one's key is computed at the start, and its
    // files are uploaded only once the first one is done.
    let task = |n: &str| {
        format!(
            "[tasks.{n}]\ntoolchain = \"go\"\ninputs = [\"in-{n}.txt\"]\nrun = \"sleep 3; cat in-{n}.txt > out-{n}.txt\"\noutputs = [\"out-{n}.txt\"]\n\n"
        )
    };
    let p = Project::tiny(&format!("{}{}", task("one"), task("two")));
    p.write("in-one.txt", "original\n");
    p.write("in-two.txt", "original\n");
    let build = Spawned::new(p.cmd(&["build-optimized", "-j1", "--progress", "plain"]));
    let mut first = String::new();
    wait_until("a task's container to run", || {
        for t in ["one", "two"] {
            if !running_task(&p.labels, t).is_empty() {
                first = t.to_string();
                return true;
            }
        }
        false
    });
    let second = if first == "one" { "two" } else { "one" };
    p.write(&format!("in-{second}.txt"), "edited\n");
    let edited = build.wait().ok();
    assert_eq!(
        std::fs::read_to_string(p.path().join(format!("out-{second}.txt"))).unwrap(),
        "edited\n",
        "the outputs of the run are kept"
    );
    // The original content again: its key must not restore what the edited content built.
    p.write(&format!("in-{second}.txt"), "original\n");
    let r = p
        .run(&["build-optimized", "--progress", "plain", "--json"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(p.path().join(format!("out-{second}.txt"))).unwrap(),
        "original\n",
        "{}",
        r.all()
    );
    assert_eq!(task_json(&json(&r), second)["status"], "built");
    assert!(
        edited.stderr.contains(&format!(
            "in-{second}.txt changed while the build ran; not cached"
        )),
        "{}",
        edited.all()
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 11: signals

/// How many files the restored output holds.
const MANY: usize = 20_000;

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

// Issue 10 finding 11: SIGTERM during a restore stops it, starts no container, exits 143 and
// leaves the workspace output as it was (here: absent), never partial. Failed on main before this
// change: the restore of 20,000 files went on to the end and was placed before the exit.
#[test]
fn f11_sigterm_during_a_restore_stops_it_and_starts_no_container() {
    require_toolchain_images();
    let p = Project::tiny(&format!(
        r#"
[tasks.big]
toolchain = "go"
run = "mkdir out && cd out && i=0 && while [ $i -lt {MANY} ]; do echo $i > f$i; i=$((i+1)); done"
outputs = ["out"]

[tasks.after]
toolchain = "go"
deps = ["big"]
env = ["FB_F11"]
run = "ls out | wc -l > count.txt"
outputs = ["count.txt"]
"#
    ));
    p.run(&["build-optimized", "--progress", "plain"]).ok();
    std::fs::remove_dir_all(p.path().join("out")).unwrap();
    let events = Events::start();
    // A new value for the dependent: once `big` is restored, it would need a container.
    let mut cmd = p.cmd(&["build-optimized", "--progress", "plain"]);
    cmd.env("FB_F11", "changed");
    let mut build = Spawned::new(cmd);
    let tmp = p.path().join(".build-cache/tmp");
    wait_until("the restore to begin", || {
        std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().starts_with("big-")
                    && count_files(&e.path().join("out")) > 0
            })
    });
    assert!(build.running());
    let sent = Instant::now();
    build.signal(nix::sys::signal::Signal::SIGTERM);
    let r = build.wait();
    eprintln!("stopped {:?} after SIGTERM", sent.elapsed());
    assert_eq!(r.code, 143, "{}", r.all());
    // The signal came while the restore was under way: it is stopped, not finished, and
    // nothing of it is placed (never a partial output).
    let placed = count_files(&p.path().join("out"));
    assert_eq!(placed, 0, "the restore went on after SIGTERM: {}", r.all());
    assert!(
        !events.actions(&p.labels).iter().any(|a| a == "create"),
        "a container was created after the signal"
    );
    assert!(p.labels.containers().is_empty());
    let v = p.run(&["cache-verify"]).ok();
    assert!(v.stdout.contains(" 0 bad"), "{}", v.all());
}

// Issue 10 finding 11: SIGHUP (the terminal closed) stops the build like SIGINT and SIGTERM:
// exit 129, the run's containers removed. Failed on main before this change: the process died of
// SIGHUP and left the task's container running.
#[test]
fn f11_sighup_during_a_task_exits_129_and_removes_its_container() {
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.long]\ntoolchain = \"go\"\nrun = \"sleep 60; echo x > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    let build = Spawned::new(p.cmd(&["build-optimized", "--progress", "plain"]));
    wait_until("the task's container to run", || {
        !running_task(&p.labels, "long").is_empty()
    });
    build.signal(nix::sys::signal::Signal::SIGHUP);
    let r = build.wait();
    assert_eq!(r.code, 129, "{}", r.all());
    assert!(r.stderr.contains("SIGHUP"), "{}", r.all());
    assert!(
        p.labels.containers().is_empty(),
        "containers left: {:?}",
        p.labels.containers()
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 13: clean-all

// Issue 10 finding 13: `clean-all` checks that it can remove the volume before it removes
// anything, and says in a sentence which container uses it. Failed on main before this change:
// the outputs were deleted first, then Docker's raw 409 "volume is in use" came back.
#[test]
fn f13_clean_all_checks_the_volume_first_and_names_the_container_using_it() {
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\nrun = \"echo x > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    p.run(&["setup"]).ok();
    assert_eq!(p.labels.volumes(), vec![p.volume.clone()]);
    let user = format!("fbtest-user-{}", crate::support::uuid());
    let ok = Command::new("docker")
        .args(["run", "-d", "--name", &user, "--label", &p.labels.arg()])
        .args(["-v", &format!("{}:/cache", p.volume)])
        .args(["flamenco-build/debian:bookworm", "sleep", "300"])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok);
    p.write("out.txt", "x\n");
    let r = p.run(&["clean-all"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains(&format!(
            "the cache volume `{}` is in use by container `{user}`",
            p.volume
        )),
        "{}",
        r.all()
    );
    assert!(!r.all().contains("409"), "{}", r.all());
    assert!(p.path().join("out.txt").exists(), "nothing was removed");
    let _ = Command::new("docker").args(["rm", "-f", &user]).output();
    let r = p.run(&["clean-all"]).ok();
    assert!(
        r.stdout.contains(&format!("Volume: removed {}", p.volume)),
        "{}",
        r.all()
    );
    assert!(!p.path().join("out.txt").exists());
}

// Issue 10 finding 13: `clean-all` never deletes a file git tracks. Failed on main before this
// change: the tracked web/static/.keep and gen.txt were deleted with the outputs.
#[test]
fn f13_clean_all_keeps_files_git_tracks() {
    require_docker_only();
    let p = Project::tiny(
        r#"
[tasks.web]
toolchain = "go"
run = "true"
outputs = ["web/static", "gen.txt", "logs/*.log"]
"#,
    );
    for f in [
        "web/static/.keep",
        "web/static/app.js",
        "web/static/sub/x.js",
        "web/static/kept/.keep",
        "gen.txt",
        "logs/a.log",
        "logs/tracked.log",
    ] {
        p.write(f, "x\n");
    }
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .arg("-C")
            .arg(p.path())
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "add",
        "web/static/.keep",
        "web/static/kept/.keep",
        "gen.txt",
        "logs/tracked.log",
    ]);
    let r = p.run(&["clean-all"]).ok();
    for kept in [
        "web/static/.keep",
        "web/static/kept/.keep",
        "gen.txt",
        "logs/tracked.log",
    ] {
        assert!(p.path().join(kept).exists(), "{kept} removed: {}", r.all());
    }
    for gone in ["web/static/app.js", "web/static/sub", "logs/a.log"] {
        assert!(!p.path().join(gone).exists(), "{gone} kept: {}", r.all());
    }
    assert!(r.stdout.contains("kept 4 files git tracks"), "{}", r.all());
}

fn require_docker_only() {
    crate::support::require_docker();
}

// ---------------------------------------------------------------------------------------------
// Finding 14 (runtime part): errors found as what they are

// Issue 10 finding 14: an HTTP server that is not a Docker engine at DOCKER_HOST is an engine
// error (exit 3) naming the host. Failed on main before this change: exit 4, "pull failed ... 501".
#[test]
fn f14_an_http_server_that_is_not_docker_is_an_engine_error() {
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\nrun = \"echo x > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let docroot = tempfile::tempdir().unwrap();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(docroot.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let host = format!("tcp://127.0.0.1:{port}");
    wait_until("the HTTP server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut cmd = p.cmd(&["build-optimized", "--progress", "plain"]);
    cmd.env("DOCKER_HOST", &host);
    let r = Run::from(cmd.output().unwrap());
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains(&host) && r.stderr.contains("is not a Docker engine"),
        "{}",
        r.all()
    );
}

// Issue 10 finding 14: a project folder deleted while the build runs is an error that names it,
// and nothing of it is recreated. Failed on main before this change: the build recreated the
// folder (staging, cache, the output) and exited 0.
#[test]
fn f14_a_project_folder_deleted_mid_build_is_an_error_and_is_not_recreated() {
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\nrun = \"sleep 2; echo x > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    let build = Spawned::new(p.cmd(&["build-optimized", "--progress", "plain"]));
    wait_until("the task's container to run", || {
        !running_task(&p.labels, "t").is_empty()
    });
    std::fs::remove_dir_all(p.path()).unwrap();
    let r = build.wait();
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(
        r.stderr
            .contains("the project folder was deleted or replaced during the build")
            && r.stderr.contains(&p.path().display().to_string()),
        "{}",
        r.all()
    );
    assert!(!p.path().exists(), "the project folder was recreated");
    assert!(p.labels.containers().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Finding 15 (times): from the task's start

// Issue 10 finding 15: a task's time runs from its start, not from when it was queued, and the
// parallel efficiency is task time / (wall × jobs), never over 100%. Failed on main before this
// change: with -j1 each task of a fan of four counted the runs it waited for (their times added
// up to 2.5 times the wall time) and the efficiency was about 250%.
#[test]
fn f15_task_times_do_not_count_queue_waiting() {
    require_toolchain_images();
    let tasks: String = (1..=4)
        .map(|i| {
            format!(
                "[tasks.fan{i}]\ntoolchain = \"go\"\nrun = \"sleep 1; echo {i} > o{i}.txt\"\noutputs = [\"o{i}.txt\"]\n\n"
            )
        })
        .collect();
    let p = Project::tiny(&tasks);
    let r = p
        .run(&["build-optimized", "-j1", "--progress", "plain", "--json"])
        .ok();
    let v = json(&r);
    let totals: Vec<f64> = (1..=4)
        .map(|i| {
            task_json(&v, &format!("fan{i}"))["times_ms"]["total"]
                .as_f64()
                .unwrap()
        })
        .collect();
    // One slot: the tasks ran one after the other, so their times add up to about the wall
    // time. Counting waits, they add up to about (1 + 2 + 3 + 4) / 4 = 2.5 times it.
    let wall = v["wall_ms"].as_f64().unwrap();
    let sum: f64 = totals.iter().sum();
    assert!(
        sum < 1.5 * wall,
        "the tasks' times ({totals:?}) count their waits for the slot: {sum} ms in {wall} ms"
    );
    let min = totals.iter().cloned().fold(f64::MAX, f64::min);
    let waits: f64 = (1..=4)
        .map(|i| {
            task_json(&v, &format!("fan{i}"))["times_ms"]["wait"]
                .as_f64()
                .unwrap()
        })
        .sum();
    assert!(waits > min, "three tasks waited for the one slot: {v}");
    let eff: f64 = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("Parallel: Parallel efficiency: "))
        .and_then(|l| l.split('%').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no efficiency line: {}", r.stderr));
    assert!(eff <= 100.0, "efficiency {eff}%: {}", r.stderr);
}
