//! The messages of the TOML reader (toml and serde) in the words of a TOML file: `key`, `table`,
//! `array`, `integer`, never a Rust type (`i64`, `struct TaskFile`, `untagged enum SizeValue`);
//! and an unknown key suggests the key it is closest to.

/// How alike an unknown key and a known one must be (Jaro-Winkler) to be suggested: `imput`
/// suggests `inputs`, `colour` suggests nothing.
const SIMILAR: f64 = 0.8;

/// `message` (the first line of a toml error) in plain TOML words.
pub(super) fn plain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return unknown("key", rest);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return unknown("value", rest);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing key {rest}");
    }
    if message.starts_with("data did not match any variant of untagged enum SizeValue") {
        return "expected a size: a number of bytes, or a string such as \"5GB\"".to_string();
    }
    if message.starts_with("data did not match any variant of untagged enum") {
        return "not a value this key takes".to_string();
    }
    if let Some((found, _)) = message.split_once(" as i128, expected ") {
        let found = found.strip_prefix("invalid type: ").unwrap_or(found);
        return format!("{found} is out of range");
    }
    match message.split_once(", expected ") {
        Some((found, expected)) => format!("{}, expected {}", words(found), expected_as(expected)),
        None => message.to_string(),
    }
}

/// `` `x`, expected one of `a`, `b` `` → `` unknown key `x`; did you mean `a`? `` (or the list
/// when none is alike).
fn unknown(what: &str, rest: &str) -> String {
    let (name, known) = rest.split_once(", ").unwrap_or((rest, ""));
    let candidates: Vec<&str> = known
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    let bare = name.trim_matches('`');
    let best = candidates
        .iter()
        .map(|k| (strsim::jaro_winkler(bare, k), *k))
        .filter(|(score, _)| *score >= SIMILAR)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match (best, candidates.len()) {
        (Some((_, k)), _) => format!("unknown {what} {name}; did you mean `{k}`?"),
        (None, 0) => format!("unknown {what} {name}; this table takes no keys"),
        (None, _) => {
            let list: Vec<String> = candidates.iter().map(|k| format!("`{k}`")).collect();
            format!("unknown {what} {name}; expected one of {}", list.join(", "))
        }
    }
}

/// What serde names a value it found, in TOML words.
fn words(found: &str) -> String {
    found
        .replace(": sequence", ": array")
        .replace(": map", ": table")
        .replace("floating point", "float")
}

/// What serde says it expected, in TOML words.
fn expected_as(expected: &str) -> String {
    let t = expected.trim();
    let integer = [
        "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
    ];
    if integer.contains(&t) {
        "an integer".to_string()
    } else if t == "f32" || t == "f64" {
        "a number".to_string()
    } else if t == "a sequence" {
        "an array".to_string()
    } else if t == "a map" || t.starts_with("struct ") || t.starts_with("map ") {
        "a table".to_string()
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn no_rust_type_reaches_the_user() {
        let cases = [
            (
                "invalid type: string \"four\", expected i64",
                "invalid type: string \"four\", expected an integer",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "invalid type: float `1.5`, expected an integer",
            ),
            (
                "invalid type: string \"2\", expected f64",
                "invalid type: string \"2\", expected a number",
            ),
            (
                "invalid type: string \"o\", expected a sequence",
                "invalid type: string \"o\", expected an array",
            ),
            (
                "invalid type: sequence, expected a string",
                "invalid type: array, expected a string",
            ),
            (
                "invalid type: map, expected a string",
                "invalid type: table, expected a string",
            ),
            (
                "invalid type: integer `3`, expected struct SettingsFile",
                "invalid type: integer `3`, expected a table",
            ),
            (
                "data did not match any variant of untagged enum SizeValue",
                "expected a size: a number of bytes, or a string such as \"5GB\"",
            ),
            (
                "invalid type: integer `99999999999999999999` as i128, expected i64",
                "integer `99999999999999999999` is out of range",
            ),
            ("missing field `run`", "missing key `run`"),
            (
                "invalid type: string \"yes\", expected a boolean",
                "invalid type: string \"yes\", expected a boolean",
            ),
            ("duplicate key", "duplicate key"),
        ];
        for (toml, ours) in cases {
            assert_eq!(plain(toml), ours);
        }
    }

    #[test]
    fn an_unknown_key_suggests_the_closest_known_one() {
        let settings = "`cache_dir`, `cache_volume`, `jobs`, `user`, `cache_max_size`, \
                        `cache_max_age`";
        assert_eq!(
            plain(&format!(
                "unknown field `cache_max_sise`, expected one of {settings}"
            )),
            "unknown key `cache_max_sise`; did you mean `cache_max_size`?"
        );
        assert_eq!(
            plain("unknown field `imput`, expected one of `run`, `inputs`, `outputs`"),
            "unknown key `imput`; did you mean `inputs`?"
        );
        assert_eq!(
            plain("unknown field `colour`, expected one of `run`, `inputs`, `outputs`"),
            "unknown key `colour`; expected one of `run`, `inputs`, `outputs`"
        );
        assert_eq!(
            plain("unknown field `jbo`, expected `jobs`"),
            "unknown key `jbo`; did you mean `jobs`?"
        );
        assert_eq!(
            plain("unknown field `x`, there are no fields"),
            "unknown key `x`; this table takes no keys"
        );
    }
}
