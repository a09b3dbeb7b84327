//! What the user sees: progress lines in the seed's form or a live view, task logs, warnings,
//! the `--json` summary and the `--trace` file.

mod reporter;
mod trace;

pub use reporter::{Progress, Reporter};
pub use trace::{CACHE_ROW, Trace};

/// Seconds with one decimal, as the seed prints them (`2.1s`).
pub fn secs(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
