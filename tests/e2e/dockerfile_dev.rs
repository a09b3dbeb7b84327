//! Dockerfile.dev: the project built by `docker buildx build` with the local executor and the
//! caches in BuildKit cache mounts. Its outputs equal the Docker executor's, and after a one-file
//! change the second image build runs only the affected task.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use crate::support::{Project, repo, require_toolchain_images};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// sha256 of every file of the example's outputs below `root`.
fn output_hashes(root: &std::path::Path) -> BTreeMap<String, String> {
    let outputs = [
        "flamenco-manager",
        "flamenco-worker",
        "pkg/api",
        "web/static",
        "addon/flamenco/manager",
        "web/app/src/manager-api",
    ];
    let mut m = BTreeMap::new();
    for o in outputs {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd '{}' && find {o} -type f -print0 | sort -z | xargs -0 sha256sum",
                root.display()
            ))
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let (h, p) = line.split_once("  ").unwrap();
            m.insert(p.to_string(), h.to_string());
        }
    }
    m
}

struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn the_dev_image_builds_like_the_docker_executor_and_rebuilds_only_what_changed() {
    require_toolchain_images();
    sh(&mut Command::new(repo().join("scripts/install-buildx.sh")));
    let p = Project::example();
    // Its build context, from the clean project (before anything is built in it).
    let ctx = tempfile::tempdir().unwrap();
    sh(Command::new(repo().join("scripts/docker-context.sh"))
        .arg(p.path())
        .arg(ctx.path())
        .arg(env!("CARGO_BIN_EXE_flamenco-build")));
    // A change no earlier run has seen, so that the build cache cannot already hold its result.
    let worker_file = "internal/worker/client.go";
    let stamp = format!("\n// build {}\n", p.labels.value);
    let append = |dir: &std::path::Path| {
        let f = dir.join(worker_file);
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str(&stamp);
        std::fs::write(f, text).unwrap();
    };
    append(p.path());
    append(&ctx.path().join("project"));

    // The Docker executor, on the host.
    p.run(&["build-optimized", "--progress", "plain"]).ok();
    let docker_hashes = output_hashes(p.path());
    assert!(docker_hashes.len() > 20, "{docker_hashes:?}");

    // The local executor, inside docker build.
    let tag = format!("flamenco-build-test-dev:{}", p.labels.value);
    let _cleanup = RemoveImage(tag.clone());
    let build = |what: &str| {
        let started = Instant::now();
        let log = sh(Command::new("docker")
            .args(["buildx", "build", "-f"])
            .arg(repo().join("dockerfiles/Dockerfile.dev"))
            .args([
                "--progress",
                "plain",
                "--label",
                &p.labels.arg(),
                "-t",
                &tag,
            ])
            .arg(ctx.path()));
        eprintln!(
            "{what} Dockerfile.dev build: {:.1}s",
            started.elapsed().as_secs_f64()
        );
        log
    };
    build("first");
    let out = tempfile::tempdir().unwrap();
    let name = format!("fbtest-extract-{}", p.labels.value);
    sh(Command::new("docker").args(["create", "--name", &name, "--label", &p.labels.arg(), &tag]));
    let copied = Command::new("docker")
        .args([
            "cp",
            &format!("{name}:/src/."),
            out.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(copied.status.success());
    let local_hashes = output_hashes(out.path());
    assert_eq!(
        local_hashes, docker_hashes,
        "the local executor's outputs differ from the Docker executor's"
    );

    // One more change in the worker: only the worker runs; everything else comes from the cache mount.
    let more = format!("\n// and again {}\n", p.labels.value);
    let f = ctx.path().join("project").join(worker_file);
    std::fs::write(&f, std::fs::read_to_string(&f).unwrap() + &more).unwrap();
    let log = build("second");
    let started: Vec<&str> = log.lines().filter(|l| l.contains("] Starting ")).collect();
    assert_eq!(started.len(), 1, "only the worker should run:\n{log}");
    assert!(started[0].ends_with("Starting worker"), "{log}");
    for t in [
        "generate-go",
        "generate-js",
        "generate-py",
        "webapp-static",
        "manager",
    ] {
        assert!(
            log.contains(&format!("Restored {t} (cache hit"))
                || log.contains(&format!("Up to date {t} (cache hit")),
            "{t}:\n{log}"
        );
    }
}
