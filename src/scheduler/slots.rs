//! The container slots of a build: a task holds one only while its container exists (a cache hit
//! or a restore needs none), and each slot has a number, the trace's row.

use std::sync::Mutex;

pub(crate) struct Slots {
    permits: tokio::sync::Semaphore,
    free: Mutex<Vec<usize>>,
}

impl Slots {
    pub(crate) fn new(n: usize) -> Slots {
        Slots {
            permits: tokio::sync::Semaphore::new(n),
            free: Mutex::new((1..=n).rev().collect()),
        }
    }

    pub(crate) async fn acquire(&self) -> (tokio::sync::SemaphorePermit<'_>, SlotId<'_>) {
        let permit = self.permits.acquire().await.expect("never closed");
        let id = self
            .free
            .lock()
            .expect("slots")
            .pop()
            .expect("a permit means a free slot");
        (permit, SlotId { slots: self, id })
    }
}

/// A slot's number (the trace's row), given back on drop.
pub(crate) struct SlotId<'a> {
    slots: &'a Slots,
    pub(crate) id: usize,
}

impl Drop for SlotId<'_> {
    fn drop(&mut self) {
        self.slots.free.lock().expect("slots").push(self.id);
    }
}
