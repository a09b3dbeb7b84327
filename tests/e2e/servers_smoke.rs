//! Each test server, started and used with a real request: the remote-cache tests can trust them.

use crate::servers::{
    BuildGrid, Field, Flaky, Nginx, Postgres, Redis, S3, Silent, fields, get_capabilities, request,
};
use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// ServerCapabilities.cache_capabilities, .execution_capabilities; ExecutionCapabilities.exec_enabled.
const CACHE_CAPABILITIES: u64 = 1;
const EXECUTION_CAPABILITIES: u64 = 2;
const EXEC_ENABLED: u64 = 2;

fn field(message: &[u8], number: u64) -> Option<Field<'_>> {
    fields(message)?
        .into_iter()
        .find(|(n, _)| *n == number)
        .map(|(_, f)| f)
}

#[test]
fn nginx_stores_and_serves_a_blob() {
    let mut nginx = Nginx::start();
    eprintln!("nginx up in {:?} at {}", nginx.startup(), nginx.url());
    let put = request(nginx.port(), "PUT", "/cache/cas/abc", b"blob bytes").unwrap();
    assert!(matches!(put.status, 201 | 204), "PUT: {put:?}");
    let get = request(nginx.port(), "GET", "/cache/cas/abc", b"").unwrap();
    assert_eq!((get.status, get.body.as_slice()), (200, &b"blob bytes"[..]));
    let head = request(nginx.port(), "HEAD", "/cache/ac/missing", b"").unwrap();
    assert_eq!(head.status, 404);
    let stored = std::fs::read(nginx.data_dir().join("cas/abc")).unwrap();
    assert_eq!(stored, b"blob bytes");
    let log = std::fs::read_to_string(nginx.access_log()).unwrap();
    assert!(log.contains("PUT /cache/cas/abc"), "access log: {log}");
    assert!(nginx.running());
}

#[test]
fn redis_answers_ping() {
    let mut redis = Redis::start();
    eprintln!("redis up in {:?} at {}", redis.startup(), redis.url());
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port().to_string(), "PING"])
        .output()
        .expect("run redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
    assert!(redis.running());
}

#[test]
fn s3_stores_and_serves_an_object_signed() {
    let mut s3 = S3::start();
    eprintln!("S3 (moto) up in {:?} at {}", s3.startup(), s3.endpoint());
    assert_eq!(s3.url(), "s3://flamenco-cache/ci");
    let object = format!("{}/flamenco-cache/ci/cas/abc", s3.endpoint());
    let env = s3.env();
    let key = |name: &str| env.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let user = format!(
        "{}:{}",
        key("AWS_ACCESS_KEY_ID"),
        key("AWS_SECRET_ACCESS_KEY")
    );
    // SigV4 as a real client signs; octet-stream, or moto reads the body as a form.
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
                &user,
            ])
            .args(["-H", "Content-Type: application/octet-stream"])
            .args(extra)
            .arg(&object)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    curl(&["-X", "PUT", "--data-binary", "object bytes"]);
    assert_eq!(curl(&[]), b"object bytes");
    assert!(s3.running());
}

#[test]
fn buildgrid_cache_answers_get_capabilities() {
    let mut bg = BuildGrid::start_cache();
    eprintln!("BuildGrid (cache) up in {:?} at {}", bg.startup(), bg.url());
    let caps = get_capabilities(bg.port(), Duration::from_secs(10)).unwrap();
    assert!(field(&caps, CACHE_CAPABILITIES).is_some(), "{caps:?}");
    assert!(bg.running(), "{}", bg.log_tail());
}

#[test]
fn buildgrid_exec_runs_on_postgres() {
    let mut pg = Postgres::start();
    eprintln!("PostgreSQL (with migrations) up in {:?}", pg.startup());
    let mut bg = BuildGrid::start_exec(&pg);
    eprintln!("BuildGrid (exec) up in {:?} at {}", bg.startup(), bg.url());
    let caps = get_capabilities(bg.port(), Duration::from_secs(10)).unwrap();
    let Some(Field::Bytes(exec)) = field(&caps, EXECUTION_CAPABILITIES) else {
        panic!("no execution capabilities: {caps:?}");
    };
    assert_eq!(
        field(exec, EXEC_ENABLED),
        Some(Field::Varint(1)),
        "execution not enabled"
    );
    assert!(bg.running(), "{}", bg.log_tail());
    assert!(pg.running());
}

#[test]
fn silent_accepts_and_never_answers() {
    let silent = Silent::start();
    assert!(silent.url_grpc().starts_with("grpc://127.0.0.1:"));
    assert!(silent.url_http().ends_with("/cache"));
    let mut conn = TcpStream::connect(("127.0.0.1", silent.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = conn.read(&mut [0u8; 1]).unwrap_err();
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert_eq!(silent.connections(), 1);
}

#[test]
fn flaky_answers_every_request_with_its_status() {
    for status in [500, 401] {
        let flaky = Flaky::start(status);
        assert!(flaky.url_http().ends_with("/cache"));
        let put = request(flaky.port(), "PUT", "/cache/cas/abc", &[7u8; 100_000]).unwrap();
        let get = request(flaky.port(), "GET", "/cache/ac/key", b"").unwrap();
        assert_eq!((put.status, get.status), (status, status));
        assert_eq!(flaky.requests(), 2);
    }
}
