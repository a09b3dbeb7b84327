//! The `[remote]` table: each key checked on its own, with the line and column of a bad one.

use super::Check;
use crate::config::RemoteConfig;
use crate::config::file::RemoteFile;
use crate::config::remote::{check_cache_url, check_executor_url};

pub(super) fn remote(check: &mut Check, r: RemoteFile) -> RemoteConfig {
    let mut out = RemoteConfig {
        instance: r.instance.unwrap_or_default(),
        upload: r.upload.unwrap_or(false),
        s3_region: r.s3_region,
        ..RemoteConfig::default()
    };
    if let Some(url) = r.cache {
        match check_cache_url(url.get_ref()) {
            Ok(()) => out.cache = Some(url.into_inner()),
            Err(e) => check.err(url.span(), e),
        }
    }
    if let Some(url) = r.executor {
        match check_executor_url(url.get_ref()) {
            Ok(()) => out.executor = Some(url.into_inner()),
            Err(e) => check.err(url.span(), e),
        }
    }
    if let Some(t) = r.queue_timeout {
        match duration(t.get_ref()) {
            Some(d) => out.queue_timeout = d,
            None => check.err(t.span(), not_a_duration("queue_timeout", t.get_ref())),
        }
    }
    if let Some(t) = r.timeout {
        match duration(t.get_ref()) {
            Some(d) => out.timeout = d,
            None => check.err(t.span(), not_a_duration("timeout", t.get_ref())),
        }
    }
    for (header, var) in r.headers_env {
        if !is_token(header.get_ref()) {
            check.err(
                header.span(),
                format!("`{}` is not an HTTP header name", header.get_ref()),
            );
        } else if !is_env_name(var.get_ref()) {
            check.err(
                var.span(),
                format!("`{}` is not an environment variable name", var.get_ref()),
            );
        } else {
            out.headers_env
                .insert(header.into_inner(), var.into_inner());
        }
    }
    if let Some(v) = r.sign_key_env {
        if is_env_name(v.get_ref()) {
            out.sign_key_env = Some(v.into_inner());
        } else {
            check.err(
                v.span(),
                format!("`{}` is not an environment variable name", v.get_ref()),
            );
        }
    }
    if let Some(e) = r.s3_endpoint {
        if e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://") {
            out.s3_endpoint = Some(e.into_inner());
        } else {
            check.err(e.span(), "`s3_endpoint` must be an http:// or https:// URL");
        }
    }
    out
}

/// A duration such as "5s" or "2m", never zero.
fn duration(text: &str) -> Option<std::time::Duration> {
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
}

fn not_a_duration(key: &str, text: &str) -> String {
    format!("`{key}` is not a duration such as \"5s\": `{text}`")
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
