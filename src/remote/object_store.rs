//! Object stores and key-value stores through opendal (sccache's backend layer), in Bazel's layout
//! under a prefix: `s3://bucket/prefix`, `gcs://bucket/prefix`, `azblob://container/prefix`,
//! `redis://[user:password@]host:port[/db[/prefix]]` and `ghac://[version]` (the GitHub Actions
//! cache). Credentials come from each service's usual environment, never from the URL (Redis's
//! password excepted). No retry layer: the guard decides what a failure costs.

use std::path::Path;

use bytes::BytesMut;
use futures_util::{StreamExt, stream};
use opendal::{ErrorKind, Operator, Writer, services};
use tokio::io::AsyncReadExt;

use super::kv::{ByteStream, KvBackend};
use super::userinfo::{Credentials, UrlParts};
use super::{RemoteError, RemoteSettings, redact};

/// Multipart uploads go in parts of this size, S3's minimum part (the writer holds about two: one
/// filling, one on the wire; 8 MiB parts put a 200 MB upload over its 50 MB of RSS); a smaller
/// object goes up in one request.
const CHUNK: usize = 5 * 1024 * 1024;
/// S3 takes at most this many parts: a blob too big for that many 5 MiB parts (48.8 GiB) goes up
/// in larger ones.
const MAX_PARTS: u64 = 10_000;
/// A file is read and handed to the writer in pieces of this size: memory stays flat.
const PIECE: usize = 1024 * 1024;
/// What the uploads in flight may hold in memory together, in KiB: one multipart upload (counted
/// as three chunks: one filling, one waiting, one on the wire) and a few small objects; never two
/// multipart uploads at once.
const MEMORY_KIB: u32 = 20 * 1024;
/// Redis takes a value in one command that must be answered within redis-rs's fixed 500 ms, and
/// the value is held whole (and copied) on the way: larger blobs are not stored there.
const REDIS_MAX_OBJECT: u64 = 32 * 1024 * 1024;
/// The GitHub Actions cache's folder for our objects.
const GHAC_ROOT: &str = "flamenco-build";

pub(crate) struct OpendalBackend {
    op: Operator,
    server: String,
    /// The GitHub Actions cache takes each key once: "already there" is success.
    write_once: bool,
    /// Redis holds whole values; other stores stream in chunks.
    whole_values: bool,
    /// Keeps the memory of concurrent uploads bounded (the storage sends many files at once).
    memory: tokio::sync::Semaphore,
}

/// A secret setting; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A cache URL as one of opendal's services. `Debug` shows no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Service {
    S3 {
        bucket: String,
        root: String,
        endpoint: Option<String>,
        region: String,
    },
    Gcs {
        bucket: String,
        root: String,
    },
    Azblob {
        container: String,
        root: String,
        account: Option<String>,
        key: Option<Secret>,
        endpoint: Option<String>,
    },
    Redis {
        endpoint: String,
        credentials: Option<Credentials>,
        db: i64,
        root: String,
    },
    Ghac {
        version: Option<String>,
    },
}

impl OpendalBackend {
    pub(crate) fn new(settings: &RemoteSettings) -> Result<OpendalBackend, RemoteError> {
        let server = settings.shown();
        let unusable = |reason: String| RemoteError::Unavailable {
            server: server.clone(),
            reason,
        };
        let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        let service = parse(settings, env).map_err(unusable)?;
        let write_once = matches!(service, Service::Ghac { .. });
        let whole_values = matches!(service, Service::Redis { .. });
        let op = operator(service).map_err(|e| unusable(summary(&e)))?;
        Ok(OpendalBackend {
            op,
            server,
            write_once,
            whole_values,
            memory: tokio::sync::Semaphore::new(MEMORY_KIB as usize),
        })
    }

    /// The memory an upload of `size` bytes takes, in KiB, at most the whole budget: about three
    /// times what the writer holds at once.
    fn memory_kib(&self, size: u64) -> u32 {
        let held = match self.whole_values {
            true => size,
            false => size.min(chunk_for(size) as u64),
        };
        (held.saturating_mul(3) / 1024).clamp(1, MEMORY_KIB as u64) as u32
    }

    fn fail(&self, e: opendal::Error) -> RemoteError {
        failure(&self.server, e)
    }

    /// Whether a failed write found the object already there, on a store that takes each key
    /// once (the same name always holds the same bytes, so that is success).
    fn already_there(&self, e: &opendal::Error) -> bool {
        // The cache service's v2 API answers "not ok" to a second reservation of a key.
        self.write_once
            && (e.kind() == ErrorKind::AlreadyExists
                || e.message().contains("create cache entry returns non-ok"))
    }
}

/// The service `settings` name; `env` reads the environment.
fn parse(
    settings: &RemoteSettings,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Service, String> {
    let parts = UrlParts::parse(&settings.cache).ok_or("not a URL")?;
    if parts.credentials.is_some() && parts.scheme != "redis" {
        return Err(format!(
            "credentials do not go in a {}:// URL: they come from the service's environment \
             variables",
            parts.scheme
        ));
    }
    let path = parts.path.split(['?', '#']).next().unwrap_or("");
    let prefix = path.trim_matches('/');
    let named = |what: &str| match parts.host.is_empty() {
        true => Err(format!("the URL names no {what}")),
        false => Ok(parts.host.clone()),
    };
    match parts.scheme.as_str() {
        "s3" => Ok(Service::S3 {
            bucket: named("bucket")?,
            root: root(prefix),
            endpoint: settings.s3_endpoint.clone(),
            region: (settings.s3_region.clone())
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_string()),
        }),
        "gcs" => Ok(Service::Gcs {
            bucket: named("bucket")?,
            root: root(prefix),
        }),
        "azblob" => Ok(Service::Azblob {
            container: named("container")?,
            root: root(prefix),
            account: env("AZURE_STORAGE_ACCOUNT"),
            key: env("AZURE_STORAGE_KEY").map(Secret),
            endpoint: env("AZURE_STORAGE_ENDPOINT"),
        }),
        "redis" => redis(&parts, prefix),
        "ghac" => Ok(Service::Ghac {
            version: (!parts.host.is_empty()).then(|| parts.host.clone()),
        }),
        other => Err(format!(
            "`{other}://` is not a store served through opendal"
        )),
    }
}

/// `redis://[user:password@]host:port[/db[/prefix]]`.
fn redis(parts: &UrlParts, path: &str) -> Result<Service, String> {
    let (db, prefix) = path.split_once('/').unwrap_or((path, ""));
    let db = match db {
        "" => 0,
        _ => db
            .parse()
            .map_err(|_| format!("`{db}` is not a Redis database number"))?,
    };
    let host = match parts.host.as_str() {
        "" => "127.0.0.1:6379",
        h => h,
    };
    Ok(Service::Redis {
        endpoint: format!("redis://{host}"),
        credentials: parts.credentials.clone(),
        db,
        root: root(prefix),
    })
}

fn root(prefix: &str) -> String {
    format!("/{prefix}")
}

/// The operator for `service`, with none of opendal's optional layers (no retry, no timeout).
fn operator(service: Service) -> opendal::Result<Operator> {
    match service {
        Service::S3 {
            bucket,
            root,
            endpoint,
            region,
        } => {
            // Path-style addressing (opendal's default) suits a plain-http endpoint (MinIO, moto).
            let mut b = services::S3::default()
                .bucket(&bucket)
                .root(&root)
                .region(&region);
            if let Some(endpoint) = endpoint {
                // Not AWS: its instance metadata service has no credentials for it.
                b = b.endpoint(&endpoint).disable_ec2_metadata();
            }
            Operator::new(b)
        }
        Service::Gcs { bucket, root } => {
            Operator::new(services::Gcs::default().bucket(&bucket).root(&root))
        }
        Service::Azblob {
            container,
            root,
            account,
            key,
            endpoint,
        } => Operator::new(azblob(container, root, account, key, endpoint)),
        Service::Redis {
            endpoint,
            credentials,
            db,
            root,
        } => {
            let mut b = services::Redis::default()
                .endpoint(&endpoint)
                .db(db)
                .root(&root);
            if let Some(c) = credentials {
                b = b.username(&c.user);
                b = b.password(c.password.as_deref().unwrap_or(""));
            }
            Operator::new(b)
        }
        Service::Ghac { version } => {
            let b = services::Ghac::default().root(GHAC_ROOT);
            Operator::new(match version {
                Some(v) => b.version(&v),
                None => b,
            })
        }
    }
}

fn azblob(
    container: String,
    root: String,
    account: Option<String>,
    key: Option<Secret>,
    endpoint: Option<String>,
) -> services::Azblob {
    let endpoint = endpoint.or_else(|| {
        let account = account.as_ref()?;
        Some(format!("https://{account}.blob.core.windows.net"))
    });
    let mut b = services::Azblob::default()
        .container(&container)
        .root(&root);
    if let Some(e) = endpoint {
        b = b.endpoint(&e);
    }
    if let Some(a) = account {
        b = b.account_name(&a);
    }
    if let Some(Secret(k)) = key {
        b = b.account_key(&k);
    }
    b
}

/// An opendal failure as a remote one: a refusal of the credentials, or the tier unavailable.
fn failure(server: &str, e: opendal::Error) -> RemoteError {
    let server = server.to_string();
    let reason = summary(&e);
    match e.kind() == ErrorKind::PermissionDenied || about_credentials(&reason) {
        true => RemoteError::Auth { server, reason },
        false => RemoteError::Unavailable { server, reason },
    }
}

/// Whether a failure opendal files as unexpected is about credentials: none found to sign with
/// (S3, GCS, Azure), or Redis asking for a password or refusing it.
fn about_credentials(reason: &str) -> bool {
    const MARKS: [&str; 4] = [
        "signing http request",
        "sign http request",
        "NOAUTH",
        "WRONGPASS",
    ];
    MARKS.iter().any(|s| reason.contains(s))
}

/// A body that broke off after it began: this answer cannot be used.
fn broken(server: &str, name: &str, e: &opendal::Error) -> RemoteError {
    RemoteError::BadAnswer {
        server: server.to_string(),
        reason: format!("the body of {name} broke off: {}", summary(e)),
    }
}

/// An opendal error in a line: its kind, message and deepest cause, without opendal's context
/// (which may hold a signed URL) and with any URL in the text stripped of credentials and query.
fn summary(e: &opendal::Error) -> String {
    let mut text = format!("{}: {}", e.kind(), e.message());
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(next) = cause.and_then(|c| c.source()) {
        cause = Some(next);
    }
    if let Some(cause) = cause {
        text = format!("{text} ({cause})");
    }
    let line = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let scrubbed: Vec<String> = line
        .split(' ')
        .map(|word| match word.contains("://") {
            true => redact(word),
            false => word.to_string(),
        })
        .collect();
    shorten(scrubbed.join(" "), 300)
}

fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The part size for a blob of `size` bytes: [`CHUNK`], or more when it would need more than
/// [`MAX_PARTS`] parts.
fn chunk_for(size: u64) -> usize {
    let needed = size.div_ceil(MAX_PARTS);
    (needed as usize).max(CHUNK)
}

/// Why an upload failed: the local file, or the store.
enum Upload {
    Local(String),
    Store(opendal::Error),
}

impl From<opendal::Error> for Upload {
    fn from(e: opendal::Error) -> Upload {
        Upload::Store(e)
    }
}

/// Feeds `file` to `writer` piece by piece; `size` bytes are expected.
async fn send_file(writer: &mut Writer, file: &Path, size: u64) -> Result<(), Upload> {
    let local = |e: std::io::Error| Upload::Local(format!("cannot read {}: {e}", file.display()));
    let mut f = tokio::fs::File::open(file).await.map_err(local)?;
    let mut sent = 0u64;
    loop {
        let mut piece = BytesMut::with_capacity(PIECE);
        while piece.len() < PIECE {
            if f.read_buf(&mut piece).await.map_err(local)? == 0 {
                break;
            }
        }
        if piece.is_empty() {
            break;
        }
        sent += piece.len() as u64;
        writer.write(piece.freeze()).await?;
    }
    if sent != size {
        return Err(Upload::Local(format!(
            "{} changed while being sent ({sent} bytes, {size} expected)",
            file.display()
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl KvBackend for OpendalBackend {
    fn describe(&self) -> String {
        self.server.clone()
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        match self.op.read(name).await {
            Ok(buffer) => Ok(Some(buffer.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn get_stream(&self, name: &str) -> Result<Option<ByteStream>, RemoteError> {
        let opened = async { self.op.reader(name).await?.into_stream(..).await };
        let mut body = match opened.await {
            Ok(body) => body,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        // The request goes out on the first read: only then is an absent object known.
        let first = match body.next().await {
            None => None,
            Some(Ok(buffer)) => Some(buffer.to_bytes()),
            Some(Err(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Some(Err(e)) => return Err(self.fail(e)),
        };
        let (server, name) = (self.server.clone(), name.to_string());
        let rest = body.map(move |r| {
            r.map(|b| b.to_bytes())
                .map_err(|e| broken(&server, &name, &e))
        });
        Ok(Some(Box::pin(stream::iter(first.map(Ok)).chain(rest))))
    }

    async fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        self.op.exists(name).await.map_err(|e| self.fail(e))
    }

    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), RemoteError> {
        match self.op.write(name, bytes).await {
            Ok(_) => Ok(()),
            Err(e) if self.already_there(&e) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn put_file(&self, name: &str, file: &Path, size: u64) -> Result<(), RemoteError> {
        if self.whole_values && size > REDIS_MAX_OBJECT {
            return Err(RemoteError::Local(format!(
                "{}: {name} has {size} bytes, more than a Redis value may hold here ({} MiB)",
                self.server,
                REDIS_MAX_OBJECT >> 20
            )));
        }
        let _memory = self.memory.acquire_many(self.memory_kib(size)).await;
        let upload = async {
            let mut writer = self.op.writer_with(name).chunk(chunk_for(size)).await?;
            if let Err(e) = send_file(&mut writer, file, size).await {
                // Drops the parts of a multipart upload already sent.
                let _ = writer.abort().await;
                return Err(e);
            }
            writer.close().await?;
            Ok(())
        };
        match upload.await {
            Ok(()) => Ok(()),
            Err(Upload::Store(e)) if self.already_there(&e) => Ok(()),
            Err(Upload::Store(e)) => Err(self.fail(e)),
            Err(Upload::Local(reason)) => Err(RemoteError::Local(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn settings(url: &str) -> RemoteSettings {
        RemoteSettings {
            cache: url.to_string(),
            instance: String::new(),
            upload: false,
            timeout: Duration::from_secs(1),
            headers: Vec::new(),
            sign_key: None,
            s3_endpoint: None,
            s3_region: None,
        }
    }

    fn parse_with(url: &str, vars: &[(&str, &str)]) -> Result<Service, String> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&settings(url), |k| env.get(k).cloned())
    }

    #[test]
    fn s3_urls() {
        let mut s = settings("s3://flamenco-cache/team/ci/");
        s.s3_endpoint = Some("http://127.0.0.1:9000".into());
        let service = parse(&s, |_| None).unwrap();
        let want = Service::S3 {
            bucket: "flamenco-cache".into(),
            root: "/team/ci".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "us-east-1".into(),
        };
        assert_eq!(service, want);
        let Service::S3 { root, region, .. } =
            parse_with("s3://b", &[("AWS_REGION", "eu-west-3")]).unwrap()
        else {
            panic!("not S3")
        };
        assert_eq!((root.as_str(), region.as_str()), ("/", "eu-west-3"));
        s.s3_region = Some("ap-south-1".into());
        let Service::S3 { region, .. } = parse(&s, |_| Some("eu-west-3".into())).unwrap() else {
            panic!("not S3")
        };
        assert_eq!(region, "ap-south-1");
    }

    #[test]
    fn redis_urls() {
        let service = parse_with("redis://:pw@127.0.0.1:6380/2/flamenco", &[]).unwrap();
        let Service::Redis {
            endpoint,
            credentials,
            db,
            root,
        } = &service
        else {
            panic!("not Redis")
        };
        assert_eq!(
            (endpoint.as_str(), *db, root.as_str()),
            ("redis://127.0.0.1:6380", 2, "/flamenco")
        );
        assert_eq!(
            credentials.as_ref().unwrap().password.as_deref(),
            Some("pw")
        );
        assert!(!format!("{service:?}").contains("pw"));
        let Service::Redis { db, root, .. } = parse_with("redis://cache:6379", &[]).unwrap() else {
            panic!("not Redis")
        };
        assert_eq!((db, root.as_str()), (0, "/"));
        assert!(parse_with("redis://cache:6379/x", &[]).is_err());
    }

    #[test]
    fn gcs_azblob_and_ghac_urls() {
        let gcs = parse_with("gcs://bucket/p", &[]).unwrap();
        assert_eq!(
            gcs,
            Service::Gcs {
                bucket: "bucket".into(),
                root: "/p".into()
            }
        );
        let vars = [
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_KEY", "a2V5"),
        ];
        let az = parse_with("azblob://cont/x/y", &vars).unwrap();
        assert!(!format!("{az:?}").contains("a2V5"));
        let Service::Azblob {
            container,
            root,
            account,
            key,
            endpoint,
        } = az
        else {
            panic!("not Azure")
        };
        assert_eq!((container.as_str(), root.as_str()), ("cont", "/x/y"));
        assert_eq!((account.as_deref(), endpoint), (Some("acct"), None));
        assert_eq!(key, Some(Secret("a2V5".into())));
        assert_eq!(
            parse_with("ghac://", &[]).unwrap(),
            Service::Ghac { version: None }
        );
        assert_eq!(
            parse_with("ghac://v2", &[]).unwrap(),
            Service::Ghac {
                version: Some("v2".into())
            }
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(
            parse_with("s3:///prefix", &[])
                .unwrap_err()
                .contains("no bucket")
        );
        let e = parse_with("s3://AKIA:s3cret@bucket/p", &[]).unwrap_err();
        assert!(e.contains("credentials") && !e.contains("s3cret"), "{e}");
        assert!(parse_with("ftp://x/y", &[]).is_err());
    }

    #[test]
    fn errors_map_without_secrets() {
        let denied = opendal::Error::new(ErrorKind::PermissionDenied, "AccessDenied");
        assert!(matches!(failure("s", denied), RemoteError::Auth { .. }));
        let unsigned = opendal::Error::new(ErrorKind::Unexpected, "signing http request")
            .set_source(std::io::Error::other("no credential"));
        assert!(matches!(failure("s", unsigned), RemoteError::Auth { .. }));
        let noauth = opendal::Error::new(ErrorKind::Unexpected, "extension error").set_source(
            std::io::Error::other("\"NOAUTH\": Authentication required."),
        );
        assert!(matches!(failure("s", noauth), RemoteError::Auth { .. }));
        let source =
            std::io::Error::other("error sending request for url (https://h/c/k?sig=SECRET)");
        let e = opendal::Error::new(ErrorKind::Unexpected, "send http request")
            .with_context("url", "https://h/c/k?sig=SECRET")
            .set_source(source);
        let RemoteError::Unavailable { reason, .. } = failure("s", e) else {
            panic!("not unavailable")
        };
        assert!(!reason.contains("SECRET"), "{reason}");
        assert!(
            reason.starts_with("Unexpected: send http request"),
            "{reason}"
        );
        assert_eq!(shorten("ab€cd".into(), 3), "ab…");
    }

    #[tokio::test]
    async fn uploads_share_a_memory_budget_and_redis_takes_no_huge_value() {
        let s3 = OpendalBackend::new(&settings("s3://b/p")).unwrap();
        assert_eq!(s3.memory_kib(1000), 2);
        assert_eq!(s3.memory_kib(200_000_000), 3 * 5 * 1024);
        assert_eq!(chunk_for(200_000_000), 5 * 1024 * 1024);
        let huge = 60 << 30;
        assert!(chunk_for(huge) as u64 * MAX_PARTS >= huge);
        let redis = OpendalBackend::new(&settings("redis://127.0.0.1:1/0")).unwrap();
        assert_eq!(redis.memory_kib(4 << 20), 3 * 4 * 1024);
        assert_eq!(redis.memory_kib(30 << 20), MEMORY_KIB);
        let huge = REDIS_MAX_OBJECT + 1;
        let e = redis
            .put_file("cas/00", Path::new("/nonexistent"), huge)
            .await;
        assert!(matches!(e, Err(RemoteError::Local(m)) if m.contains("Redis value")));
    }

    #[tokio::test]
    async fn building_the_operators_needs_no_server() {
        for url in ["s3://b/p", "gcs://b/p", "redis://127.0.0.1:1/0"] {
            let mut s = settings(url);
            s.s3_endpoint = Some("http://127.0.0.1:1".into());
            assert!(OpendalBackend::new(&s).is_ok(), "{url}");
        }
    }
}
