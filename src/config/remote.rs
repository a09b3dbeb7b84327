//! The `[remote]` table, validated: where the shared cache is and how to talk to it. Secrets are
//! never in the file: only the names of the environment variables that hold them.

use std::collections::BTreeMap;
use std::time::Duration;

/// The `[remote]` table of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The remote cache's URL (`grpc://`, `grpcs://`, `http://`, `https://`, `s3://`,
    /// `redis://`, `gcs://`, `azblob://`, `ghac://`), if any.
    pub cache: Option<String>,
    /// The REAPI instance name.
    pub instance: String,
    /// Whether this build writes to the remote cache (read-only unless set).
    pub upload: bool,
    /// The timeout of one request.
    pub timeout: Duration,
    /// Request headers whose values are read from environment variables at run time.
    pub headers_env: BTreeMap<String, String>,
    /// The environment variable holding the HMAC key action results are signed with.
    pub sign_key_env: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// The REAPI execution service's URL (`grpc://`, `grpcs://`) for `--executor remote`.
    pub executor: Option<String>,
    /// How long a task may wait in the engine's queue while no task of the build makes progress
    /// (no worker can take it: no worker holds its image).
    pub queue_timeout: Duration,
}

impl RemoteConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(300);
}

impl Default for RemoteConfig {
    fn default() -> RemoteConfig {
        RemoteConfig {
            cache: None,
            instance: String::new(),
            upload: false,
            timeout: RemoteConfig::DEFAULT_TIMEOUT,
            headers_env: BTreeMap::new(),
            sign_key_env: None,
            s3_endpoint: None,
            s3_region: None,
            executor: None,
            queue_timeout: RemoteConfig::DEFAULT_QUEUE_TIMEOUT,
        }
    }
}

/// The URL schemes a remote cache may have.
pub const CACHE_SCHEMES: [&str; 9] = [
    "grpc", "grpcs", "http", "https", "s3", "redis", "gcs", "azblob", "ghac",
];

/// Checks a remote cache URL's scheme; the message lists the ones known.
pub fn check_cache_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some(s) if CACHE_SCHEMES.contains(&s) => Ok(()),
        _ => Err(format!(
            "`{}` is not a remote cache URL: it must start with one of {}",
            crate::remote::redact(url),
            CACHE_SCHEMES.map(|s| format!("{s}://")).join(", ")
        )),
    }
}

/// Checks a remote executor URL: REAPI's execution service speaks gRPC only.
pub fn check_executor_url(url: &str) -> Result<(), String> {
    match url.split_once("://").map(|(s, _)| s) {
        Some("grpc" | "grpcs") => Ok(()),
        _ => Err(format!(
            "`{}` is not a remote executor URL: it must start with grpc:// or grpcs://",
            crate::remote::redact(url)
        )),
    }
}
