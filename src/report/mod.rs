//! What the user sees: progress lines in the seed's form or a live view, task logs, warnings,
//! the `--json` summary and the `--trace` file.

mod reporter;
mod trace;

pub use reporter::{Progress, Reporter};
pub use trace::{CACHE_ROW, Trace};

use std::time::Duration;

/// Seconds with one decimal, as the seed prints them (`2.1s`).
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The parallel efficiency of a build, in percent: the work done, task by task from each one's
/// start (never while it waited for a slot), over what `jobs` slots could do in `wall`. At any
/// moment at most `jobs` tasks count, so it is never over 100%; `spans` are each task's working
/// (start, end), after the build began.
pub fn efficiency(spans: &[(Duration, Duration)], wall: Duration, jobs: usize) -> f64 {
    let capacity = wall.as_secs_f64() * jobs.max(1) as f64;
    if capacity == 0.0 {
        return 100.0;
    }
    // Sweep the starts and ends in time order, counting at most `jobs` tasks at once.
    let mut edges: Vec<(Duration, i64)> = spans
        .iter()
        .filter(|(s, e)| e > s)
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    edges.sort();
    let (mut busy, mut active, mut at) = (0.0, 0i64, Duration::ZERO);
    for (t, delta) in edges {
        busy += (t - at).as_secs_f64() * active.min(jobs as i64) as f64;
        active += delta;
        at = t;
    }
    (busy / capacity * 100.0).min(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: f64, b: f64) -> (Duration, Duration) {
        (Duration::from_secs_f64(a), Duration::from_secs_f64(b))
    }

    // Issue 10 finding 15: efficiency is task time / (wall × jobs), at most jobs tasks at once.
    // (The e2e f15_task_times_do_not_count_queue_waiting failed on main: 250% with -j1.)
    #[test]
    fn efficiency_counts_at_most_jobs_tasks_at_once() {
        let wall = Duration::from_secs(4);
        // One slot, four 1s tasks one after the other: the slot never idled.
        let fan = [s(0.0, 1.0), s(1.0, 2.0), s(2.0, 3.0), s(3.0, 4.0)];
        assert!((efficiency(&fan, wall, 1) - 100.0).abs() < 1e-9);
        // The same on two slots: half of what they could do.
        assert!((efficiency(&fan, wall, 2) - 50.0).abs() < 1e-9);
        // A restore beside a running task with one slot counts once.
        let over = [s(0.0, 4.0), s(1.0, 3.0)];
        assert!((efficiency(&over, wall, 1) - 100.0).abs() < 1e-9);
        // Two tasks at once on four slots for 2 of 4 seconds: 25%.
        assert!((efficiency(&[s(0.0, 2.0), s(0.0, 2.0)], wall, 4) - 25.0).abs() < 1e-9);
        assert_eq!(efficiency(&[], Duration::ZERO, 1), 100.0);
    }
}
