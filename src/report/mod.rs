//! What the user sees: progress lines in the seed's form, task logs, warnings.

mod reporter;

pub use reporter::Reporter;

/// Seconds with one decimal, as the seed prints them (`2.1s`).
pub fn secs(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
