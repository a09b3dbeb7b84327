//! The operations this build has on the engine, so that Ctrl-C, or a build stopping after a
//! failure, can cancel them: an execution left behind keeps a worker busy for nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Operation names by execution, while each execution is followed.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    next: AtomicU64,
    operations: Mutex<HashMap<u64, String>>,
}

/// One execution's place in [`InFlight`]. Dropped before [`Ticket::done`] (the build stopped
/// following it), its operation stays listed for [`InFlight::take_all`].
pub(crate) struct Ticket<'a> {
    flight: &'a InFlight,
    id: u64,
    done: bool,
}

impl InFlight {
    pub(crate) fn enter(&self) -> Ticket<'_> {
        Ticket {
            flight: self,
            id: self.next.fetch_add(1, Ordering::Relaxed),
            done: false,
        }
    }

    /// Every operation not seen to its end, now no longer listed.
    pub(crate) fn take_all(&self) -> Vec<String> {
        let mut ops = self.operations.lock().expect("operations");
        let mut names: Vec<String> = ops.drain().map(|(_, n)| n).collect();
        names.sort();
        names
    }
}

impl Ticket<'_> {
    /// The engine named the operation (again, after a new Execute).
    pub(crate) fn named(&self, name: &str) {
        let mut ops = self.flight.operations.lock().expect("operations");
        ops.insert(self.id, name.to_string());
    }

    /// The operation ended (or was cancelled): nothing to cancel any more.
    pub(crate) fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            let mut ops = self.flight.operations.lock().expect("operations");
            ops.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operations_left_unfinished_are_cancelled() {
        let flight = InFlight::default();
        let finished = flight.enter();
        finished.named("ops/1");
        finished.done();
        let dropped = flight.enter();
        dropped.named("ops/2");
        drop(dropped);
        let running = flight.enter();
        running.named("ops/3");
        assert_eq!(flight.take_all(), ["ops/2", "ops/3"]);
        assert!(flight.take_all().is_empty());
        running.done();
    }
}
