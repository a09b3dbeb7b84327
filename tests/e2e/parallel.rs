//! build-optimized: overlap from the trace, fail-fast and --keep-going, Ctrl-C.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Events, Project, Run, require_toolchain_images};

/// a → (b, c) → d, each sleeping; every run writes a unique output so nothing is cached.
fn diamond() -> Project {
    let task = |name: &str, deps: &str| {
        format!(
            "[tasks.{name}]\ntoolchain = \"go\"\ndeps = [{deps}]\nrun = \"sleep 1.5 && date +%s%N > {name}.out\"\noutputs = [\"{name}.out\"]\n\n"
        )
    };
    Project::tiny(
        &[
            task("a", ""),
            task("b", "\"a\""),
            task("c", "\"a\""),
            task("d", "\"b\", \"c\""),
        ]
        .concat(),
    )
}

/// (start, end) in µs of each task's span in a trace file.
fn spans(path: &std::path::Path) -> std::collections::HashMap<String, (u64, u64)> {
    trace_events(path, "task")
        .into_iter()
        .map(|(name, start, end)| (name, (start, end)))
        .collect()
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn independent_tasks_overlap_with_two_slots_and_never_with_one() {
    require_toolchain_images();
    let p = diamond();
    let trace = p.path().join("trace.json");
    let r = p
        .run(&[
            "build-optimized",
            "-j2",
            "--progress",
            "plain",
            "--trace",
            trace.to_str().unwrap(),
        ])
        .ok();
    assert!(
        r.stdout
            .contains("Parallel: Starting build with 4 tasks (max concurrency: 2)"),
        "{}",
        r.stdout
    );
    let s = spans(&trace);
    assert!(
        overlap(s["b"], s["c"]),
        "b and c should overlap with -j2: {s:?}"
    );
    for (dep, t) in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")] {
        assert!(s[dep].1 <= s[t].0, "{t} started before {dep} ended: {s:?}");
    }

    std::fs::remove_dir_all(p.path().join(".build-cache")).unwrap();
    let r = p
        .run(&[
            "build-optimized",
            "-j1",
            "--progress",
            "plain",
            "--trace",
            trace.to_str().unwrap(),
        ])
        .ok();
    assert!(r.stdout.contains("(max concurrency: 1)"), "{}", r.stdout);
    let s = spans(&trace);
    let names: Vec<&String> = s.keys().collect();
    for (i, x) in names.iter().enumerate() {
        for y in &names[i + 1..] {
            assert!(
                !overlap(s[*x], s[*y]),
                "{x} and {y} overlap with -j1: {s:?}"
            );
        }
    }
}

fn failing_graph() -> Project {
    Project::tiny(
        r#"
[tasks.broken]
toolchain = "go"
run = "sleep 1; echo giving up >&2; exit 9"
outputs = ["never"]

[tasks.slow]
toolchain = "go"
run = "sleep 20; echo done > slow.out"
outputs = ["slow.out"]

[tasks.after-broken]
toolchain = "go"
deps = ["broken"]
run = "true"
outputs = ["x"]

[tasks.fine]
toolchain = "go"
run = "echo fine > fine.out"
outputs = ["fine.out"]

[tasks.after-fine]
toolchain = "go"
deps = ["fine"]
run = "cp fine.out after-fine.out"
outputs = ["after-fine.out"]
"#,
    )
}

#[test]
fn the_first_failure_cancels_the_rest() {
    require_toolchain_images();
    let p = failing_graph();
    let events = Events::start();
    let b = p.build(&["build-optimized", "-j3"]);
    let r = &b.run;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(b.status("broken"), "failed");
    assert_eq!(b.status("slow"), "cancelled");
    assert_eq!(b.status("after-broken"), "not-started");
    // Cancelled means stopped: slow's container was killed, not left to finish its sleep.
    let exits = events.exits(&p.labels);
    let slow: Vec<&String> = exits.iter().filter(|e| e.starts_with("slow ")).collect();
    assert!(
        !slow.is_empty() && slow.iter().all(|e| *e != "slow 0"),
        "slow's container should have been stopped: {exits:?}"
    );
    assert!(
        r.stderr.contains("Parallel: Build failed in"),
        "{}",
        r.stderr
    );
    // Under load `fine` may finish before `broken` fails and `after-fine` be cancelled too:
    // the line names the failure first, then what was cancelled, slow among it.
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("failed: broken; cancelled: "))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(line.contains("slow"), "{line}");
    assert!(r.stderr.contains("broken| giving up"), "{}", r.stderr);
    assert!(
        p.labels.containers().is_empty(),
        "containers left: {:?}",
        p.labels.containers()
    );
    assert!(!p.path().join("slow.out").exists());
}

#[test]
fn keep_going_builds_the_independent_branch() {
    require_toolchain_images();
    let p = failing_graph();
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("sleep 20;", "sleep 2;");
    std::fs::write(&cfg, text).unwrap();
    let b = p.build(&["build-optimized", "-j2", "--keep-going"]);
    let r = &b.run;
    assert_eq!(r.code, 1, "{}", r.all());
    let statuses: std::collections::BTreeMap<&str, &str> = b.tasks().into_iter().collect();
    assert_eq!(
        statuses,
        [
            ("after-broken", "skipped"),
            ("after-fine", "built"),
            ("broken", "failed"),
            ("fine", "built"),
            ("slow", "built"),
        ]
        .into(),
        "{}",
        r.all()
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("after-fine.out")).unwrap(),
        "fine\n"
    );
    assert!(p.path().join("slow.out").exists());
    // The failure line says so too.
    assert!(
        r.stderr
            .contains("skipped (a dependency failed): after-broken"),
        "{}",
        r.stderr
    );
    assert!(p.labels.containers().is_empty());
}

#[test]
fn sigint_removes_the_runs_containers_and_leaves_a_cache_that_verifies() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.quick]
toolchain = "go"
run = "echo q > q.out"
outputs = ["q.out"]

[tasks.long]
toolchain = "go"
deps = ["quick"]
run = "sleep 60; echo l > l.out"
outputs = ["l.out"]

[tasks.long2]
toolchain = "go"
run = "sleep 60; echo l > l2.out"
outputs = ["l2.out"]
"#,
    );
    let events = Events::start();
    let child = p
        .cmd(&["build-optimized", "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until quick is done and both long tasks run in containers (the deadline only keeps a
    // build that never gets there from hanging the test).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.path().join("q.out").exists() || p.labels.containers().len() < 2 {
        assert!(Instant::now() < deadline, "the long tasks never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    eprintln!("stopped {:?} after SIGINT", sent.elapsed());
    assert_eq!(r.code, 130, "{}", r.all());
    // The signal stopped the long tasks: both containers were killed, not let finish their sleep.
    let exits = events.exits(&p.labels);
    for t in ["long", "long2"] {
        let mine: Vec<&String> = exits
            .iter()
            .filter(|e| e.starts_with(&format!("{t} ")))
            .collect();
        assert!(
            !mine.is_empty() && mine.iter().all(|e| **e != format!("{t} 0")),
            "{t}'s container should have been stopped: {exits:?}"
        );
    }
    assert!(!p.path().join("l.out").exists() && !p.path().join("l2.out").exists());
    assert!(
        p.labels.containers().is_empty(),
        "containers left: {:?}",
        p.labels.containers()
    );
    let v = p.run(&["cache-verify"]).ok();
    assert!(v.stdout.contains("0 bad"), "{}", v.stdout);
    // Nothing half-written: the next build restores what finished and runs the rest.
    let b = p.build(&["build-optimized", "long"]);
    assert!(b.up_to_date("quick") && b.ran("long"), "{}", b.run.all());
}

#[test]
fn verbose_streams_logs_and_the_live_view_runs() {
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.talk]\ntoolchain = \"go\"\nrun = \"echo hello-from-task; echo x > t.out\"\noutputs = [\"t.out\"]\n",
    );
    let r = p
        .run(&["-v", "build-optimized", "--progress", "plain"])
        .ok();
    assert!(r.stdout.contains("talk| hello-from-task"), "{}", r.stdout);
    std::fs::remove_dir_all(p.path().join(".build-cache")).unwrap();
    // On a terminal (a pty from script(1)): the live view, the same lines, no colour with NO_COLOR.
    let cmd = format!("{:?}", p.cmd(&["build-optimized"]));
    let r = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let r = Run::from(r).ok();
    assert!(
        r.stdout.contains("Parallel: [1/1] Completed talk"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("\x1b[36m"),
        "NO_COLOR: no colour codes: {:?}",
        r.stdout
    );
}

/// The trace's events of one category: (name, start µs, end µs); a moment has end == start.
fn trace_events(path: &std::path::Path, cat: &str) -> Vec<(String, u64, u64)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == cat)
        .map(|e| {
            let ts = e["ts"].as_u64().unwrap();
            let dur = e["dur"].as_u64().unwrap_or(0);
            (e["name"].as_str().unwrap().to_string(), ts, ts + dur)
        })
        .collect()
}

// Issue 11: every task runs as a task of its own and hashing, copying and fsync run off the
// async workers, so a task saving a large output does not stall another one. Before the
// reshape, all tasks were polled inside one future and the save ran on it: the other task's log
// lines arrived only after the save, none inside it.
#[test]
fn a_large_save_does_not_stall_another_task() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.big]
toolchain = "go"
run = "head -c 209715200 /dev/urandom > big.bin"
outputs = ["big.bin"]

[tasks.ticker]
toolchain = "go"
run = "for i in $(seq 1 300); do echo tick $i; sleep 0.05; done > /dev/stderr; touch ticked"
outputs = ["ticked"]
"#,
    );
    let trace = p.path().join("trace.json");
    let b = p
        .build(&["build-optimized", "-j2", "--trace", trace.to_str().unwrap()])
        .ok();
    assert!(b.ran("big") && b.ran("ticker"), "{}", b.run.all());
    let save = trace_events(&trace, "phase")
        .into_iter()
        .find(|(n, _, _)| n == "big: save")
        .expect("big was saved");
    let ticker_run = trace_events(&trace, "phase")
        .into_iter()
        .find(|(n, _, _)| n == "ticker: run")
        .expect("ticker ran");
    assert!(
        ticker_run.1 < save.1 && save.1 < ticker_run.2,
        "the ticker must still run when big's save ends, or this test shows nothing: \
         save {save:?}, ticker {ticker_run:?}"
    );
    let during: Vec<u64> = trace_events(&trace, "log")
        .into_iter()
        .filter(|(n, t, _)| n == "ticker" && (save.1..=save.2).contains(t))
        .map(|(_, t, _)| t)
        .collect();
    eprintln!(
        "big's save took {} ms; {} ticker lines arrived during it",
        (save.2 - save.1) / 1000,
        during.len()
    );
    assert!(
        during.len() >= 2,
        "the ticker's log lines must keep arriving while big is saved: save {save:?}, lines {during:?}"
    );
}
