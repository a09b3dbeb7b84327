//! The example builds on an engine reached over TCP that cannot see this machine's files: a second
//! dockerd of our own on loopback, with its own data root, exec root, pid file and bridge.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Project, docker_lines, require_toolchain_images};

pub(crate) const IMAGES: [&str; 4] = [
    "flamenco-build/debian:bookworm",
    "flamenco-build/go:1.23",
    "flamenco-build/node:22",
    "flamenco-build/java:11",
];

/// A dockerd of the test's own; stopped, and its folders and bridge removed, on drop.
pub(crate) struct SecondEngine {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) host: String,
    bridge: String,
}

impl SecondEngine {
    pub(crate) fn start() -> SecondEngine {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Under /var/lib so the storage driver gets the same file system as the main engine's.
        std::fs::create_dir_all("/var/lib/flamenco-build-test").unwrap();
        let dir = tempfile::tempdir_in("/var/lib/flamenco-build-test").unwrap();
        let driver = docker_lines(&["info", "--format", "{{.Driver}}"])
            .pop()
            .unwrap_or_else(|| "vfs".into());
        let host = format!("tcp://127.0.0.1:{port}");
        // Its own bridge: with `--bridge none` a dockerd deletes the machine's docker0, which
        // belongs to the machine's engine.
        let bridge = format!("fbt{}", port);
        let ok = Command::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot create bridge {bridge} for the second engine");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        // Its own (empty) config: the machine's daemon.json names the machine's data root.
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.path().join("daemon.json"))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .args([
                "-H",
                &host,
                "--bridge",
                &bridge,
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ])
            .args(["--storage-driver", &driver])
            .args([
                "--containerd-namespace",
                "flamenco-build-test",
                "--containerd-plugins-namespace",
                "flamenco-build-test-plugins",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a second dockerd (is dockerd installed?)");
        let engine = SecondEngine {
            child,
            dir,
            host,
            bridge,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new("docker")
                .args(["-H", &engine.host, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(engine.dir.path().join("dockerd.log"))
                    .unwrap_or_default();
                panic!(
                    "the second dockerd did not answer on {}:\n{log}",
                    engine.host
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        engine
    }

    /// `docker save` from the machine's engine, `docker load` into this one.
    pub(crate) fn load(&self, image: &str) {
        self.load_all(&[image]);
    }

    /// [`SecondEngine::load`] for several images in one stream (layers they share go once).
    pub(crate) fn load_all(&self, images: &[&str]) {
        let images = images.join(" ");
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; docker save {images} | docker -H {} load -q",
                self.host
            ))
            .status()
            .unwrap();
        assert!(status.success(), "loading {images} into the second engine");
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts of a storage driver may outlive the daemon briefly.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o '{}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
    }
}

#[test]
fn the_example_builds_on_an_engine_over_tcp() {
    require_toolchain_images();
    let docker0 = std::path::Path::new("/sys/class/net/docker0");
    let had_docker0 = docker0.exists();
    let engine = SecondEngine::start();
    for image in IMAGES {
        engine.load(image);
    }
    let p = Project::example();
    let r = p
        .cmd(&["build"])
        .env("DOCKER_HOST", &engine.host)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{out}\n{err}");
    assert!(p.path().join("flamenco-manager").is_file());
    assert!(p.path().join("flamenco-worker").is_file());
    assert!(p.path().join("addon/flamenco/manager").is_dir());
    // Nothing of the run is left on that engine, and nothing ran on the machine's own.
    let left = Command::new("docker")
        .args([
            "-H",
            &engine.host,
            "ps",
            "-aq",
            "--filter",
            &p.labels.filter(),
        ])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "containers left on the second engine"
    );
    assert!(
        p.labels.volumes().is_empty(),
        "the volume belongs on the second engine"
    );
    drop(engine);
    assert_eq!(
        docker0.exists(),
        had_docker0,
        "the second engine must leave the machine's docker0 alone"
    );
}
