//! The remote cache's settings, resolved once from the `[remote]` table, the command line and
//! the environment. Secrets (header values, the sign key) are read from environment variables at
//! run time, never from argv or the file, and never shown.

use std::time::Duration;

use crate::config::RemoteConfig;
use crate::config::remote::check_cache_url;

/// The command line's say on the remote cache (every build mode takes these).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RemoteArgs {
    /// The shared cache's URL (grpc://, grpcs://, http(s)://, s3://, redis://, gcs://, azblob://,
    /// ghac://); overrides `[remote] cache`.
    #[arg(long, value_name = "URL", env = "FLAMENCO_BUILD_REMOTE_CACHE")]
    pub remote_cache: Option<String>,
    /// Write what this build runs to the remote cache (else it only reads).
    #[arg(long)]
    pub remote_upload: bool,
    /// The remote executor's URL (grpc://, grpcs://) for `--executor remote`; overrides
    /// `[remote] executor`.
    #[arg(long, value_name = "URL", env = "FLAMENCO_BUILD_REMOTE_EXECUTOR")]
    pub remote_executor: Option<String>,
    /// Use no remote cache, whatever the settings say.
    #[arg(long, conflicts_with_all = ["remote_cache", "remote_upload"])]
    pub no_remote: bool,
}

/// A remote cache, ready to open. `Debug` shows no secret.
#[derive(Clone)]
pub struct RemoteSettings {
    pub cache: String,
    pub instance: String,
    pub upload: bool,
    pub timeout: Duration,
    /// Header name and value, the value read from its variable.
    pub headers: Vec<(String, String)>,
    pub sign_key: Option<Vec<u8>>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("cache", &super::redact(&self.cache))
            .field("instance", &self.instance)
            .field("upload", &self.upload)
            .field("timeout", &self.timeout)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("signed", &self.sign_key.is_some())
            .finish()
    }
}

impl RemoteSettings {
    /// The remote cache of this build, if any. A URL given on the command line or in the
    /// environment is checked here (the file's was checked with the config).
    pub fn resolve(
        config: &RemoteConfig,
        args: &RemoteArgs,
    ) -> Result<Option<RemoteSettings>, String> {
        if args.no_remote {
            return Ok(None);
        }
        let Some(cache) = args.remote_cache.clone().or_else(|| config.cache.clone()) else {
            return Ok(None);
        };
        check_cache_url(&cache)?;
        let upload = args.remote_upload
            || config.upload
            || std::env::var("FLAMENCO_BUILD_REMOTE_UPLOAD").is_ok_and(|v| v == "1" || v == "true");
        let headers = headers(config);
        // Unset (a fork's pull request gets no secrets): neither signs nor checks; such a build
        // should not be the one that uploads (`upload = false` unless trusted).
        let sign_key = config
            .sign_key_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|v| !v.is_empty())
            .map(String::into_bytes);
        Ok(Some(RemoteSettings {
            cache,
            instance: config.instance.clone(),
            upload,
            timeout: config.timeout,
            headers,
            sign_key,
            s3_endpoint: config.s3_endpoint.clone(),
            s3_region: config.s3_region.clone(),
        }))
    }

    /// The cache URL (the executor's, for the executor's settings) as it may be shown.
    pub fn shown(&self) -> String {
        super::redact(&self.cache)
    }
}

/// The headers to send, each value read from its variable (an unset one is left out).
pub(super) fn headers(config: &RemoteConfig) -> Vec<(String, String)> {
    config
        .headers_env
        .iter()
        .filter_map(|(name, var)| Some((name.clone(), std::env::var(var).ok()?)))
        .collect()
}
