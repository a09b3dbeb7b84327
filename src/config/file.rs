//! The on-disk shape of flamenco-build.toml (serde, with spans), as read before validation
//! (`super::validate`) turns it into a [`Config`](super::Config).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::Source;
use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub(super) settings: Option<SettingsFile>,
    #[serde(default)]
    pub(super) toolchains: BTreeMap<Spanned<String>, Spanned<ToolchainFile>>,
    #[serde(default)]
    pub(super) tasks: BTreeMap<Spanned<String>, Spanned<TaskFile>>,
    #[serde(default)]
    pub(super) remote: Option<RemoteFile>,
}

/// The `[remote]` table: a shared cache and a remote executor on servers teams already run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoteFile {
    pub(super) cache: Option<Spanned<String>>,
    pub(super) instance: Option<String>,
    pub(super) upload: Option<bool>,
    pub(super) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) headers_env: BTreeMap<Spanned<String>, Spanned<String>>,
    pub(super) sign_key_env: Option<Spanned<String>>,
    pub(super) s3_endpoint: Option<Spanned<String>>,
    pub(super) s3_region: Option<String>,
    pub(super) executor: Option<Spanned<String>>,
    pub(super) queue_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsFile {
    pub(super) cache_dir: Option<Spanned<String>>,
    pub(super) cache_volume: Option<Spanned<String>>,
    pub(super) jobs: Option<Spanned<i64>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) cache_max_size: Option<Spanned<SizeValue>>,
    pub(super) cache_max_age: Option<Spanned<String>>,
}

/// A size: bytes as a number, or a string such as "5GB" or "500 MiB".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum SizeValue {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ToolchainFile {
    pub(super) image: Spanned<String>,
    pub(super) dockerfile: Option<Spanned<String>>,
    pub(super) context: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) build_args: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) env: BTreeMap<Spanned<String>, String>,
    pub(super) version_command: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskFile {
    pub(super) description: Option<String>,
    pub(super) toolchain: Spanned<String>,
    #[serde(default)]
    pub(super) deps: Vec<Spanned<String>>,
    pub(super) run: Spanned<String>,
    pub(super) workdir: Option<Spanned<String>>,
    pub(super) inputs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) outputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) env: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) network: bool,
    pub(super) memory: Option<Spanned<SizeValue>>,
    pub(super) cpus: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) local_only: bool,
}

impl ConfigFile {
    pub(super) fn parse(source: &Source) -> Result<ConfigFile> {
        toml::from_str(&source.text).map_err(|e| {
            // toml's message already quotes the source; keep only its first line, in the words
            // of a TOML file rather than of the Rust types it is read into.
            let message =
                super::toml_message::plain(e.message().lines().next().unwrap_or("invalid TOML"));
            Error::Config(vec![source.diagnostic(e.span(), message)])
        })
    }
}
