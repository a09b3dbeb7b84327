//! Faults and hostile input: corrupt cache entries of every kind, a lying stat cache, hostile
//! output archives, secrets, a full cache disk.

use std::process::Command;

use crate::cache::two_tasks;
use crate::support::{Built, Project, Run, require_toolchain_images};

/// Builds, breaks something in the cache with `corrupt`, deletes the outputs, builds again.
fn rebuild_after(corrupt: impl FnOnce(&Project)) -> (Project, Built) {
    require_toolchain_images();
    let p = two_tasks();
    p.run(&["build-incremental"]).ok();
    corrupt(&p);
    std::fs::remove_file(p.path().join("final.txt")).unwrap();
    let r = p.build(&["build-incremental"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path().join("final.txt")).unwrap(),
        "alpha\nbeta\n"
    );
    let v = p.run(&["cache-verify"]).ok();
    assert!(v.stdout.contains(" 0 bad"), "{}", v.stdout);
    (p, r)
}

fn meta(p: &Project) -> std::path::PathBuf {
    p.path().join(".build-cache/metadata/use.meta.json")
}

#[test]
fn metadata_that_is_not_json_is_evicted_and_rebuilt() {
    let (_, b) = rebuild_after(|p| std::fs::write(meta(p), b"{ this is not json").unwrap());
    let r = &b.run;
    assert_eq!(
        r.stderr.matches("corrupt cache metadata").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(b.ran("use"), "{}", r.all());
}

#[test]
fn metadata_whose_manifest_names_another_blob_is_evicted_and_rebuilt() {
    let (_, b) = rebuild_after(|p| {
        let text = std::fs::read_to_string(meta(p)).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for e in v["entries"].as_object_mut().unwrap().values_mut() {
            e["outputs"]["final.txt"]["sha256"] = serde_json::json!("0".repeat(64));
        }
        std::fs::write(meta(p), serde_json::to_vec(&v).unwrap()).unwrap();
    });
    let r = &b.run;
    assert_eq!(
        r.stderr.matches("corrupt cache entry for use").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("is missing"), "{}", r.stderr);
    assert!(b.ran("use"), "{}", r.all());
}

#[test]
fn blobs_without_metadata_are_not_used_and_the_task_rebuilds() {
    let (p, b) = rebuild_after(|p| std::fs::remove_file(meta(p)).unwrap());
    assert!(b.ran("use") && b.cache_hit("gen"), "{}", b.run.all());
    // The new save named the blob that was already there: one entry, whose blob verifies.
    let blob = crate::cache::blob_of(&p, "use", "final.txt");
    assert_eq!(std::fs::read_to_string(blob).unwrap(), "alpha\nbeta\n");
}

#[test]
fn a_lying_stat_cache_is_caught_by_paranoid() {
    require_toolchain_images();
    let p = two_tasks();
    p.run(&["build-incremental"]).ok();
    // Age the inputs so the stat cache remembers them, then build once more to record that.
    for f in ["src/a.txt", "src/b.txt"] {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(p.path().join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    p.run(&["build-incremental"]).ok();
    // Same size, other content, and the stat cache told that nothing changed: it lies.
    p.write("src/a.txt", "ALPHA\n");
    let stat_path = p.path().join(".build-cache/stat-cache.json");
    let mut sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stat_path).unwrap()).unwrap();
    let abs = p
        .path()
        .canonicalize()
        .unwrap()
        .join("src/a.txt")
        .display()
        .to_string();
    let now_stat = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(&abs).unwrap();
        serde_json::json!({
            "size": m.size(),
            "mtime_ns": m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            "ctime_ns": m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
            "ino": m.ino(),
            "mode": m.mode(),
        })
    };
    let entry = sc["entries"]
        .get_mut(&abs)
        .expect("a.txt is in the stat cache");
    entry[0] = now_stat;
    std::fs::write(&stat_path, serde_json::to_vec(&sc).unwrap()).unwrap();
    let b = p.build(&["build-incremental"]).ok();
    assert!(
        b.cache_hit("gen"),
        "the lie is believed without --paranoid: {}",
        b.run.all()
    );
    let b = p
        .build(&["build-incremental", "--paranoid", "--explain"])
        .ok();
    assert!(b.ran("gen"), "{}", b.run.all());
    assert!(
        b.run.stderr.contains("input files changed: 1 (src/a.txt)"),
        "{}",
        b.run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("final.txt")).unwrap(),
        "ALPHA\nbeta\n"
    );
}

/// A task (as root, so it may make device nodes) whose output holds `what`.
fn hostile(what: &str, why: &str) {
    require_toolchain_images();
    let p = Project::tiny(&format!(
        "[tasks.evil]\ntoolchain = \"go\"\nrun = \"mkdir -p out && echo ok > out/fine.txt && {what}\"\noutputs = [\"out\"]\n"
    ));
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[settings]\n", "[settings]\nuser = \"0:0\"\n");
    std::fs::write(&cfg, text).unwrap();
    let r = p.run(&["build-optimized", "--progress", "plain"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("task `evil`: refused entry"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(why), "{}", r.stderr);
    // Nothing of it reached the workspace, and nothing was cached.
    assert!(!p.path().join("out").exists());
    assert!(
        !p.path()
            .join(".build-cache/metadata/evil.meta.json")
            .exists()
    );
    assert!(p.labels.containers().is_empty());
}

#[test]
fn an_output_symlink_out_of_the_workspace_is_refused() {
    hostile(
        "ln -s /etc/passwd out/passwd",
        "symlink points outside the workspace",
    );
}

#[test]
fn an_output_symlink_climbing_out_is_refused() {
    hostile(
        "ln -s ../../../../etc out/up",
        "symlink points outside the workspace",
    );
}

#[test]
fn an_output_device_node_is_refused() {
    hostile("mknod out/null c 1 3", "not allowed");
}

#[test]
fn a_secret_never_appears_in_what_the_tool_writes() {
    require_toolchain_images();
    let secret = "hunter2-TOP-SECRET-value";
    let p = Project::tiny(
        "[tasks.deploy]\ntoolchain = \"go\"\nrun = \"test -n \\\"$FB_SECRET\\\" && echo token-length ${#FB_SECRET} > out.txt\"\noutputs = [\"out.txt\"]\nenv = [\"FB_SECRET\"]\n",
    );
    let trace = p.path().join("trace.json");
    let mut everything = String::new();
    for (value, args) in [
        (
            secret,
            vec![
                "-v",
                "build-optimized",
                "--progress",
                "plain",
                "--json",
                "--trace",
                trace.to_str().unwrap(),
                "--explain",
            ],
        ),
        (
            "another-secret-value",
            vec!["-v", "build-optimized", "--progress", "plain", "--explain"],
        ),
        (secret, vec!["build-incremental", "--dry-run", "--explain"]),
    ] {
        let r = Run::from(p.cmd(&args).env("FB_SECRET", value).output().unwrap()).ok();
        everything += &r.all();
    }
    assert!(
        everything.contains("environment variable FB_SECRET changed"),
        "{everything}"
    );
    everything += &std::fs::read_to_string(&trace).unwrap();
    for f in walk(&p.path().join(".build-cache")) {
        everything += &String::from_utf8_lossy(&std::fs::read(f).unwrap());
    }
    assert_eq!(
        std::fs::read_to_string(p.path().join("out.txt")).unwrap(),
        format!("token-length {}\n", "another-secret-value".len())
    );
    assert!(!everything.contains(secret), "the secret leaked");
    assert!(
        !everything.contains("another-secret-value"),
        "the secret leaked"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "json")
            || p.file_name().is_some_and(|n| n != "lock")
        {
            out.push(p);
        }
    }
    out
}

/// The cache folder on a tiny file system that fills up: the build still succeeds, uncached.
#[test]
fn a_full_cache_disk_builds_without_caching() {
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.big]\ntoolchain = \"go\"\nrun = \"yes flamenco | head -c 3000000 > big.bin\"\noutputs = [\"big.bin\"]\n",
    );
    let small = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(small.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a small tmpfs (the tests run as root)");
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _umount = Umount(small.path().to_path_buf());
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[settings]\n",
        &format!("[settings]\ncache_dir = \"{}\"\n", small.path().display()),
    );
    std::fs::write(&cfg, text).unwrap();
    let r = p.run(&["build-optimized", "--progress", "plain"]).ok();
    assert!(r.stderr.contains("disk is full"), "{}", r.stderr);
    assert_eq!(
        std::fs::metadata(p.path().join("big.bin")).unwrap().len(),
        3_000_000
    );
    // No staging folder is left in the project.
    let left: Vec<_> = std::fs::read_dir(p.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(p.labels.containers().is_empty());
}
