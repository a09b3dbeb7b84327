//! Issue 14: the built-in graph builds today's Flamenco. A Flamenco-shaped fixture of our own
//! (tests/fixtures/flamenco-shape: go.mod with `go 1.26.2` and a `tool` block) checks offline what
//! a real checkout needs: the Go image follows go.mod, the generators and the add-on zip run; the
//! Node image carries Yarn 1; a task that cannot reach the network says so.

use std::path::Path;
use std::process::Command;

use crate::support::{Project, repo, require_named_images, require_toolchain_images};

/// The fixture in a temporary project with no flamenco-build.toml (so the built-in graph), plus
/// what the tests add and the repository never holds: Flamenco's OpenAPI spec from ../shared and
/// the openapi-generator jar from the Java image, where Flamenco commits its own.
fn flamenco_shape() -> Project {
    let p = Project::tiny("");
    std::fs::remove_file(p.path().join("flamenco-build.toml")).unwrap();
    copy_tree(&repo().join("tests/fixtures/flamenco-shape"), p.path());
    let spec = repo().join("../shared/fixtures/flamenco-openapi.yaml");
    std::fs::create_dir_all(p.path().join("pkg/api")).unwrap();
    std::fs::copy(&spec, p.path().join("pkg/api/flamenco-openapi.yaml"))
        .unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
    copy_out_of_image(
        "flamenco-build/java:11",
        "/opt/openapi-generator/openapi-generator-cli.jar",
        &p.path().join("addon/openapi-generator-cli.jar"),
    );
    p
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `docker create` + `docker cp`: a file of an image, without running it.
fn copy_out_of_image(image: &str, path: &str, to: &Path) {
    let out = Command::new("docker")
        .args(["create", image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cp = Command::new("docker")
        .args(["cp", &format!("{id}:{path}")])
        .arg(to)
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
}

/// `docker run` of a command in an image with `stdin` as its input and no network.
fn run_in(image: &str, script: &str, stdin: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            image,
            "sh",
            "-c",
            script,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_go_image_follows_go_mod_and_reads_its_tool_block() {
    require_named_images(&["go:1.26"]);
    let p = flamenco_shape();
    let graph = p.run(&["graph"]).ok();
    for task in ["generate-go", "addon-zip", "manager", "worker"] {
        let block = graph
            .stdout
            .split("\n")
            .skip_while(|l| !l.starts_with(&format!("{task} [go]")))
            .take(4)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains("image: flamenco-build/go:1.26 (go 1.26.2 in go.mod)"),
            "{task}:\n{}",
            graph.stdout
        );
    }
    let go_mod = std::fs::read(p.path().join("go.mod")).unwrap();
    let edit = "mkdir /tmp/m && cd /tmp/m && cat > go.mod && go version && go mod edit -json";
    let (ok, out) = run_in("flamenco-build/go:1.26", edit, &go_mod);
    assert!(ok, "{out}");
    let json = &out[out.find('{').unwrap_or(0)..];
    let parsed: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(parsed["Go"], "1.26.2", "{out}");
    assert_eq!(parsed["Tool"].as_array().map(Vec::len), Some(2), "{out}");
    // What issue 14 saw with the old default: Go 1.23 cannot read it.
    let (ok, out) = run_in("flamenco-build/go:1.23", edit, &go_mod);
    assert!(!ok && out.contains("unknown block type: tool"), "{out}");
}

#[test]
fn the_builtin_graphs_offline_tasks_run_on_the_fixture() {
    require_named_images(&["go:1.26"]);
    let p = flamenco_shape();
    let targets = ["generate-py", "generate-js", "addon-zip"];
    let mut args = vec!["build-optimized"];
    args.extend(targets);
    let b = p.build(&args).ok();
    for t in targets {
        assert!(b.ran(t), "{t}: {}", b.run.all());
    }
    assert!(
        p.path()
            .join("addon/flamenco/manager/__init__.py")
            .is_file()
    );
    assert!(p.path().join("web/app/src/manager-api/index.js").is_file());
    let zip = std::fs::read(p.path().join("build/flamenco-addon.zip")).unwrap();
    let names = String::from_utf8_lossy(&zip);
    for name in ["flamenco/__init__.py", "flamenco/manager/__init__.py"] {
        assert!(names.contains(name), "{name} not in the add-on zip");
    }
}

#[test]
fn the_node_image_carries_yarn_classic() {
    require_toolchain_images();
    let script = "yarn --version && mkdir /tmp/p && cd /tmp/p && \
                  echo '{\"name\":\"p\",\"version\":\"1.0.0\",\"scripts\":{\"b\":\"echo built\"}}' > package.json && \
                  yarn install --frozen-lockfile --offline && yarn b";
    let (ok, out) = run_in("flamenco-build/node:22", script, b"");
    assert!(ok, "{out}");
    assert!(out.starts_with("1.22."), "{out}");
    assert!(out.contains("built"), "{out}");
}

/// `.invalid` never resolves (RFC 6761), online or not: the failure is the one an offline
/// machine gives every host.
#[test]
fn a_task_that_cannot_reach_the_network_says_so_and_names_the_host() {
    require_toolchain_images();
    let p = Project::tiny(
        r#"
[tasks.fetch]
toolchain = "go"
run = "mkdir -p /tmp/m && cd /tmp/m && go mod init m && GOPROXY=https://proxy.invalid GOFLAGS=-mod=mod go get example.org/never@v1.0.0"
outputs = ["x"]
network = true
"#,
    );
    let b = p.build(&["build"]);
    assert_eq!(b.run.code, 1, "{}", b.run.all());
    // go's own exit code, for a dashboard.
    assert_eq!(b.task_json("fetch")["exit_code"], 1, "{}", b.summary);
    let error = b.task_json("fetch")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let last = error.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("offline: task `fetch` needs the network (network = true)")
            && last.contains("proxy.invalid (its name did not resolve)"),
        "{error}"
    );
    assert!(
        b.run.stderr.contains("offline: task `fetch`"),
        "{}",
        b.run.stderr
    );
}
