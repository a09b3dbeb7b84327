//! The rules for single values that several sections share: names, sizes.

use crate::config::file::SizeValue;

pub(super) fn parse_size(v: &SizeValue) -> Result<u64, String> {
    match v {
        SizeValue::Bytes(n) if *n >= 0 => Ok(*n as u64),
        SizeValue::Bytes(n) => Err(format!("{n} is negative")),
        SizeValue::Text(t) => parse_size_text(t),
    }
}

/// A size as Docker reads one (`512m`, `2GB`, `1.5GiB`): K, M, G and T are powers of 1024, with or
/// without a trailing `B` or `iB`. Hand-written because the crates read "MB" as 10^6, and memory
/// limits here must mean what they mean to `docker run -m`.
fn parse_size_text(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` does not start with a number"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        other => return Err(format!("unknown unit `{other}` (use K, M, G or T)")),
    };
    Ok((n * factor as f64) as u64)
}

/// The longest task or toolchain name. Task names become file names in the cache
/// (`metadata/<task>.meta.json`, `artifacts/<task>/`, staging folders): well inside 255 bytes.
const MAX_NAME_BYTES: usize = 100;

pub(super) const NAME_RULE: &str = "(1 to 100 letters, digits, `-`, `_` or `.`, and not `.` or `..`: \
                         names become file names in the cache)";

/// A task or toolchain name: one safe path component (no `.` or `..`, no separator).
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// A volume name Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(super) fn is_volume_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() >= 2
        && s.len() <= 255
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
