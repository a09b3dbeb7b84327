//! Sizes and durations as people read them. A leaf: it imports nothing from the crate, so every
//! module that prints one can use it.

use std::time::Duration;

/// A size with the unit picked by its size (binary units, as the seed prints them): `512 B`,
/// `9.8 KB`, `45 MB`, `5.0 GB`. One decimal below 10 of a unit, none above.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KB", "MB", "GB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while unit < UNITS.len() {
        value /= 1024.0;
        if value < 1024.0 || unit == UNITS.len() - 1 {
            break;
        }
        unit += 1;
    }
    // The seed prints gigabytes with a decimal, whatever their number.
    if value < 10.0 || UNITS[unit] == "GB" {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `47185920` → `45 MB (47,185,920 bytes)`, as the seed prints a cache's size; below a
/// kilobyte the short form is exact already: `512 B`.
pub fn size_exact(bytes: u64) -> String {
    if bytes < 1024 {
        return size(bytes);
    }
    format!("{} ({} bytes)", size(bytes), thousands(bytes))
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as humantime writes it, with the word units spaced as words: `30 days`,
/// `1 day 2h 5m`, `2 months 3 days` (humantime writes `30days`).
pub fn duration(d: Duration) -> String {
    humantime::format_duration(d)
        .to_string()
        .split(' ')
        .map(|part| {
            let digits = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            let (n, unit) = part.split_at(digits);
            // h, m, s, ms, us, ns stay as symbols; year, month and day are words.
            if unit.len() > 2 {
                format!("{n} {unit}")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_pick_their_unit_by_size() {
        assert_eq!(size_exact(47_185_920), "45 MB (47,185,920 bytes)");
        assert_eq!(size_exact(1_572_864), "1.5 MB (1,572,864 bytes)");
        assert_eq!(size_exact(0), "0 B");
        assert_eq!(size_exact(1023), "1023 B");
        assert_eq!(size_exact(1024), "1.0 KB (1,024 bytes)");
        assert_eq!(size(10_000), "9.8 KB");
        assert_eq!(size(700_000), "684 KB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GB");
        assert_eq!(size(3000 * 1024 * 1024 * 1024), "3000.0 GB");
    }

    #[test]
    fn durations_space_their_word_units() {
        let s = |secs: u64| duration(Duration::from_secs(secs));
        assert_eq!(s(30 * 86400), "30 days");
        assert_eq!(s(86400 + 2 * 3600 + 5 * 60), "1 day 2h 5m");
        assert_eq!(s(3 * 60 + 4), "3m 4s");
        assert_eq!(s(0), "0s");
        assert_eq!(duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(s(400 * 86400), "1 year 1 month 4 days 7h 26m 24s");
    }
}
