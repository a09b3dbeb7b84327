//! The Docker workflow of Makefile.docker, target by target, on a copy of the example project:
//! dev-setup, build-optimized, cache-status, dev-start, dev-status, dev-stop, cache-clean.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Project, Run, docker_lines, repo, require_toolchain_images};

const DEV_LABEL: &str = "dev.flamenco-build.dev";

/// `make -f Makefile.docker` aimed at one test project, its labels, a free port and the binary
/// under test. Dropping it runs `dev-stop` and removes whatever still carries the test's label,
/// so a failing assertion leaves no container, network, image or volume behind.
struct Workflow {
    project: Project,
    port: u16,
}

impl Workflow {
    fn new() -> Workflow {
        Workflow {
            project: Project::example(),
            port: free_port(),
        }
    }

    /// The name dev-env.sh derives from the project folder (lowercased, `[^a-z0-9]+` → `-`).
    fn dev_name(&self) -> String {
        let base = self.project.path().file_name().unwrap().to_string_lossy();
        let mut name = String::new();
        for c in base.to_lowercase().chars() {
            if c.is_ascii_alphanumeric() {
                name.push(c);
            } else if !name.ends_with('-') {
                name.push('-');
            }
        }
        name.trim_matches('-').to_string()
    }

    fn make(&self, target: &str) -> Run {
        let label = self.project.labels.arg();
        let started = Instant::now();
        let out = Command::new("make")
            .arg("-f")
            .arg(repo().join("Makefile.docker"))
            .arg(format!("PROJECT={}", self.project.path().display()))
            .arg(concat!("FB=", env!("CARGO_BIN_EXE_flamenco-build")))
            .arg(format!("FB_FLAGS=--label {label}"))
            .arg(format!("DEV_LABELS={label}"))
            .arg(format!("DEV_PORT={}", self.port))
            .arg(target)
            .current_dir(repo())
            .output()
            .expect("run make (is GNU make installed?)");
        eprintln!("make {target}: {:.1?}", started.elapsed());
        Run::from(out)
    }

    #[track_caller]
    fn make_ok(&self, target: &str) -> Run {
        let r = self.make(target);
        assert_eq!(
            r.code, 0,
            "make {target} failed\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }

    /// Containers and networks carrying the test's label.
    fn leftovers(&self) -> Vec<String> {
        let filter = self.project.labels.filter();
        let mut all = docker_lines(&["ps", "-aq", "--filter", &filter]);
        all.extend(docker_lines(&["network", "ls", "-q", "--filter", &filter]));
        all.extend(docker_lines(&["image", "ls", "-q", "--filter", &filter]));
        all
    }
}

impl Drop for Workflow {
    fn drop(&mut self) {
        let _ = self.make("dev-stop");
        // Belt and braces: anything with the test's label (Project's drop then takes containers
        // and volumes), and the project's cache volume whatever its labels.
        let filter = self.project.labels.filter();
        for (kind, rm) in [("network", "rm"), ("image", "rm")] {
            for id in docker_lines(&[kind, "ls", "-q", "--filter", &filter]) {
                let _ = Command::new("docker").args([kind, rm, &id]).output();
            }
        }
        for id in docker_lines(&["ps", "-aq", "--filter", &filter]) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.project.volume])
            .output();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A plain HTTP/1.0 GET on 127.0.0.1; returns (status line, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

fn targets_cached(status: &Run) -> Option<u32> {
    status
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Targets cached:"))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn makefile_docker_workflow() {
    require_toolchain_images();
    let w = Workflow::new();
    let dir: PathBuf = w.project.path().to_path_buf();
    let manager_bin = dir.join("flamenco-manager");
    let worker_bin = dir.join("flamenco-worker");
    assert!(!manager_bin.exists() && !worker_bin.exists());

    // help is the default goal and names every target.
    let help = w.make_ok("help");
    for t in [
        "build-optimized",
        "build-incremental",
        "build ",
        "cache-status",
        "cache-clean",
        "clean-all",
        "dev-setup",
        "dev-start",
        "dev-stop",
        "test",
    ] {
        assert!(
            help.stdout.contains(&format!("  {t}")),
            "help lacks {t}:\n{}",
            help.stdout
        );
    }

    // dev-setup: images, the cache volume (with the test's label), a first build-optimized.
    let r = w.make_ok("dev-setup");
    assert!(
        r.stdout
            .contains(&format!("cache volume {}:", w.project.volume)),
        "{}",
        r.stdout
    );
    assert!(
        w.project.labels.volumes().contains(&w.project.volume),
        "the cache volume should carry the test's label"
    );
    assert!(
        manager_bin.is_file() && worker_bin.is_file(),
        "{}",
        r.stdout
    );

    // build-optimized again: all up to date, nothing to run.
    let r = w.make_ok("build-optimized");
    for task in ["manager", "worker"] {
        assert!(
            r.stdout.contains(&format!("Up to date {task} (")),
            "{task} should be up to date:\n{}",
            r.stdout
        );
    }
    assert!(!r.stdout.contains("Completed "), "{}", r.stdout);

    let r = w.make_ok("cache-status");
    assert_eq!(targets_cached(&r), Some(6), "{}", r.stdout);

    // dev-start: the manager on 127.0.0.1:PORT serves the webapp and lists the worker.
    let name = w.dev_name();
    let worker_name = format!("{name}-worker");
    let url = format!("http://127.0.0.1:{}/", w.port);
    let r = w.make_ok("dev-start");
    assert!(
        r.stdout.contains(&url),
        "dev-start should print {url}:\n{}",
        r.stdout
    );
    let (status, page) = http_get(w.port, "/").expect("the manager answers");
    assert!(status.contains(" 200"), "{status}");
    assert!(page.contains("Flamenco Mini"), "{page}");
    assert!(
        page.contains("<script"),
        "the webapp bundle should be embedded:\n{page}"
    );
    let (_, workers) = http_get(w.port, "/api/v3/worker-mgt/workers").unwrap();
    assert!(workers.contains(&format!("\"{worker_name}\"")), "{workers}");
    // Two containers, both labelled, the port on loopback only.
    let dev_filter = format!("label={DEV_LABEL}={name}");
    let running = docker_lines(&[
        "ps",
        "-q",
        "--filter",
        &w.project.labels.filter(),
        "--filter",
        &dev_filter,
    ]);
    assert_eq!(running.len(), 2, "manager and worker should run");
    let ports = docker_lines(&["port", &format!("fbdev-{name}-manager"), "8080/tcp"]);
    assert_eq!(ports, vec![format!("127.0.0.1:{}", w.port)]);
    assert_eq!(
        docker_lines(&["network", "ls", "-q", "--filter", &dev_filter]).len(),
        1,
        "one private network"
    );
    let r = w.make_ok("dev-status");
    assert!(r.stdout.contains(&format!("URL: {url}")), "{}", r.stdout);

    // dev-start again replaces the environment (a restart picks up rebuilt binaries).
    w.make_ok("dev-start");
    let (_, workers) = http_get(w.port, "/api/v3/worker-mgt/workers").unwrap();
    assert!(workers.contains(&format!("\"{worker_name}\"")), "{workers}");

    // dev-stop: nothing labelled remains, and the port is closed.
    w.make_ok("dev-stop");
    assert_eq!(
        w.leftovers(),
        Vec::<String>::new(),
        "dev-stop left resources"
    );
    assert!(docker_lines(&["ps", "-aq", "--filter", &dev_filter]).is_empty());
    assert!(docker_lines(&["network", "ls", "-q", "--filter", &dev_filter]).is_empty());
    assert!(http_get(w.port, "/").is_err(), "the manager should be gone");
    let r = w.make_ok("dev-status");
    assert!(r.stdout.contains("not running"), "{}", r.stdout);

    // cache-clean: the artifact cache is empty, the built binaries stay.
    w.make_ok("cache-clean");
    let r = w.make_ok("cache-status");
    assert_eq!(targets_cached(&r), Some(0), "{}", r.stdout);
    assert!(manager_bin.is_file());
}
