//! The boundary, as the configuration draws it (issue 10 findings 3, 4, 5 and 14): the cache folder
//! is one flamenco-build owns, outputs and inputs stay out of `.git` and the cache folder, task
//! names are safe file names, and values Docker would refuse are refused when the config is read.

use std::path::Path;

use crate::support::{Project, Run, require_toolchain_images};

/// A project with `tasks`; `settings` is added to its `[settings]` table (as line 2).
fn project(settings: &str, tasks: &str) -> Project {
    let p = Project::tiny(tasks);
    add_settings(&p, settings);
    p
}

fn add_settings(p: &Project, settings: &str) {
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[settings]\n",
        &format!("[settings]\n{settings}\n"),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
}

const ONE_TASK: &str = r#"
[tasks.gen]
toolchain = "go"
run = "mkdir -p out && echo built > out/a.txt"
outputs = ["out"]
"#;

#[track_caller]
fn assert_config_error(r: &Run, at: &str, says: &str) {
    assert_eq!(r.code, 2, "expected a configuration error:\n{}", r.all());
    assert!(
        r.stderr
            .contains(&format!("flamenco-build.toml:{at}: error: "))
            && r.stderr.contains(says),
        "expected an error at {at} saying `{says}`:\n{}",
        r.stderr
    );
}

/// Every file below `dir`, relative, sorted (folders end in `/`).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir, dir);
    v.sort();
    v
}

fn walk(root: &Path, dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        if e.file_type().unwrap().is_dir() {
            v.push(format!("{rel}/"));
            v.extend(walk(root, &e.path()));
        } else {
            v.push(rel);
        }
    }
    v
}

#[test]
fn a_cache_dir_on_the_project_root_or_slash_is_a_config_error() {
    // Issue 10 finding 3: `cache_dir` may not be the project root, an ancestor of it, `/` or $HOME.
    // Failed on main before this change: `cache_dir = "."` was accepted, and `clean-cache`
    // deleted the project's own `metadata/` folder and rewrote its `VERSION`.
    let p = project("cache_dir = \".\"", ONE_TASK);
    p.write("metadata/keep.txt", "the project's own file\n");
    p.write("VERSION", "1.2.3\n");
    for cmd in ["clean-cache", "cache-status", "build-incremental", "graph"] {
        assert_config_error(&p.run(&[cmd]), "2:13", "`cache_dir` ");
    }
    assert_eq!(
        std::fs::read_to_string(p.path().join("metadata/keep.txt")).unwrap(),
        "the project's own file\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("VERSION")).unwrap(),
        "1.2.3\n"
    );
    // `/` is only ever tried with commands that never clear anything, even on a broken build.
    let p = project("cache_dir = \"/\"", ONE_TASK);
    for cmd in ["graph", "cache-status"] {
        assert_config_error(&p.run(&[cmd]), "2:13", "`cache_dir` ");
    }
}

#[test]
fn a_cache_folder_that_is_not_ours_is_never_cleared_or_written() {
    // Issue 10 finding 3: a cache folder must be empty or hold our CACHEDIR.TAG before anything
    // in it is cleared, trimmed or written. Failed on main before this change: `clean-cache`
    // emptied a stranger's `metadata/` folder, and a build wrote its folders into it.
    require_toolchain_images();
    let stranger = tempfile::tempdir().unwrap();
    std::fs::create_dir(stranger.path().join("metadata")).unwrap();
    std::fs::write(stranger.path().join("metadata/theirs.txt"), "theirs\n").unwrap();
    std::fs::write(stranger.path().join("VERSION"), "7\n").unwrap();
    std::fs::write(stranger.path().join("notes.txt"), "notes\n").unwrap();
    let before = listing(stranger.path());
    let p = project(
        &format!("cache_dir = \"{}\"", stranger.path().display()),
        ONE_TASK,
    );
    for cmd in ["clean-cache", "cache-status", "build-incremental", "build"] {
        let r = p.run(&[cmd]);
        assert_eq!(r.code, 2, "`{cmd}` should refuse the folder:\n{}", r.all());
        assert!(
            r.stderr.contains(&stranger.path().display().to_string())
                && r.stderr.contains("CACHEDIR.TAG"),
            "`{cmd}` should name the folder and say why:\n{}",
            r.stderr
        );
        assert_eq!(
            listing(stranger.path()),
            before,
            "`{cmd}` changed the folder"
        );
    }
    assert!(!p.path().join("out").exists(), "nothing was built");
    assert_eq!(
        std::fs::read_to_string(stranger.path().join("VERSION")).unwrap(),
        "7\n"
    );
}

#[test]
fn clean_cache_removes_only_our_own_entries() {
    // Issue 10 finding 3: `clean-cache` removes only entries of the cache's own layout. Passed on
    // main too: a guard that the ownership check did not widen what clean-cache removes.
    require_toolchain_images();
    let p = project("", ONE_TASK);
    p.run(&["build-incremental"]).ok();
    let cache = p.path().join(".build-cache");
    std::fs::write(cache.join("README.txt"), "mine\n").unwrap();
    std::fs::create_dir(cache.join("keep")).unwrap();
    std::fs::write(cache.join("keep/x"), "mine too\n").unwrap();
    let r = p.run(&["clean-cache"]).ok();
    assert!(r.stdout.starts_with("Cache: removed "), "{}", r.stdout);
    assert!(
        listing(&cache.join("artifacts")).is_empty() && listing(&cache.join("metadata")).is_empty(),
        "our entries are gone: {:?}",
        listing(&cache)
    );
    assert!(cache.join("README.txt").exists() && cache.join("keep/x").exists());
    let s = p.run(&["cache-status"]).ok();
    assert!(s.stdout.contains("Targets cached: 0"), "{}", s.stdout);
    // The folder is still ours: the next build uses it.
    p.run(&["build-incremental"]).ok();
}

#[test]
fn outputs_in_git_or_the_cache_folder_are_config_errors() {
    // Issue 10 finding 4: no output may be `.git`, lie in a `.git` folder or in the cache folder,
    // however `cache_dir` is written. Failed on main before this change: the build placed an
    // executable `.git/hooks/pre-commit`, and accepted outputs in `.build-cache/` and in an
    // absolute `cache_dir`.
    require_toolchain_images();
    let hook = r#"
[tasks.gen]
toolchain = "go"
run = "mkdir -p .git/hooks && printf '#!/bin/sh\necho pwned\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit"
outputs = [".git/hooks/pre-commit"]
"#;
    let p = project("", hook);
    std::fs::create_dir_all(p.path().join(".git/hooks")).unwrap();
    assert_config_error(&p.run(&["build-incremental"]), "12:12", "`.git`");
    assert!(!p.path().join(".git/hooks/pre-commit").exists());

    let victim = r#"
[tasks.gen]
toolchain = "go"
run = "mkdir -p .build-cache/metadata && echo '{}' > .build-cache/metadata/victim.meta.json"
outputs = [".build-cache/metadata/victim.meta.json"]
"#;
    let p = project("", victim);
    assert_config_error(&p.run(&["build-incremental"]), "12:12", "cache folder");

    let wipe = r#"
[tasks.gen]
toolchain = "go"
run = "mkdir -p cache && echo replaced > cache/x"
outputs = ["cache"]
"#;
    let p = Project::tiny(wipe);
    add_settings(
        &p,
        &format!("cache_dir = \"{}/./cache/\"", p.path().display()),
    );
    std::fs::create_dir(p.path().join("cache")).unwrap();
    std::fs::write(p.path().join("cache/CACHEDIR.TAG"), "kept\n").unwrap();
    assert_config_error(&p.run(&["build-incremental"]), "12:12", "cache folder");
    assert_eq!(
        std::fs::read_to_string(p.path().join("cache/CACHEDIR.TAG")).unwrap(),
        "kept\n"
    );
}

#[test]
fn task_names_dot_and_dotdot_are_config_errors() {
    // Issue 10 finding 5: task names are safe single path components. Failed on main before this
    // change: `.` and `..` were accepted (`.` put its archives in the cache folder itself).
    for name in [".", ".."] {
        let tasks = ONE_TASK.replace("[tasks.gen]", &format!("[tasks.\"{name}\"]"));
        let p = project("", &tasks);
        assert_config_error(
            &p.run(&["graph"]),
            "9:8",
            &format!("`{name}` is not a valid task name"),
        );
    }
}

#[test]
fn values_docker_refuses_are_config_errors() {
    // Issue 10 finding 14: a volume name Docker refuses, a `run` with a NUL byte and a 300-character
    // task name are located config errors (exit 2). Failed on main before this change: all three
    // were accepted by validation, and failed (or not) only when the engine met them.
    for volume in ["-weird", ".."] {
        let p = Project::tiny(ONE_TASK);
        let cfg = p.path().join("flamenco-build.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&p.volume, volume);
        std::fs::write(&cfg, text).unwrap();
        assert_config_error(&p.run(&["graph"]), "2:16", "`cache_volume` ");
    }
    let p = project(
        "",
        &ONE_TASK.replace("run = \"mkdir", "run = \"\\u0000mkdir"),
    );
    assert_config_error(&p.run(&["graph"]), "11:7", "NUL");
    let long = "t".repeat(300);
    let p = project(
        "",
        &ONE_TASK.replace("[tasks.gen]", &format!("[tasks.{long}]")),
    );
    assert_config_error(&p.run(&["graph"]), "9:8", "is not a valid task name");
}
