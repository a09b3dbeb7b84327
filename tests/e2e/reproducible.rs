//! Issue 14: `--check-reproducible` runs each task twice (a cached one once more) and names every
//! output file that differs. The example and the bench fixture pass it; a task that writes the date
//! or a random number is caught, with its file named.

use std::process::Command;

use crate::support::{Built, Project, Run, repo, require_toolchain_images};

/// Exit code of a build whose outputs differ between two runs.
const NOT_REPRODUCIBLE: i32 = 6;

/// Every task of the summary was checked and found identical; returns the files compared.
#[track_caller]
fn all_reproducible(b: &Built) -> u64 {
    let mut files = 0;
    for t in b.summary["tasks"].as_array().unwrap() {
        let r = &t["reproducible"];
        assert_eq!(
            r["reproducible"],
            true,
            "{}: {r}\n{}",
            t["task"],
            b.run.all()
        );
        files += r["files"].as_u64().unwrap();
    }
    files
}

#[test]
fn the_example_passes_check_reproducible() {
    require_toolchain_images();
    let p = Project::example();
    let b = p
        .build(&[
            "build-optimized",
            "--check-reproducible",
            "--progress",
            "plain",
        ])
        .ok();
    let files = all_reproducible(&b);
    assert_eq!(b.tasks().len(), 6, "{}", b.run.all());
    assert!(files > 20, "only {files} files compared");
    assert!(
        b.run.stderr.contains("Reproducibility: 6 tasks checked"),
        "{}",
        b.run.stderr
    );
}

#[test]
fn the_bench_fixture_passes_check_reproducible() {
    require_toolchain_images();
    let shared = repo().join("../shared");
    let p = Project::tiny("");
    let out = Command::new("python3")
        .arg(shared.join("bench/make_fixture.py"))
        .arg(p.path())
        .arg(shared.join("fixtures/flamenco-openapi.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = std::fs::read_to_string(repo().join("bench/flamenco-build.toml"))
        .unwrap()
        .replace(
            "cache_volume = \"flamenco-build-bench\"",
            &format!("cache_volume = \"{}\"", p.volume),
        );
    std::fs::write(p.path().join("flamenco-build.toml"), cfg).unwrap();
    let b = p.build(&["build-optimized", "--check-reproducible"]).ok();
    assert_eq!(b.tasks().len(), 6, "{}", b.run.all());
    all_reproducible(&b);
}

const STAMPING: &str = r#"
[tasks.stamp]
toolchain = "go"
run = "mkdir -p out && echo same > out/same.txt && printf 'version 1\nbuilt %s\n' \"$(date +%s%N)\" > out/date.txt && od -An -N8 -tx8 /dev/urandom > out/random.bin"
outputs = ["out"]

[tasks.stable]
toolchain = "go"
run = "mkdir -p st && echo \"stamped $SOURCE_DATE_EPOCH\" > st/file.txt"
outputs = ["st"]
"#;

#[track_caller]
fn differing_paths(b: &Built, task: &str) -> Vec<String> {
    let r = &b.task_json(task)["reproducible"];
    r["differ"]
        .as_array()
        .unwrap_or_else(|| panic!("{task}: {r}\n{}", b.run.all()))
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_task_writing_the_date_or_a_random_number_is_caught_and_named() {
    require_toolchain_images();
    let p = Project::tiny(STAMPING);
    let b = p.build(&["build-incremental", "--check-reproducible"]);
    assert_eq!(b.run.code, NOT_REPRODUCIBLE, "{}", b.run.all());
    assert_eq!(
        differing_paths(&b, "stamp"),
        ["out/date.txt", "out/random.bin"]
    );
    assert_eq!(differing_paths(&b, "stable"), Vec::<String>::new());
    // One "Starting" line per task: the second run says it is the check.
    let starting = b
        .run
        .stderr
        .lines()
        .filter(|l| l.ends_with("Starting stamp"));
    assert_eq!(starting.count(), 1, "{}", b.run.stderr);
    assert!(
        b.run
            .stderr
            .contains("check-reproducible: running stamp once more from the same inputs"),
        "{}",
        b.run.stderr
    );
    let date = &b.task_json("stamp")["reproducible"]["differ"][0];
    assert_eq!(date["line"]["number"], 2, "{date}");
    assert_ne!(date["first"]["sha256"], date["second"]["sha256"]);
    assert!(
        b.run
            .stderr
            .contains("NOT reproducible: stamp: 2 of 3 files differ")
            && b.run.stderr.contains("out/date.txt: first run "),
        "{}",
        b.run.stderr
    );
    // A cached task runs once more and is compared with what the cache gave back.
    let again = p
        .build(&["build-incremental", "--check-reproducible", "stable"])
        .ok();
    assert!(again.up_to_date("stable"), "{}", again.run.all());
    assert_eq!(again.task_json("stable")["reproducible"]["files"], 1);
}

const TWO_PARTS: &str = r#"
[tasks.a]
toolchain = "go"
run = "mkdir -p outa && echo \"a $SOURCE_DATE_EPOCH\" > outa/t.txt"
inputs = ["a", "!a/*.tmp"]
outputs = ["outa"]

[tasks.b]
toolchain = "go"
run = "mkdir -p outb && echo \"b $SOURCE_DATE_EPOCH\" > outb/t.txt"
inputs = ["b/**"]
outputs = ["outb"]
"#;

/// `git -C dir ARGS` with a fixed author and commit time (`date`, ISO 8601).
fn git_at(dir: &std::path::Path, date: &str, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_DATE", date)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// SOURCE_DATE_EPOCH reaches every task and is part of its key: the time of the last commit
/// that touched the task's own inputs (0 outside git), so a commit that touches only task a's
/// inputs changes a's value and leaves b up to date.
#[test]
fn source_date_epoch_is_the_last_commit_touching_the_tasks_inputs() {
    require_toolchain_images();
    let p = Project::tiny(TWO_PARTS);
    p.write("a/x.txt", "1");
    p.write("b/y.txt", "1");
    let stamped =
        |t: &str| std::fs::read_to_string(p.path().join(format!("out{t}/t.txt"))).unwrap();
    p.build(&["build-incremental"]).ok();
    assert_eq!(stamped("a"), "a 0\n", "not a git repository: 0");
    assert_eq!(stamped("b"), "b 0\n");
    let first = "2024-01-02T03:04:05Z";
    git_at(p.path(), first, &["init", "-q"]);
    git_at(p.path(), first, &["add", "flamenco-build.toml", "a", "b"]);
    git_at(p.path(), first, &["commit", "-qm", "first"]);
    let b = p.build(&["build-incremental"]).ok();
    assert!(b.ran("a") && b.ran("b"), "{}", b.run.all());
    assert_eq!(stamped("a"), "a 1704164645\n");
    assert_eq!(stamped("b"), "b 1704164645\n");
    // Only a's input: a's value moves, b stays up to date (its key did not change).
    p.write("a/x.txt", "2");
    git_at(
        p.path(),
        "2024-02-03T00:00:00Z",
        &["commit", "-qam", "a only"],
    );
    // Neither's input (an excluded file, a file of no task): nothing moves.
    p.write("a/n.tmp", "x");
    p.write("other.txt", "x");
    git_at(
        p.path(),
        "2024-03-01T00:00:00Z",
        &["add", "a/n.tmp", "other.txt"],
    );
    git_at(
        p.path(),
        "2024-03-01T00:00:00Z",
        &["commit", "-qm", "elsewhere"],
    );
    let b = p.build(&["build-incremental", "--explain"]).ok();
    assert!(b.ran("a"), "{}", b.run.all());
    assert!(b.up_to_date("b"), "{}", b.run.all());
    assert_eq!(stamped("a"), "a 1706918400\n");
    assert!(
        b.run
            .stderr
            .contains("explain: b: hit, outputs up to date (key ")
            && b.run
                .stderr
                .contains("SOURCE_DATE_EPOCH 1704164645: the last commit that touched its inputs"),
        "{}",
        b.run.stderr
    );
    // The host's value wins.
    let mut cmd = p.build_cmd(&["build-incremental", "b"]);
    let b = Run::from(cmd.env("SOURCE_DATE_EPOCH", "7").output().unwrap()).json();
    assert!(b.ran("b"), "{}", b.run.all());
    assert_eq!(stamped("b"), "b 7\n");
}

/// The local executor (processes, as inside Dockerfile.dev) checks the same way.
#[test]
fn check_reproducible_works_with_the_local_executor() {
    let p = Project::tiny(
        r#"
[toolchains.sh]
image = "unused"
version_command = "echo sh"

[tasks.stamp]
toolchain = "sh"
run = "mkdir -p out && date +%s%N > out/now.txt && echo fixed > out/fixed.txt"
outputs = ["out"]
"#,
    );
    let b = p.build(&["build", "--executor", "local", "--check-reproducible"]);
    assert_eq!(b.run.code, NOT_REPRODUCIBLE, "{}", b.run.all());
    assert_eq!(differing_paths(&b, "stamp"), ["out/now.txt"]);
    assert_eq!(b.task_json("stamp")["reproducible"]["files"], 2);
}
