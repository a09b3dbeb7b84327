//! Remote tiers of the cache, on the servers teams already run: REAPI over gRPC (bazel-remote,
//! BuildBuddy, Buildbarn, NativeLink, BuildGrid), Bazel's HTTP cache protocol (bazel-remote, any
//! WebDAV server), and object and key-value stores through opendal (S3, GCS, Azure Blob, Redis,
//! the GitHub Actions cache). Each is a [`Storage`](crate::cache::Storage) in REAPI's data model,
//! behind a [`guard::Guarded`] that keeps it from ever making a build slower than one timeout.

pub(crate) mod action_result;
mod error;
pub(crate) mod execute;
pub(crate) mod grpc;
mod guard;
mod http;
mod kv;
mod object_store;
pub(crate) mod output_tree;
mod settings;
mod userinfo;

use std::sync::Arc;

pub(crate) use error::RemoteError;
pub use execute::ExecutorSettings;
pub(crate) use execute::RemoteExecutor;
pub(crate) use guard::{Guarded, Warn};
pub use settings::{RemoteArgs, RemoteSettings};

use crate::cache::Storage;

/// A URL as it may be shown: any `user:password@` replaced by `***@`, and no query (which may
/// hold a token).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    // The last `@` ends the user info, even when an unescaped `/` or `?` in a password would
    // otherwise end the authority early: better to hide too much than a piece of a password.
    let rest = match rest.rfind('@') {
        Some(i) => &rest[i + 1..],
        None => rest,
    };
    let hidden = rest.len() < url.len() - scheme.map_or(0, |s| s.len() + 3);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = if hidden {
        format!("***@{authority}")
    } else {
        authority.to_string()
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{path}"),
        None => format!("{authority}{path}"),
    }
}

/// The remote cache tier `settings` name, guarded, or why it cannot be used.
pub(crate) fn open_cache(
    settings: &RemoteSettings,
    warn: Warn,
) -> Result<Arc<Guarded>, RemoteError> {
    let url = &settings.cache;
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    let sign_key = settings.sign_key.clone();
    let inner: Arc<dyn Storage> = match scheme {
        "grpc" | "grpcs" => Arc::new(grpc::GrpcStorage::connect(settings)?),
        "http" | "https" => {
            let backend = http::HttpBackend::new(settings)?;
            Arc::new(kv::KvStorage::new(Arc::new(backend), sign_key))
        }
        _ => {
            let backend = object_store::OpendalBackend::new(settings)?;
            Arc::new(kv::KvStorage::new(Arc::new(backend), sign_key))
        }
    };
    Ok(Arc::new(Guarded::new(inner, settings.timeout, warn)))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("https://ci:s3cret@cache.example/base?token=x"),
            "https://***@cache.example/base"
        );
        assert_eq!(redact("grpc://cache:9092"), "grpc://cache:9092");
        assert_eq!(
            redact("redis://:pw@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
        assert_eq!(redact("http://u:pa/ss?w@host/base"), "http://***@host/base");
    }
}
