//! Test support: the real binary, the real engine, labelled resources cleaned up on drop.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The six tasks of examples/flamenco-mini.
pub const EXAMPLE_TASKS: [&str; 6] = [
    "generate-go",
    "generate-py",
    "generate-js",
    "webapp-static",
    "manager",
    "worker",
];

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when no Docker engine answers: these tests exist to run against one.
pub fn require_docker() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "these tests need a Docker engine and none answers: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("these tests need the docker CLI and a Docker engine: {e}"),
        }
    });
}

/// Makes the pinned toolchain images (cached by content tag: fast when they exist).
pub fn require_toolchain_images() {
    require_docker();
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo().join("scripts/toolchain-images.sh"))
            .status()
            .expect("run scripts/toolchain-images.sh");
        assert!(status.success(), "scripts/toolchain-images.sh failed");
    });
}

/// Makes the named toolchain images beyond the default set (`go:1.26`), cached by content tag like
/// the default ones: CI builds only the Go images some test names.
pub fn require_named_images(names: &[&str]) {
    require_toolchain_images();
    static MADE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !made.iter().any(|m| m == n))
        .collect();
    if missing.is_empty() {
        return;
    }
    let status = Command::new("bash")
        .arg(repo().join("scripts/toolchain-images.sh"))
        .args(&missing)
        .status()
        .expect("run scripts/toolchain-images.sh");
    assert!(
        status.success(),
        "scripts/toolchain-images.sh {missing:?} failed"
    );
    made.extend(missing.iter().map(|s| s.to_string()));
}

/// A unique label for one test's resources; everything carrying it is removed on drop.
pub struct Labels {
    pub key: String,
    pub value: String,
}

impl Labels {
    pub fn new() -> Labels {
        Labels {
            key: "dev.flamenco-build.test".into(),
            value: format!("t{}-{}", std::process::id(), uuid()),
        }
    }

    pub fn arg(&self) -> String {
        format!("{}={}", self.key, self.value)
    }

    pub fn filter(&self) -> String {
        format!("label={}={}", self.key, self.value)
    }

    /// Containers (running or not) that carry this test's label.
    pub fn containers(&self) -> Vec<String> {
        docker_lines(&["ps", "-aq", "--filter", &self.filter()])
    }

    pub fn volumes(&self) -> Vec<String> {
        docker_lines(&["volume", "ls", "-q", "--filter", &self.filter()])
    }
}

impl Drop for Labels {
    fn drop(&mut self) {
        let containers = self.containers();
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        for v in self.volumes() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &v])
                .output();
        }
        // Images a test built carry its label too (a rebuilt tag leaves the old image untagged).
        for i in docker_lines(&["images", "-q", "--filter", &self.filter()]) {
            let _ = Command::new("docker").args(["rmi", "-f", &i]).output();
        }
    }
}

pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

pub fn uuid() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A project in a temporary folder, with its own cache volume and labels.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub labels: Labels,
    pub volume: String,
}

impl Project {
    /// A copy of examples/flamenco-mini without any built outputs, its cache volume renamed.
    pub fn example() -> Project {
        let labels = Labels::new();
        let volume = format!("fbtest-{}", labels.value);
        let dir = tempfile::tempdir().unwrap();
        let src = repo().join("examples/flamenco-mini");
        let files = Command::new("git")
            .arg("-C")
            .arg(&src)
            .args([
                "ls-files",
                "--cached",
                "--others",
                "--exclude-standard",
                ".",
            ])
            .output()
            .unwrap();
        for rel in String::from_utf8_lossy(&files.stdout).lines() {
            let to = dir.path().join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(src.join(rel), &to).unwrap();
        }
        let cfg = dir.path().join("flamenco-build.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(
                "../../dockerfiles",
                &repo().join("dockerfiles").display().to_string(),
            )
            .replace(
                "[settings]\n",
                &format!("[settings]\ncache_volume = \"{volume}\"\n"),
            );
        std::fs::write(&cfg, text).unwrap();
        Project {
            dir,
            labels,
            volume,
        }
    }

    /// A project with the given tasks on the Go toolchain image.
    pub fn tiny(tasks: &str) -> Project {
        let labels = Labels::new();
        let volume = format!("fbtest-{}", labels.value);
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[settings]\ncache_volume = \"{volume}\"\n\n[toolchains.go]\nimage = \"flamenco-build/go:1.23\"\n\n{tasks}"
        );
        std::fs::write(dir.path().join("flamenco-build.toml"), text).unwrap();
        Project {
            dir,
            labels,
            volume,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `flamenco-build -C <project> --label <test label> ARGS…`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flamenco-build"));
        c.arg("-C")
            .arg(self.path())
            .arg("--label")
            .arg(self.labels.arg())
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run flamenco-build"))
    }

    /// [`Project::cmd`] with `--json` after `args` (a build mode and its options).
    pub fn build_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(args);
        c.arg("--json");
        c
    }

    /// Runs a build mode with `--json` and reads what each task did from its summary.
    pub fn build(&self, args: &[&str]) -> Built {
        Run::from(self.build_cmd(args).output().expect("run flamenco-build")).json()
    }
}

/// The outcome of one invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The run of a build given `--json`, with its summary parsed (fails the test if there is none).
    #[track_caller]
    pub fn json(self) -> Built {
        let summary = serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "no --json summary on stdout ({e}), exit {}\nstdout:\n{}\nstderr:\n{}",
                self.code, self.stdout, self.stderr
            )
        });
        Built { run: self, summary }
    }
}

/// A build run with `--json`: the summary (one document on stdout) says how each task ended, so
/// tests need not read it from progress lines. Progress, `--explain` lines and the failure line
/// are then on `run.stderr`.
pub struct Built {
    pub run: Run,
    pub summary: serde_json::Value,
}

impl Built {
    #[track_caller]
    pub fn ok(self) -> Built {
        Built {
            run: self.run.ok(),
            summary: self.summary,
        }
    }

    /// The summary's entry for `task`: status, key, cache, `times_ms`, `started_ms`, `error`.
    #[track_caller]
    pub fn task_json(&self, task: &str) -> &serde_json::Value {
        self.summary["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["task"] == task))
            .unwrap_or_else(|| panic!("no task `{task}` in the summary:\n{}", self.run.all()))
    }

    /// "up-to-date" | "restored" | "built" | "ran" (`build`, no cache) | "failed" | "cancelled"
    /// | "skipped" | "not-started".
    #[track_caller]
    pub fn status(&self, task: &str) -> &str {
        self.task_json(task)["status"]
            .as_str()
            .expect("a task's status is a string")
    }

    /// (task, status) of every task of the plan, in plan order.
    pub fn tasks(&self) -> Vec<(&str, &str)> {
        let all = self.summary["tasks"].as_array().expect("a task list");
        all.iter()
            .map(|t| (t["task"].as_str().unwrap(), t["status"].as_str().unwrap()))
            .collect()
    }

    /// The task ran in a container (a cache miss, or `build`, which has no cache).
    #[track_caller]
    pub fn ran(&self, task: &str) -> bool {
        matches!(self.status(task), "built" | "ran")
    }

    /// Its outputs were in place already.
    #[track_caller]
    pub fn up_to_date(&self, task: &str) -> bool {
        self.status(task) == "up-to-date"
    }

    /// Its outputs were put in place from the cache.
    #[track_caller]
    pub fn restored(&self, task: &str) -> bool {
        self.status(task) == "restored"
    }

    /// A cache hit: up to date or restored, no container.
    #[track_caller]
    pub fn cache_hit(&self, task: &str) -> bool {
        self.up_to_date(task) || self.restored(task)
    }

    /// Finished well, whichever way.
    #[track_caller]
    pub fn done(&self, task: &str) -> bool {
        self.ran(task) || self.cache_hit(task)
    }
}

/// Counts the engine's container events carrying a test's label between two moments.
pub struct Events {
    since: String,
}

impl Events {
    pub fn start() -> Events {
        // The engine's clock, in seconds with fractions, so that events of this test only count.
        let since = format!("{:.3}", now_secs());
        std::thread::sleep(std::time::Duration::from_millis(20));
        Events { since }
    }

    /// Actions (create, extract-to-dir, start, …) of containers with `labels`, until now.
    pub fn actions(&self, labels: &Labels) -> Vec<String> {
        self.query(labels, &[], "{{.Action}}")
    }

    /// "task exit-code" of every container with `labels` that died (stopped or ended), until
    /// now: 0 means its command finished, anything else that it was stopped or failed.
    pub fn exits(&self, labels: &Labels) -> Vec<String> {
        self.query(
            labels,
            &["--filter", "event=die"],
            "{{index .Actor.Attributes \"dev.flamenco-build.task\"}} {{.Actor.Attributes.exitCode}}",
        )
    }

    /// The engine's container events with `labels` (and `filters`) since the start, one line each.
    fn query(&self, labels: &Labels, filters: &[&str], format: &str) -> Vec<String> {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let until = format!("{:.3}", now_secs());
        let filter = labels.filter();
        let mut args = vec![
            "events",
            "--since",
            &self.since,
            "--until",
            &until,
            "--filter",
            "type=container",
            "--filter",
            &filter,
        ];
        args.extend_from_slice(filters);
        args.extend_from_slice(&["--format", format]);
        docker_lines(&args)
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A build running in the background, its output read as it comes (so a full pipe never stalls
/// it).
pub struct Spawned {
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Spawned {
    pub fn new(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flamenco-build");
        let reader = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = r.read_to_end(&mut b);
                String::from_utf8_lossy(&b).into_owned()
            })
        };
        let out = reader(Box::new(child.stdout.take().unwrap()));
        let err = reader(Box::new(child.stderr.take().unwrap()));
        Spawned {
            child,
            out: Some(out),
            err: Some(err),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits at most `limit`; None when it is still running then. (Callers use it as a guard
    /// against a hang, with a generous limit, or to see that a build is still blocked.)
    pub fn wait_for(&mut self, limit: Duration) -> Option<Run> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(self.collect(status));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn collect(&mut self, status: ExitStatus) -> Run {
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.out.take().unwrap().join().unwrap(),
            stderr: self.err.take().unwrap().join().unwrap(),
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for it to end, however long that takes.
    pub fn wait(mut self) -> Run {
        let status = self.child.wait().unwrap();
        self.collect(status)
    }

    /// SIGKILL, and reap it (a zombie would still count as a live process for the next run).
    pub fn sigkill(&mut self) -> Run {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let status = self.child.wait().unwrap();
        self.collect(status)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
