//! The `[settings]` table: each key checked on its own, defaults for those not given.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::Check;
use super::values::{is_volume_name, parse_size};
use crate::config::Settings;
use crate::config::cache_dir;
use crate::config::file::{SettingsFile, SizeValue};

pub(super) fn settings(check: &mut Check, s: SettingsFile, root: &Path) -> Settings {
    let cache_max_size = cache_max_size(check, s.cache_max_size);
    let cache_max_age = cache_max_age(check, s.cache_max_age);
    let cache_dir = cache_dir(check, s.cache_dir, root);
    let cache_volume = cache_volume(check, s.cache_volume, root);
    let jobs = jobs(check, s.jobs);
    let user = user(check, s.user);
    Settings {
        cache_dir,
        cache_volume,
        jobs,
        user,
        cache_max_size,
        cache_max_age,
    }
}

fn cache_max_size(check: &mut Check, v: Option<Spanned<SizeValue>>) -> u64 {
    let Some(v) = v else {
        return Settings::DEFAULT_MAX_SIZE;
    };
    parse_size(v.get_ref()).unwrap_or_else(|e| {
        check.err(
            v.span(),
            format!("`cache_max_size` is not a size such as \"5GB\": {e}"),
        );
        0
    })
}

fn cache_max_age(check: &mut Check, v: Option<Spanned<String>>) -> std::time::Duration {
    let Some(v) = v else {
        return Settings::DEFAULT_MAX_AGE;
    };
    humantime::parse_duration(v.get_ref()).unwrap_or_else(|e| {
        check.err(
            v.span(),
            format!("`cache_max_age` is not a duration such as \"30d\": {e}"),
        );
        Settings::DEFAULT_MAX_AGE
    })
}

/// The cache folder as the settings keep it; also records, in the check, where it lies inside
/// the project.
fn cache_dir(check: &mut Check, d: Option<Spanned<String>>, root: &Path) -> PathBuf {
    let span = d.as_ref().map(|d| d.span());
    let written = match d {
        Some(d) if d.get_ref().is_empty() => {
            check.err(d.span(), "`cache_dir` is empty");
            PathBuf::new()
        }
        Some(d) => PathBuf::from(d.into_inner()),
        None => PathBuf::from(".build-cache"),
    };
    match cache_dir::resolve(root, &written.to_string_lossy()) {
        Ok(c) => {
            check.cache_inside = c.inside;
            c.setting
        }
        Err(e) => {
            check.err(span.unwrap_or(0..0), e);
            written
        }
    }
}

fn cache_volume(check: &mut Check, v: Option<Spanned<String>>, root: &Path) -> String {
    match v {
        Some(v) if !is_volume_name(v.get_ref()) => {
            check.err(
                v.span(),
                format!(
                    "`cache_volume` `{}` is not a volume name Docker accepts (a letter or \
                     digit, then letters, digits, `_`, `.` or `-`)",
                    v.get_ref()
                ),
            );
            String::new()
        }
        Some(v) => v.into_inner(),
        None => Settings::default_cache_volume(root),
    }
}

fn jobs(check: &mut Check, j: Option<Spanned<i64>>) -> usize {
    match j {
        Some(j) if *j.get_ref() < 1 || *j.get_ref() > 256 => {
            check.err(
                j.span(),
                format!("`jobs` must be 1 to 256, not {}", j.get_ref()),
            );
            1
        }
        Some(j) => *j.get_ref() as usize,
        None => Settings::default_jobs(),
    }
}

/// `uid:gid`, parsed once into numbers.
fn user(check: &mut Check, u: Option<Spanned<String>>) -> Option<(u32, u32)> {
    let u = u?;
    let ids = u
        .get_ref()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    if ids.is_none() {
        check.err(
            u.span(),
            format!("`user` must be `uid:gid` (numbers), not `{}`", u.get_ref()),
        );
    }
    ids
}
