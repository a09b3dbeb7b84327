//! The boundary, for paths: nothing is read or written through a symlinked parent folder, a
//! task's inputs never hold outputs, nothing under an input glob is dropped without a word, and
//! an input that cannot be carried is an error naming it before any container starts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::{Events, Project, Run, require_toolchain_images};

/// The status of each task in a `--json` summary.
fn statuses(r: &Run) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("--json output ({e}):\n{}\n{}", r.stdout, r.stderr));
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

// Issue 10 finding 2: no input is read through a symlink in any folder of its path below the
// project root; such a path is a located error naming the link. Failed on main before this
// change: the task read the outside file (`leaked.txt` held TOP-SECRET, exit 0).
#[test]
fn an_input_below_a_symlinked_folder_is_refused_and_never_read() {
    require_toolchain_images();
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("secret.txt"), "TOP-SECRET");
    let p = Project::tiny(
        r#"
[tasks.peek]
toolchain = "go"
run = "cat ext/secret.txt > leaked.txt"
inputs = ["ext/secret.txt"]
outputs = ["leaked.txt"]
"#,
    );
    std::os::unix::fs::symlink(outside.path(), p.path().join("ext")).unwrap();
    for mode in ["build", "build-incremental", "build-optimized"] {
        let r = p.run(&[mode]);
        assert_eq!(r.code, 2, "{mode}: {}", r.all());
        assert!(
            r.stderr.contains("flamenco-build.toml:")
                && r.stderr.contains("`ext` is a symbolic link"),
            "{mode}: {}",
            r.stderr
        );
        assert!(!p.path().join("leaked.txt").exists(), "{mode}: read it");
    }
}

// Issue 10 finding 2: no output is written or removed through a symlink in any folder of its
// path (a folder output, a glob output, and `clean-all`); the error names the link. Failed on
// main before this change: the build deleted the outside `keep/a.txt` and wrote `keep/b.txt`
// there, overwrote the outside `gen/x.txt` through `gen -> ext/gen` (exit 0), and `clean-all`
// removed the outside `keep`.
#[test]
fn outputs_below_a_symlinked_folder_are_never_written_or_removed() {
    require_toolchain_images();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("keep/a.txt");
    let glob_victim = outside.path().join("gen/x.txt");
    write(&victim, "VICTIM");
    write(&glob_victim, "VICTIM");
    let p = Project::tiny(
        r#"
[tasks.folder]
toolchain = "go"
run = "mkdir -p ext/keep && echo new > ext/keep/b.txt"
outputs = ["ext/keep"]

[tasks.glob]
toolchain = "go"
run = "mkdir -p gen && echo new > gen/x.txt"
outputs = ["gen/*.txt"]
"#,
    );
    std::os::unix::fs::symlink(outside.path(), p.path().join("ext")).unwrap();
    // A link whose text stays inside, chained through one that does not.
    std::os::unix::fs::symlink("ext/gen", p.path().join("gen")).unwrap();
    for (task, link) in [("folder", "ext"), ("glob", "gen")] {
        for mode in ["build", "build-optimized"] {
            let events = Events::start();
            let r = p.run(&[mode, task]);
            // Refused before the task runs.
            let actions = events.actions(&p.labels);
            assert!(!actions.iter().any(|a| a == "create"), "{actions:?}");
            assert_eq!(r.code, 5, "{mode} {task}: {}", r.all());
            assert!(
                r.stderr.contains("a parent folder is a symbolic link")
                    && r.stderr
                        .contains(&p.path().join(link).display().to_string()),
                "{mode} {task}: {}",
                r.stderr
            );
        }
    }
    let r = p.run(&["clean-all"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(
        r.stderr.contains("a parent folder is a symbolic link"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "VICTIM");
    assert_eq!(std::fs::read_to_string(&glob_victim).unwrap(), "VICTIM");
    assert!(!outside.path().join("keep/b.txt").exists());
}

// Issue 10 finding 9: outputs are never inputs (not the task's own, not those of a task that
// does not run before it; a direct dependency's come through `deps`), so a task whose globs cover
// its outputs hits and never sees its previous outputs. Failed on main before this change: the
// second build missed (the task's own `out` had become an input) and the task, seeing `out`,
// failed (exit 1).
#[test]
fn a_task_whose_inputs_cover_outputs_never_sees_them_and_hits() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.all]
toolchain = "go"
run = "test ! -e out && test ! -e other.txt && test -f src/a.txt && mkdir out && ls -R > out/seen"
inputs = ["**"]
outputs = ["out"]

[tasks.other]
toolchain = "go"
run = "echo other > other.txt"
outputs = ["other.txt"]
"#,
    );
    p.write("src/a.txt", "a");
    let first = p.run(&["build-optimized", "-j1", "--json"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let second = p.run(&["build-optimized", "-j1", "--json"]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(
        statuses(&second),
        [
            ("all".to_string(), "up-to-date".to_string()),
            ("other".to_string(), "up-to-date".to_string())
        ],
        "{}",
        second.stderr
    );
    assert!(p.path().join("other.txt").exists() && p.path().join("out/seen").exists());
}

// Issue 10 finding 10: a file under an input glob whose name is not UTF-8 is an error naming it
// (keys and archive names are UTF-8); a `!` pattern can exclude it. Failed on main before this
// change: the file was silently left out of the task and its key (exit 0, no word).
#[test]
fn a_non_utf8_name_under_an_input_glob_is_an_error_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.t]
toolchain = "go"
run = "ls src > listing.txt"
inputs = ["src/**"]
outputs = ["listing.txt"]
"#,
    );
    p.write("src/a.txt", "a");
    let bad = p
        .path()
        .join("src")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&bad, "latin-1 name").unwrap();
    for mode in ["build", "build-optimized"] {
        let r = p.run(&[mode]);
        assert_eq!(r.code, 5, "{mode}: {}", r.all());
        assert!(
            r.stderr.contains("not valid UTF-8") && r.stderr.contains("src/caf\u{FFFD}.txt"),
            "{mode}: {}",
            r.stderr
        );
        assert!(!p.path().join("listing.txt").exists());
    }
    // Excluded by a pattern, it is no longer under the glob.
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        r#"inputs = ["src/**"]"#,
        r#"inputs = ["src/**", "!src/caf*"]"#,
    );
    std::fs::write(&cfg, text).unwrap();
    p.run(&["build-optimized"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path().join("listing.txt")).unwrap(),
        "a.txt\n"
    );
}

// Issue 10 finding 10: a nested `.git` folder under an input glob is left out with a warning
// naming it. Failed on main before this change: it was left out without a word.
#[test]
fn a_nested_git_folder_under_an_input_glob_is_skipped_with_a_warning() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.t]
toolchain = "go"
run = "test -f vendor/lib/a.go && test ! -e vendor/lib/.git && echo ok > ok.txt"
inputs = ["vendor/**"]
outputs = ["ok.txt"]
"#,
    );
    p.write("vendor/lib/a.go", "package lib");
    p.write("vendor/lib/.git/HEAD", "ref: refs/heads/main");
    for mode in ["build", "build-optimized"] {
        let r = p.run(&[mode]).ok();
        assert_eq!(
            r.stderr
                .matches("warning: task `t`: skipped `vendor/lib/.git`")
                .count(),
            1,
            "{mode}: {}",
            r.stderr
        );
    }
}

// Issue 10 finding 14: an input whose name is too long for the container's file system is an
// error naming it, before any container is created. Failed on main before this change: the
// engine refused the upload (exit 3, "Docker responded with status code 500 … file name too
// long") after the container was made.
#[test]
fn an_input_name_too_long_for_a_container_is_an_error_naming_it() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.t]
toolchain = "go"
run = "ls src > listing.txt"
inputs = ["src/**"]
outputs = ["listing.txt"]
"#,
    );
    let name = format!("{}.txt", "x".repeat(250));
    p.write(&format!("src/{name}"), "long");
    let events = Events::start();
    let r = p.run(&["build-optimized"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(
        r.stderr.contains("too long") && r.stderr.contains(&format!("src/{name}")),
        "{}",
        r.stderr
    );
    let actions = events.actions(&p.labels);
    assert!(!actions.iter().any(|a| a == "create"), "{actions:?}");
}

// Issue 10 finding 14: an input that cannot be read is an error naming the file (exit 5).
// Failed on main before this change: "cannot hash the inputs of (t): Permission denied" named no
// file.
#[test]
fn an_unreadable_input_is_an_error_naming_it() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.t]
toolchain = "go"
run = "cat src/* > all.txt"
inputs = ["src/**"]
outputs = ["all.txt"]
"#,
    );
    p.write("src/a.txt", "a");
    p.write("src/locked.txt", "no");
    let locked = p.path().join("src/locked.txt");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    for mode in ["build", "build-incremental"] {
        let r = unprivileged(&p, &[mode]);
        assert_eq!(r.code, 5, "{mode}: {}", r.all());
        assert!(
            r.stderr.contains(&locked.display().to_string())
                && r.stderr.contains("Permission denied"),
            "{mode}: {}",
            r.stderr
        );
    }
}

/// Runs the binary without the power to read files it has no permission for (as root, the
/// file-permission capabilities are dropped; as anyone else, permissions already hold).
fn unprivileged(p: &Project, args: &[&str]) -> Run {
    let cmd = p.cmd(args);
    if !nix::unistd::geteuid().is_root() {
        let mut cmd = cmd;
        return Run::from(cmd.output().unwrap());
    }
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--bounding-set", "-dac_override,-dac_read_search", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    Run::from(wrapped.output().expect("setpriv (util-linux) runs"))
}
