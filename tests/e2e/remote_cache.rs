//! The shared remote cache against real servers: what one clone built, another clone with its own
//! empty local cache restores — on BuildGrid (REAPI gRPC), nginx (Bazel's HTTP protocol), an S3
//! server and Redis — and every fault a remote tier can have ends in a correct build with exactly
//! one warning.

use std::path::Path;
use std::process::Command;

use crate::remote_engine::{IMAGES, SecondEngine};
use crate::servers::{BuildGrid, Flaky, Nginx, Redis, S3, Silent, ensure_installed};
use crate::support::{Built, Events, Project, require_toolchain_images};

/// `(path, sha256)` of every file under the example's outputs, sorted.
fn outputs_of(p: &Project) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for out in [
        "pkg/api/openapi.gen.go",
        "addon/flamenco/manager",
        "web/app/src/manager-api",
        "web/static",
        "flamenco-manager",
        "flamenco-worker",
    ] {
        collect(p.path(), &p.path().join(out), &mut v);
    }
    v.sort();
    v
}

fn collect(root: &Path, path: &Path, v: &mut Vec<(String, String)>) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let rel = path.strip_prefix(root).unwrap().display().to_string();
    if meta.is_dir() {
        v.push((rel, "dir".into()));
        for e in std::fs::read_dir(path).unwrap() {
            collect(root, &e.unwrap().path(), v);
        }
    } else if meta.file_type().is_symlink() {
        v.push((rel, format!("link {:?}", std::fs::read_link(path).unwrap())));
    } else {
        let bytes = std::fs::read(path).unwrap();
        v.push((rel, flamenco_build::fingerprint::hash_bytes(&bytes)));
    }
}

/// The example with `[remote]` settings added.
fn example_with(remote: &str) -> Project {
    let p = Project::example();
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n[remote]\n{remote}\n")).unwrap();
    p
}

fn warnings(b: &Built) -> Vec<String> {
    b.run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(String::from)
        .collect()
}

fn tier(b: &Built, task: &str) -> String {
    b.task_json(task)["tier"].as_str().unwrap_or("").to_string()
}

/// Clone A uploads; clone B, with its own empty local cache, restores every task from the remote
/// tier without creating a container, byte for byte.
fn two_machines(remote: &str, env: &[(String, String)], engine_b: Option<&str>) {
    require_toolchain_images();
    // A generous timeout: these tests are about sharing, and on a loaded test machine the default
    // (5 s plus 1 s per MiB) may switch the tier off, which the fault tests cover on their own.
    let remote = &format!("timeout = \"60s\"\n{remote}");
    let a = example_with(remote);
    let mut cmd = a.build_cmd(&["build-optimized", "--remote-upload"]);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let built = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    assert!(warnings(&built).is_empty(), "{}", built.run.stderr);
    let b = example_with(remote);
    let events = Events::start();
    let mut cmd = b.build_cmd(&["build-optimized"]);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(host) = engine_b {
        cmd.env("DOCKER_HOST", host);
    }
    let got = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    for (task, status) in got.tasks() {
        assert_eq!(status, "restored", "{task}: {}", got.run.stderr);
        assert_eq!(tier(&got, task), "remote", "{task}");
    }
    assert!(warnings(&got).is_empty(), "{}", got.run.stderr);
    // For the record (the closing note's figures): what B asked of the tier.
    eprintln!("remote tier on B: {}", got.summary["remote"]);
    assert!(got.summary["remote"]["bytes_down"].as_u64().unwrap() > 0);
    assert!(events.actions(&b.labels).is_empty(), "no container on B");
    assert_eq!(outputs_of(&a), outputs_of(&b));
    // Read through into B's local cache: the next build there is up to date from the local tier.
    let mut cmd = b.build_cmd(&["build-optimized"]);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(host) = engine_b {
        cmd.env("DOCKER_HOST", host);
    }
    let again = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    for (task, status) in again.tasks() {
        assert_eq!(status, "up-to-date", "{task}");
        assert_eq!(tier(&again, task), "local", "{task}");
    }
}

#[test]
fn two_machines_share_the_cache_over_grpc_on_buildgrid() {
    ensure_installed();
    let server = BuildGrid::start_cache();
    two_machines(&format!("cache = \"{}\"", server.url()), &[], None);
}

#[test]
fn two_machines_share_the_cache_over_http_on_nginx_with_b_on_another_engine() {
    ensure_installed();
    require_toolchain_images();
    let server = Nginx::start();
    let engine = SecondEngine::start();
    for image in IMAGES {
        engine.load(image);
    }
    two_machines(
        &format!("cache = \"{}\"", server.url()),
        &[],
        Some(&engine.host),
    );
}

#[test]
fn two_machines_share_the_cache_over_s3() {
    ensure_installed();
    let server = S3::start();
    let remote = format!(
        "cache = \"{}\"\ns3_endpoint = \"{}\"\ns3_region = \"us-east-1\"",
        server.url(),
        server.endpoint()
    );
    two_machines(&remote, &server.env(), None);
}

/// A blob bigger than two multipart parts (5 MiB each) goes up to S3 in parts and comes back
/// whole on another clone.
#[test]
fn a_blob_of_several_parts_goes_through_s3_and_back() {
    ensure_installed();
    require_toolchain_images();
    let server = S3::start();
    let tasks = format!(
        r#"[tasks.big]
toolchain = "go"
run = "mkdir -p out && head -c 12000000 /dev/urandom > out/big.bin"
outputs = ["out"]

[remote]
cache = "{}"
s3_endpoint = "{}"
s3_region = "us-east-1"
"#,
        server.url(),
        server.endpoint()
    );
    let env = server.env();
    let a = Project::tiny(&tasks);
    let mut cmd = a.build_cmd(&["build-optimized", "--remote-upload"]);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let up = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    assert!(warnings(&up).is_empty(), "{}", up.run.stderr);
    assert!(up.summary["remote"]["bytes_up"].as_u64().unwrap() >= 12_000_000);
    let b = Project::tiny(&tasks);
    let mut cmd = b.build_cmd(&["build-optimized"]);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let got = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    assert_eq!(got.tasks(), [("big", "restored")]);
    assert_eq!(tier(&got, "big"), "remote");
    assert!(warnings(&got).is_empty(), "{}", got.run.stderr);
    let read = |p: &Project| std::fs::read(p.path().join("out/big.bin")).unwrap();
    let (sent, back) = (read(&a), read(&b));
    assert_eq!(sent.len(), 12_000_000);
    assert!(
        sent == back,
        "the restored blob differs from the uploaded one"
    );
}

#[test]
fn two_machines_share_the_cache_over_redis() {
    ensure_installed();
    let server = Redis::start();
    two_machines(&format!("cache = \"{}\"", server.url()), &[], None);
}

/// A two-task project whose tasks write known bytes; `a` feeds `b`.
fn tiny(remote: &str) -> Project {
    Project::tiny(&format!(
        r#"[tasks.a]
toolchain = "go"
run = "mkdir -p out-a && echo alpha-$(cat in.txt) > out-a/a.txt && head -c 300000 /dev/zero > out-a/big.bin"
inputs = ["in.txt"]
outputs = ["out-a"]

[tasks.b]
toolchain = "go"
deps = ["a"]
run = "mkdir -p out-b && cat out-a/a.txt out-a/a.txt > out-b/b.txt"
outputs = ["out-b"]

[remote]
{remote}
"#
    ))
}

/// Uploads the tiny project's results from a first clone; returns a second, fresh clone.
fn uploaded(remote: &str, env: &[(&str, &str)]) -> Project {
    require_toolchain_images();
    let a = tiny(remote);
    a.write("in.txt", "1");
    let mut cmd = a.build_cmd(&["build-incremental", "--remote-upload"]);
    cmd.envs(env.iter().copied());
    let built = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    assert!(warnings(&built).is_empty(), "{}", built.run.stderr);
    let b = tiny(remote);
    b.write("in.txt", "1");
    b
}

/// B's build is correct (both tasks' outputs as they should be) and told exactly one warning,
/// which says `what`.
#[track_caller]
fn correct_with_one_warning(b: &Project, got: &Built, what: &str) {
    let w = warnings(got);
    assert_eq!(w.len(), 1, "exactly one warning:\n{}", got.run.stderr);
    assert!(
        w[0].contains(what),
        "the warning should say {what:?}: {}",
        w[0]
    );
    eprintln!("the one warning: {}", w[0]);
    assert_eq!(
        std::fs::read_to_string(b.path().join("out-a/a.txt")).unwrap(),
        "alpha-1\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.path().join("out-b/b.txt")).unwrap(),
        "alpha-1\nalpha-1\n"
    );
    assert_eq!(
        std::fs::metadata(b.path().join("out-a/big.bin"))
            .unwrap()
            .len(),
        300_000
    );
}

/// The file nginx keeps for the blob of `out-a/a.txt` ("alpha-1\n").
fn blob_file(server: &Nginx) -> std::path::PathBuf {
    let sha = flamenco_build::fingerprint::hash_bytes(b"alpha-1\n");
    let p = server.data_dir().join("cas").join(&sha);
    assert!(p.is_file(), "nginx holds {}", p.display());
    p
}

#[test]
fn a_stopped_server_costs_one_warning() {
    ensure_installed();
    let mut server = Nginx::start();
    let b = uploaded(&format!("cache = \"{}\"", server.url()), &[]);
    server.stop();
    let got = b.build(&["build-incremental"]).ok();
    assert!(got.ran("a") && got.ran("b"));
    correct_with_one_warning(&b, &got, "unavailable");
}

#[test]
fn a_server_that_never_answers_costs_one_timeout() {
    ensure_installed();
    let server = Silent::start();
    let b = tiny(&format!(
        "cache = \"{}\"\ntimeout = \"1s\"",
        server.url_http()
    ));
    b.write("in.txt", "1");
    let got = b.build(&["build-incremental"]).ok();
    correct_with_one_warning(&b, &got, "did not answer within");
    // Switched off after the first timeout: the second task never asked.
    assert!(
        server.connections() <= 2,
        "{} connections: the tier was asked again after a timeout",
        server.connections()
    );
}

#[test]
fn a_server_answering_500_costs_one_warning() {
    ensure_installed();
    let server = Flaky::start(500);
    let b = tiny(&format!("cache = \"{}\"", server.url_http()));
    b.write("in.txt", "1");
    let got = b.build(&["build-incremental", "--remote-upload"]).ok();
    correct_with_one_warning(&b, &got, "unavailable");
    assert!(
        server.requests() <= 3,
        "{} requests after the tier went off",
        server.requests()
    );
}

#[test]
fn a_server_answering_401_says_so_once() {
    ensure_installed();
    let server = Flaky::start(401);
    let b = tiny(&format!(
        "cache = \"{}\"\nheaders_env = {{ Authorization = \"FB_TEST_AUTH\" }}",
        server.url_http()
    ));
    b.write("in.txt", "1");
    let mut cmd = b.build_cmd(&["build-incremental"]);
    cmd.env("FB_TEST_AUTH", "Bearer very-secret-token");
    let got = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    correct_with_one_warning(&b, &got, "refused the credentials");
    assert!(!got.run.all().contains("very-secret-token"));
}

#[test]
fn a_truncated_blob_is_not_restored() {
    ensure_installed();
    let server = Nginx::start();
    let b = uploaded(&format!("cache = \"{}\"", server.url()), &[]);
    let blob = blob_file(&server);
    std::fs::write(&blob, "alph").unwrap();
    let got = b.build(&["build-incremental"]).ok();
    assert!(got.ran("a"), "a's blob is short: a runs");
    correct_with_one_warning(&b, &got, "does not match its SHA-256");
}

#[test]
fn a_poisoned_blob_is_not_restored() {
    ensure_installed();
    let server = Nginx::start();
    let b = uploaded(&format!("cache = \"{}\"", server.url()), &[]);
    std::fs::write(blob_file(&server), "evil-1\n\n").unwrap();
    let got = b.build(&["build-incremental"]).ok();
    assert!(got.ran("a"));
    correct_with_one_warning(&b, &got, "does not match its SHA-256");
}

#[test]
fn a_result_whose_blob_is_missing_is_a_miss() {
    ensure_installed();
    let server = Nginx::start();
    let b = uploaded(&format!("cache = \"{}\"", server.url()), &[]);
    std::fs::remove_file(blob_file(&server)).unwrap();
    let got = b.build(&["build-incremental"]).ok();
    assert!(got.ran("a"));
    assert_eq!(tier(&got, "b"), "remote", "b's blobs are all there");
    correct_with_one_warning(&b, &got, "does not hold");
}

#[test]
fn an_unsigned_entry_is_ignored_when_a_sign_key_is_set() {
    ensure_installed();
    let server = Nginx::start();
    let url = server.url();
    // A writes without signing (say, a pull request that could write to the bucket).
    let _a = uploaded(&format!("cache = \"{url}\""), &[]);
    let b = tiny(&format!(
        "cache = \"{url}\"\nsign_key_env = \"FB_TEST_SIGN_KEY\""
    ));
    b.write("in.txt", "1");
    let mut cmd = b.build_cmd(&["build-incremental"]);
    cmd.env("FB_TEST_SIGN_KEY", "k3y");
    let got = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    assert!(got.ran("a") && got.ran("b"));
    correct_with_one_warning(&b, &got, "not signed");
}

#[test]
fn signed_entries_restore() {
    ensure_installed();
    let server = Nginx::start();
    let remote = format!(
        "cache = \"{}\"\nsign_key_env = \"FB_TEST_SIGN_KEY\"",
        server.url()
    );
    let b = uploaded(&remote, &[("FB_TEST_SIGN_KEY", "k3y")]);
    let mut cmd = b.build_cmd(&["build-incremental"]);
    cmd.env("FB_TEST_SIGN_KEY", "k3y");
    let got = crate::support::Run::from(cmd.output().unwrap()).json().ok();
    assert_eq!(tier(&got, "a"), "remote");
    assert_eq!(tier(&got, "b"), "remote");
    assert!(warnings(&got).is_empty(), "{}", got.run.stderr);
    let listed = Command::new("ls")
        .arg(server.data_dir().join("ac"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 2);
}

#[test]
fn recache_overwrites_a_poisoned_entry_on_the_server() {
    ensure_installed();
    let server = Nginx::start();
    let remote = format!("cache = \"{}\"", server.url());
    let b = uploaded(&remote, &[]);
    std::fs::write(blob_file(&server), "evil-1\n\n").unwrap();
    // The poisoned blob is still "there" (HEAD says so): only --recache sends it again.
    let fixed = b
        .build(&["build-incremental", "--recache", "--remote-upload"])
        .ok();
    assert!(
        fixed.ran("a") && fixed.ran("b"),
        "--recache runs every task"
    );
    assert_eq!(std::fs::read(blob_file(&server)).unwrap(), b"alpha-1\n");
    let c = tiny(&remote);
    c.write("in.txt", "1");
    let got = c.build(&["build-incremental"]).ok();
    assert_eq!(tier(&got, "a"), "remote");
    assert!(warnings(&got).is_empty(), "{}", got.run.stderr);
}

#[test]
fn cache_status_says_whether_the_remote_answers_without_credentials() {
    ensure_installed();
    let mut server = Nginx::start();
    let url = server.url().replace("http://", "http://ci:hunter2@");
    let p = tiny(&format!("cache = \"{url}\"\nupload = true"));
    let status = |p: &Project| -> serde_json::Value {
        let r = p.run(&["cache-status", "--json"]).ok();
        assert!(!r.all().contains("hunter2"), "{}", r.all());
        serde_json::from_str(&r.stdout).unwrap()
    };
    let up = status(&p);
    assert_eq!(up["remote"]["reachable"], true, "{up}");
    assert_eq!(up["remote"]["upload"], true);
    assert_eq!(
        up["remote"]["server"],
        server.url().replace("http://", "http://***@")
    );
    server.stop();
    let down = status(&p);
    assert_eq!(down["remote"]["reachable"], false, "{down}");
    let text = p.run(&["cache-status"]).ok();
    assert!(text.stdout.contains("Reachable: no"), "{}", text.stdout);
}

#[test]
fn local_hits_fill_the_remote_when_uploads_are_on() {
    ensure_installed();
    require_toolchain_images();
    let server = Nginx::start();
    let remote = format!("cache = \"{}\"", server.url());
    // A CI runner that keeps its local cache: built once without uploads...
    let a = tiny(&remote);
    a.write("in.txt", "1");
    a.build(&["build-incremental"]).ok();
    // ...then with uploads: nothing runs, and what it holds goes up.
    let again = a.build(&["build-incremental", "--remote-upload"]).ok();
    assert!(again.up_to_date("a") && again.up_to_date("b"));
    assert!(warnings(&again).is_empty(), "{}", again.run.stderr);
    let b = tiny(&remote);
    b.write("in.txt", "1");
    let got = b.build(&["build-incremental"]).ok();
    assert_eq!(tier(&got, "a"), "remote");
    assert_eq!(tier(&got, "b"), "remote");
    assert_eq!(
        std::fs::read_to_string(b.path().join("out-b/b.txt")).unwrap(),
        "alpha-1\nalpha-1\n"
    );
}
