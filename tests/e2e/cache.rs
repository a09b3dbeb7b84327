//! Incremental builds and the artifact cache: what changes a key (and `--explain` names), what
//! does not, restores, corruption, and two builds at once.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::{Events, Project, Run, require_toolchain_images};

/// Two tasks: `gen` turns src/*.txt (minus comment lines) into out/, `use` copies it on.
pub(crate) fn two_tasks() -> Project {
    let p = Project::tiny(
        r#"
[tasks.gen]
toolchain = "go"
run = "mkdir -p out && grep -hv '^#' src/*.txt > out/all.txt; ls -l src | tail -n +2 | cut -c1-10 > out/modes"
inputs = ["src/**"]
outputs = ["out"]
env = ["FB_TEST_VAR"]

[tasks.use]
toolchain = "go"
deps = ["gen"]
run = "cp out/all.txt final.txt"
outputs = ["final.txt"]
"#,
    );
    p.write("src/a.txt", "alpha\n");
    p.write("src/b.txt", "beta\n");
    p
}

/// Where the local store keeps the blob of `task`'s output `rel` (its newest entry).
pub(crate) fn blob_of(p: &Project, task: &str, rel: &str) -> std::path::PathBuf {
    let meta = p
        .path()
        .join(format!(".build-cache/metadata/{task}.meta.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    let last = v["last"].as_str().unwrap();
    let sha = v["entries"][last]["outputs"][rel]["sha256"]
        .as_str()
        .unwrap();
    p.path()
        .join(".build-cache/artifacts/sha256")
        .join(&sha[..2])
        .join(sha)
}

/// Builds, applies `change`, builds again with --explain: `gen` must run and its explain line
/// must name `why`.
fn assert_rebuilds_because(
    p: &Project,
    change: impl FnOnce(&Project),
    env: &[(&str, &str)],
    why: &str,
) {
    p.run(&["build-incremental"]).ok();
    change(p);
    let mut cmd = p.build_cmd(&["build-incremental", "--explain"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let b = Run::from(cmd.output().unwrap()).json().ok();
    assert!(b.ran("gen"), "gen should have run:\n{}", b.run.all());
    let line = b
        .run
        .stderr
        .lines()
        .find(|l| l.starts_with("explain: gen: miss"))
        .unwrap_or_default();
    assert!(
        line.contains(why),
        "explain should say `{why}`:\n{}",
        b.run.stderr
    );
}

#[test]
fn key_changes_with_input_content() {
    require_toolchain_images();
    let p = two_tasks();
    assert_rebuilds_because(
        &p,
        |p| p.write("src/a.txt", "alpha2\n"),
        &[],
        "input files changed: 1 (src/a.txt)",
    );
}

#[test]
fn key_changes_with_executable_bit() {
    require_toolchain_images();
    let p = two_tasks();
    assert_rebuilds_because(
        &p,
        |p| {
            std::fs::set_permissions(
                p.path().join("src/b.txt"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap()
        },
        &[],
        "input files changed: 1 (src/b.txt)",
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/modes")).unwrap(),
        "-rw-r--r--\n-rwxr-xr-x\n"
    );
}

#[test]
fn key_changes_with_a_new_input_file() {
    require_toolchain_images();
    let p = two_tasks();
    assert_rebuilds_because(
        &p,
        |p| p.write("src/c.txt", "gamma\n"),
        &[],
        "input files appeared: 1 (src/c.txt)",
    );
}

#[test]
fn key_changes_with_a_deleted_input_file() {
    require_toolchain_images();
    let p = two_tasks();
    assert_rebuilds_because(
        &p,
        |p| std::fs::remove_file(p.path().join("src/b.txt")).unwrap(),
        &[],
        "input files vanished: 1 (src/b.txt)",
    );
}

#[test]
fn key_changes_with_a_declared_env_value_and_never_stores_it() {
    require_toolchain_images();
    let p = two_tasks();
    assert_rebuilds_because(
        &p,
        |_| {},
        &[("FB_TEST_VAR", "s3cr3t-value")],
        "environment variable FB_TEST_VAR changed",
    );
    let meta =
        std::fs::read_to_string(p.path().join(".build-cache/metadata/gen.meta.json")).unwrap();
    assert!(!meta.contains("s3cr3t-value"));
}

#[test]
fn key_changes_with_the_command() {
    require_toolchain_images();
    let p = two_tasks();
    assert_rebuilds_because(
        &p,
        |p| {
            let cfg = p.path().join("flamenco-build.toml");
            let text = std::fs::read_to_string(&cfg)
                .unwrap()
                .replace("> out/modes\"", "> out/modes; true\"");
            std::fs::write(cfg, text).unwrap();
        },
        &[],
        "command changed",
    );
}

#[test]
fn key_changes_with_the_image_id_of_a_retagged_image() {
    require_toolchain_images();
    let p = two_tasks();
    let tag = format!("flamenco-build/test-retag:{}", p.labels.value);
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("flamenco-build/go:1.23", &tag);
    std::fs::write(&cfg, text).unwrap();
    let tag_to = |image: &str| {
        assert!(
            Command::new("docker")
                .args(["tag", image, &tag])
                .status()
                .unwrap()
                .success()
        )
    };
    tag_to("flamenco-build/go:1.23");
    struct Untag<'a>(&'a str);
    impl Drop for Untag<'_> {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", self.0]).output();
        }
    }
    let _untag = Untag(&tag);
    assert_rebuilds_because(
        &p,
        |_| tag_to("flamenco-build/debian:bookworm"),
        &[],
        "toolchain image changed",
    );
}

#[test]
fn key_changes_with_a_dependency_output_but_not_with_identical_output() {
    require_toolchain_images();
    let p = two_tasks();
    p.run(&["build-incremental"]).ok();
    // A comment line: gen runs again, produces the same output, and `use` stays up to date.
    p.write("src/a.txt", "# a comment\nalpha\n");
    let b = p.build(&["build-incremental", "--explain"]).ok();
    assert!(b.ran("gen") && b.cache_hit("use"), "{}", b.run.all());
    // Real content: `use` runs, because gen's output changed.
    p.write("src/a.txt", "alpha, changed\n");
    let b = p.build(&["build-incremental", "--explain"]).ok();
    assert!(b.ran("use"), "{}", b.run.all());
    let line = b
        .run
        .stderr
        .lines()
        .find(|l| l.starts_with("explain: use: miss"))
        .unwrap_or_default();
    assert!(
        line.contains("output of dependency gen changed"),
        "{}",
        b.run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("final.txt")).unwrap(),
        "alpha, changed\nbeta\n"
    );
}

#[test]
fn touching_files_and_undeclared_env_change_nothing() {
    require_toolchain_images();
    let p = two_tasks();
    p.run(&["build-incremental"]).ok();
    let f = std::fs::File::options()
        .write(true)
        .open(p.path().join("src/a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    let events = Events::start();
    let b = Run::from(
        p.build_cmd(&["build-incremental", "--explain"])
            .env("SOME_UNDECLARED", "x")
            .output()
            .unwrap(),
    )
    .json()
    .ok();
    assert!(
        b.up_to_date("gen") && b.up_to_date("use"),
        "{}",
        b.run.all()
    );
    assert!(
        b.run.stderr.contains("explain: gen: hit"),
        "{}",
        b.run.stderr
    );
    assert!(
        events.actions(&p.labels).is_empty(),
        "a no-change build touched containers"
    );
}

#[test]
fn a_clone_in_another_folder_shares_keys() {
    require_toolchain_images();
    let p = two_tasks();
    let first = p.build(&["build-incremental"]).ok();
    let keys = |b: &crate::support::Built| -> Vec<String> {
        ["gen", "use"]
            .map(|t| b.task_json(t)["key"].as_str().unwrap().to_string())
            .to_vec()
    };
    // Another folder with the same files and the same cache: everything is a hit, same keys.
    let other = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", p.path().display()))
        .arg(other.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(other.path().join("final.txt")).unwrap();
    let r = Command::new(env!("CARGO_BIN_EXE_flamenco-build"))
        .arg("-C")
        .arg(other.path())
        .args(["--label", &p.labels.arg(), "build-incremental", "--json"])
        .output()
        .unwrap();
    let b = Run::from(r).json().ok();
    assert!(b.cache_hit("gen") && b.restored("use"), "{}", b.run.all());
    assert_eq!(keys(&first), keys(&b));
}

#[test]
fn deleted_outputs_are_restored_without_a_container() {
    require_toolchain_images();
    let p = two_tasks();
    let first = Events::start();
    p.run(&["build-incremental"]).ok();
    // The event count sees the containers of a real run (so an empty count below means something).
    let seen = first.actions(&p.labels);
    assert!(
        seen.iter().filter(|a| *a == "create").count() >= 2
            && seen.contains(&"extract-to-dir".to_string()),
        "{seen:?}"
    );
    std::fs::remove_dir_all(p.path().join("out")).unwrap();
    std::fs::remove_file(p.path().join("final.txt")).unwrap();
    let events = Events::start();
    let b = p.build(&["build-incremental"]).ok();
    assert!(b.restored("gen") && b.restored("use"), "{}", b.run.all());
    assert_eq!(
        std::fs::read_to_string(p.path().join("final.txt")).unwrap(),
        "alpha\nbeta\n"
    );
    assert!(
        events.actions(&p.labels).is_empty(),
        "a restore created containers"
    );
}

/// The workspace is read ahead for every task when a build begins. Once a task has put outputs
/// in place, that reading may be out of date: here `last` reads what `gen` (two steps up, so not
/// a dependency output it receives) restores, and must see the restored file, not its absence.
#[test]
fn a_task_reading_restored_outputs_sees_them_not_the_workspace_before() {
    require_toolchain_images();
    for mode in ["build-incremental", "build-optimized"] {
        let p = Project::tiny(
            r#"
[tasks.gen]
toolchain = "go"
run = "mkdir -p out && cp src/a.txt out/a.txt"
inputs = ["src/**"]
outputs = ["out"]

[tasks.mid]
toolchain = "go"
deps = ["gen"]
run = "cp out/a.txt mid.txt"
outputs = ["mid.txt"]

[tasks.last]
toolchain = "go"
deps = ["mid"]
run = "cat out/a.txt mid.txt > last.txt"
inputs = ["out/**"]
outputs = ["last.txt"]
"#,
        );
        p.write("src/a.txt", "alpha\n");
        p.run(&[mode]).ok();
        std::fs::remove_dir_all(p.path().join("out")).unwrap();
        let events = Events::start();
        let b = p.build(&[mode, "--explain"]).ok();
        assert!(b.restored("gen"), "{mode}:\n{}", b.run.all());
        assert!(
            b.up_to_date("mid") && b.up_to_date("last"),
            "{mode}: `last` must key the restored out/a.txt:\n{}",
            b.run.all()
        );
        assert!(
            !b.run.stderr.contains("matches no file"),
            "{mode}: {}",
            b.run.stderr
        );
        assert!(
            events.actions(&p.labels).is_empty(),
            "{mode}: a container was created"
        );
    }
}

/// A corruption of the blob of `use`'s one output, then a build that must notice, evict, rebuild.
fn corrupt_and_rebuild(corrupt: impl FnOnce(&std::path::Path)) {
    require_toolchain_images();
    let p = two_tasks();
    p.run(&["build-incremental"]).ok();
    let archive = blob_of(&p, "use", "final.txt");
    // Blobs are read-only; the corruption must still land.
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o644)).unwrap();
    corrupt(&archive);
    std::fs::remove_file(p.path().join("final.txt")).unwrap();
    let b = p.build(&["build-incremental"]).ok();
    let r = &b.run;
    assert!(
        r.stderr.contains("corrupt cache entry for use"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("corrupt cache entry").count(),
        1,
        "reported once: {}",
        r.stderr
    );
    assert!(b.ran("use"), "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(p.path().join("final.txt")).unwrap(),
        "alpha\nbeta\n"
    );
    p.run(&["cache-verify"]).ok();
}

#[test]
fn a_flipped_byte_is_detected_evicted_and_rebuilt() {
    corrupt_and_rebuild(|a| {
        let mut bytes = std::fs::read(a).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        std::fs::write(a, bytes).unwrap();
    });
}

#[test]
fn a_truncated_blob_is_detected_evicted_and_rebuilt() {
    corrupt_and_rebuild(|a| {
        let bytes = std::fs::read(a).unwrap();
        std::fs::write(a, &bytes[..bytes.len() / 3]).unwrap();
    });
}

#[test]
fn a_deleted_blob_is_detected_evicted_and_rebuilt() {
    corrupt_and_rebuild(|a| std::fs::remove_file(a).unwrap());
}

#[test]
fn two_builds_at_once_on_one_cache() {
    require_toolchain_images();
    let p = two_tasks();
    let a = p
        .cmd(&["build-incremental"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = p
        .cmd(&["build-incremental"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::Run::from(a.wait_with_output().unwrap()).ok();
    crate::support::Run::from(b.wait_with_output().unwrap()).ok();
    let v = p.run(&["cache-verify"]).ok();
    assert!(v.stdout.contains("0 bad"), "{}", v.stdout);
    assert_eq!(
        std::fs::read_to_string(p.path().join("final.txt")).unwrap(),
        "alpha\nbeta\n"
    );
}

#[test]
fn cache_status_and_cleaning_say_what_they_did() {
    require_toolchain_images();
    let p = two_tasks();
    p.run(&["build-incremental"]).ok();
    let s = p.run(&["cache-status"]).ok();
    assert!(
        s.stdout
            .starts_with("Build Cache Status:\n  Targets cached: 2\n  Cache size: "),
        "{}",
        s.stdout
    );
    assert!(s.stdout.contains(" bytes)"), "{}", s.stdout);
    let j = p.run(&["cache-status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["targets_cached"], 2);
    let c = p.run(&["clean-cache"]).ok();
    assert!(c.stdout.starts_with("Cache: removed "), "{}", c.stdout);
    let s = p.run(&["cache-status"]).ok();
    assert!(s.stdout.contains("Targets cached: 0"), "{}", s.stdout);
    let all = p.run(&["clean-all"]).ok();
    assert!(
        all.stdout.contains("Outputs: removed 3 files"),
        "{}",
        all.stdout
    );
    assert!(
        all.stdout
            .contains(&format!("Volume: removed {}", p.volume)),
        "{}",
        all.stdout
    );
    assert!(!p.path().join("out").exists() && !p.path().join("final.txt").exists());
    assert!(p.path().join("src/a.txt").exists());
}

/// The no-change build of the example creates no container and uploads nothing.
#[test]
fn a_no_change_build_of_the_example_touches_no_container() {
    require_toolchain_images();
    let p = Project::example();
    p.run(&["build-incremental"]).ok();
    let events = Events::start();
    let b = p.build(&["build-incremental"]).ok();
    for task in crate::support::EXAMPLE_TASKS {
        assert!(b.up_to_date(task), "{task}: {}", b.run.all());
    }
    assert_eq!(events.actions(&p.labels), Vec::<String>::new());
}

/// The bench fixture (../shared/bench, with the real Flamenco spec): its no-change build creates
/// no container either.
#[test]
fn a_no_change_build_of_the_bench_fixture_touches_no_container() {
    require_toolchain_images();
    let shared = crate::support::repo().join("../shared");
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
    let cfg = std::fs::read_to_string(crate::support::repo().join("bench/flamenco-build.toml"))
        .unwrap()
        .replace(
            "cache_volume = \"flamenco-build-bench\"",
            &format!("cache_volume = \"{}\"", p.volume),
        );
    std::fs::write(p.path().join("flamenco-build.toml"), cfg).unwrap();
    p.run(&["build-optimized", "--progress", "plain"]).ok();
    let events = Events::start();
    let b = p.build(&["build-optimized"]).ok();
    let tasks = b.tasks();
    assert_eq!(tasks.len(), 6, "{}", b.run.all());
    assert!(
        tasks.iter().all(|(_, status)| *status == "up-to-date"),
        "{tasks:?}"
    );
    assert_eq!(events.actions(&p.labels), Vec::<String>::new());
}
