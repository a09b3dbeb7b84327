//! When a queued task has waited too long for a worker. The engine does not say whether any
//! worker could ever take a job, so the client judges by the build: a task is stuck when it has
//! been queued for `queue_timeout` while nothing of the build moved (no task left the queue or
//! ended) and none of the build's tasks was executing — a long task ahead of it on a busy fleet
//! is a wait, not a missing worker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct QueueClock {
    timeout: Duration,
    last_moved: Mutex<Instant>,
    executing: AtomicUsize,
}

/// One operation counted as executing while it lives.
pub(crate) struct Executing<'a>(&'a QueueClock);

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        self.0.executing.fetch_sub(1, Ordering::Relaxed);
        self.0.moved();
    }
}

impl QueueClock {
    pub(crate) fn new(timeout: Duration) -> QueueClock {
        QueueClock {
            timeout,
            last_moved: Mutex::new(Instant::now()),
            executing: AtomicUsize::new(0),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Something of the build moved on the engine: every queued task's wait starts again.
    pub(crate) fn moved(&self) {
        *self.last_moved.lock().expect("last moved") = Instant::now();
    }

    /// An operation left the queue; it counts as executing until the guard is dropped.
    pub(crate) fn executing(&self) -> Executing<'_> {
        self.executing.fetch_add(1, Ordering::Relaxed);
        self.moved();
        Executing(self)
    }

    /// When a task queued at `since` is stuck, as of now.
    pub(crate) fn deadline(&self, since: Instant) -> Instant {
        if self.executing.load(Ordering::Relaxed) > 0 {
            self.moved();
        }
        let moved = *self.last_moved.lock().expect("last moved");
        since.max(moved) + self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(40);

    #[test]
    fn a_task_queued_while_nothing_moves_is_stuck_after_the_timeout() {
        let clock = QueueClock::new(T);
        let since = Instant::now();
        assert_eq!(clock.deadline(since), since + T);
    }

    #[test]
    fn a_task_queued_behind_an_executing_one_never_times_out_meanwhile() {
        let clock = QueueClock::new(T);
        let since = Instant::now();
        let running = clock.executing();
        std::thread::sleep(T * 2);
        assert!(
            clock.deadline(since) > Instant::now(),
            "stuck behind a running task"
        );
        drop(running);
        // Once it ends, the wait starts again from its end.
        let after = Instant::now();
        let deadline = clock.deadline(since);
        assert!(deadline >= after && deadline <= after + T + Duration::from_millis(5));
    }

    #[test]
    fn the_wait_restarts_when_another_task_of_the_build_moves() {
        let clock = QueueClock::new(T);
        let since = Instant::now();
        std::thread::sleep(T / 2);
        clock.moved();
        assert!(clock.deadline(since) > since + T);
    }
}
