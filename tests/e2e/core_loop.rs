//! The core loop: tasks in containers, inputs in, outputs out, errors that say what and where.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Project, require_docker, require_toolchain_images};

#[test]
fn hermetic_task_sees_only_declared_inputs_and_returns_outputs() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.gen]
toolchain = "go"
run = "mkdir -p out && cat src/a.txt > out/copy.txt && id -u > out/uid && printf x > single"
inputs = ["src/**"]
outputs = ["out", "single"]

[tasks.look]
toolchain = "go"
deps = ["gen"]
run = "ls -la; test -f out/copy.txt && test -f src/a.txt && test ! -e secret.txt && test ! -e flamenco-build.toml && touch /cache/probe-$$ && echo HERMETIC-OK > seen.txt"
inputs = ["src/**"]
outputs = ["seen.txt"]
"#,
    );
    p.write("src/a.txt", "hello");
    p.write("secret.txt", "not declared");
    p.write("out/stale.txt", "left from an old build");
    let b = p.build(&["build"]).ok();
    assert_eq!(
        b.tasks(),
        [("gen", "ran"), ("look", "ran")],
        "{}",
        b.run.all()
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/copy.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("single")).unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("seen.txt")).unwrap(),
        "HERMETIC-OK\n"
    );
    // The output folder was replaced whole, not merged with stale files.
    assert!(!p.path().join("out/stale.txt").exists());
    // Tasks run as the invoking user.
    let uid = nix::unistd::getuid().as_raw().to_string();
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/uid"))
            .unwrap()
            .trim(),
        uid
    );
    assert!(
        p.labels.containers().is_empty(),
        "containers left: {:?}",
        p.labels.containers()
    );
    // The cache volume was made for the run, with the run's labels.
    assert_eq!(p.labels.volumes(), vec![p.volume.clone()]);
}

#[test]
fn an_undeclared_file_is_not_visible() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.peek]
toolchain = "go"
run = "cat secret.txt > leaked.txt"
inputs = ["src/**"]
outputs = ["leaked.txt"]
"#,
    );
    p.write("src/a.txt", "hello");
    p.write("secret.txt", "TOP-SECRET");
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("secret.txt: No such file"),
        "{}",
        r.stderr
    );
    assert!(!p.path().join("leaked.txt").exists());
}

/// A task that declares GITHASH gets the project's `git rev-parse --short HEAD` (worked out
/// while the build starts), unless the host sets it; either way the value enters the key.
#[test]
fn githash_is_the_projects_commit_unless_the_host_sets_it() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.stamp]
toolchain = "go"
run = "echo \"$GITHASH\" > hash.txt"
inputs = ["src/**"]
outputs = ["hash.txt"]
env = ["GITHASH"]
"#,
    );
    p.write("src/a.txt", "a");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(p.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}");
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let hash = || std::fs::read_to_string(p.path().join("hash.txt")).unwrap();

    let mut cmd = p.cmd(&["build-incremental"]);
    cmd.env_remove("GITHASH");
    crate::support::Run::from(cmd.output().unwrap()).ok();
    assert_eq!(hash().trim(), head);

    let mut cmd = p.cmd(&["build-incremental", "--explain"]);
    cmd.env("GITHASH", "from-the-host");
    let r = crate::support::Run::from(cmd.output().unwrap()).ok();
    assert_eq!(hash().trim(), "from-the-host");
    assert!(r.stdout.contains("GITHASH"), "{}", r.stdout);
}

/// (stdout and stderr reach the engine's log separately: the pause orders them.)
#[test]
fn a_failing_task_names_itself_and_shows_its_log_tail() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.ok]
toolchain = "go"
run = "echo fine > ok.txt"
outputs = ["ok.txt"]

[tasks.broken]
toolchain = "go"
deps = ["ok"]
run = "for i in $(seq 1 80); do echo line-$i; done; sleep 0.3; echo to-stderr >&2; exit 3"
outputs = ["never"]

[tasks.after]
toolchain = "go"
deps = ["broken"]
run = "true"
outputs = ["x"]
"#,
    );
    let b = p.build(&["build"]);
    let r = &b.run;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        b.tasks(),
        [
            ("ok", "ran"),
            ("broken", "failed"),
            ("after", "not-started")
        ],
        "{}",
        r.all()
    );
    assert!(
        r.stderr.contains("task `broken` failed with exit code 3"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("broken| to-stderr"), "{}", r.stderr);
    assert!(r.stderr.contains("broken| line-80"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("broken| line-30\n"),
        "only the last 50 lines: {}",
        r.stderr
    );
    // The failure line names what never started.
    assert!(r.stderr.contains("not started: after"), "{}", r.stderr);
    assert!(
        p.labels.containers().is_empty(),
        "containers left: {:?}",
        p.labels.containers()
    );
}

#[test]
fn a_missing_output_is_an_error() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.lazy]
toolchain = "go"
run = "true"
outputs = ["promised.bin"]
"#,
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("task `lazy` did not produce its declared output `promised.bin`"),
        "{}",
        r.stderr
    );
    assert!(p.labels.containers().is_empty());
}

#[test]
fn a_missing_image_says_which_and_how_to_provide_it() {
    require_docker();
    let p = Project::tiny(
        r#"
[toolchains.ghost]
image = "flamenco-build/not-there:0.0"

[tasks.t]
toolchain = "ghost"
run = "true"
outputs = ["x"]
"#,
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(
        r.stderr
            .contains("toolchain `ghost` needs image `flamenco-build/not-there:0.0`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("pull failed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("no `dockerfile` is configured"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("scripts/toolchain-images.sh"),
        "{}",
        r.stderr
    );
    assert!(p.labels.containers().is_empty());
}

#[test]
fn a_failing_dockerfile_build_is_reported() {
    require_docker();
    let p = Project::tiny(
        r#"
[toolchains.bad]
image = "flamenco-build/test-bad-build:0"
dockerfile = "bad.Dockerfile"

[tasks.t]
toolchain = "bad"
run = "true"
outputs = ["x"]
"#,
    );
    p.write(
        "bad.Dockerfile",
        "FROM flamenco-build/debian:bookworm\nRUN echo building && exit 7\n",
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(
        r.stderr.contains("build from bad.Dockerfile failed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("returned a non-zero code: 7"),
        "{}",
        r.stderr
    );
    // The classic builder's intermediate containers are not ours to leave behind either.
    assert!(p.labels.containers().is_empty());
}

#[test]
fn a_malformed_config_points_at_the_line() {
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\nrun = \"true\"\noutputs = [\"x\"]\ncolour = 1\n",
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 2, "{}", r.all());
    let cfg = p.path().canonicalize().unwrap().join("flamenco-build.toml");
    assert!(
        r.stderr.contains(&format!(
            "{}:11:1: error: unknown key `colour`",
            cfg.display()
        )),
        "{}",
        r.stderr
    );
    let r = p.run(&["graph"]);
    assert_eq!(r.code, 2);
}

#[test]
fn no_engine_is_one_clear_sentence() {
    let p = Project::tiny("[tasks.t]\ntoolchain = \"go\"\nrun = \"true\"\noutputs = [\"x\"]\n");
    let r = Command::new(env!("CARGO_BIN_EXE_flamenco-build"))
        .arg("-C")
        .arg(p.path())
        .arg("build")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: cannot reach the Docker engine at unix:///nonexistent/docker.sock"
        ),
        "{stderr}"
    );
    assert!(stderr.lines().count() <= 2, "{stderr}");
}

#[test]
fn graph_prints_text_and_dot() {
    let p = Project::example();
    let r = p.run(&["graph"]).ok();
    assert!(
        r.stdout
            .contains("manager [go] <- generate-go, webapp-static, generate-py"),
        "{}",
        r.stdout
    );
    let r = p.run(&["graph", "--dot"]).ok();
    assert!(
        r.stdout.contains("\"generate-js\" -> \"webapp-static\";"),
        "{}",
        r.stdout
    );
    // Without a flamenco-build.toml: Flamenco's own graph.
    let empty = tempfile::tempdir().unwrap();
    let r = Command::new(env!("CARGO_BIN_EXE_flamenco-build"))
        .arg("-C")
        .arg(empty.path())
        .arg("graph")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("webapp-static [node] <- generate-js"), "{out}");
    assert!(out.contains("worker [go] <- generate-go"), "{out}");
}

/// The main job: examples/flamenco-mini end to end, then the built programs, for real.
#[test]
fn the_example_builds_and_its_programs_work() {
    require_toolchain_images();
    let p = Project::example();
    let started = Instant::now();
    let b = p.build(&["build"]).ok();
    eprintln!(
        "example build took {:.1}s\n{}",
        started.elapsed().as_secs_f64(),
        b.run.stderr
    );
    for task in crate::support::EXAMPLE_TASKS {
        assert_eq!(b.status(task), "ran", "{task}: {}", b.run.all());
    }
    let root = p.path();
    assert!(
        root.join("addon/flamenco/manager/__init__.py").is_file(),
        "Python client"
    );
    assert!(
        root.join("web/app/src/manager-api/index.js").is_file(),
        "JS client"
    );
    assert!(root.join("web/static/index.html").is_file());
    assert!(
        p.labels.containers().is_empty(),
        "containers left: {:?}",
        p.labels.containers()
    );

    // The manager serves the webapp; the worker registers with it.
    let port = free_port();
    let mut manager = Command::new(root.join("flamenco-manager"))
        .args(["-listen", &format!("127.0.0.1:{port}")])
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(&mut manager);
    let page = wait_for_http(port, "/");
    assert!(page.contains("Flamenco Mini"), "{page}");
    let worker = Command::new(root.join("flamenco-worker"))
        .args([
            "-once",
            "-name",
            "e2e-worker",
            "-manager",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(
        worker.status.success(),
        "{}",
        String::from_utf8_lossy(&worker.stderr)
    );
    let workers = http_get(port, "/api/v3/worker-mgt/workers").unwrap_or_default();
    assert!(workers.contains("e2e-worker"), "{workers}");
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Polls until the port answers. The deadline only keeps a server that never starts from
/// hanging the test; it is not a speed requirement.
fn wait_for_http(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(b) = http_get(port, path) {
            return b;
        }
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn setup_builds_a_missing_image_from_its_dockerfile() {
    require_toolchain_images();
    let p = Project::tiny("");
    let image = format!("flamenco-build/test-built:{}", p.labels.value);
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\n\n", "\n")
        + &format!(
            "\n[toolchains.made]\nimage = \"{image}\"\ndockerfile = \"docker/made.Dockerfile\"\n\n[tasks.t]\ntoolchain = \"made\"\nrun = \"cat /made-by-dockerfile > out.txt\"\noutputs = [\"out.txt\"]\n"
        );
    std::fs::write(&cfg, text).unwrap();
    p.write(
        "docker/made.Dockerfile",
        "FROM flamenco-build/debian:bookworm\nCOPY marker /made-by-dockerfile\n",
    );
    p.write("docker/marker", "from the build context\n");
    struct Rmi(String);
    impl Drop for Rmi {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _rmi = Rmi(image.clone());
    let r = p.run(&["setup"]).ok();
    assert!(
        r.stdout.contains(&format!("toolchain made: {image}")) && r.stdout.contains("built in"),
        "{}",
        r.all()
    );
    let r = p.run(&["setup"]).ok();
    assert!(r.stdout.contains("(present)"), "{}", r.all());
    p.run(&["build", "t"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path().join("out.txt")).unwrap(),
        "from the build context\n"
    );
}
