//! `--trace FILE`: Chrome trace-event JSON (opens in Perfetto or chrome://tracing), a span per
//! task phase, one row per concurrency slot and one for work done without a container.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Collects spans during a build; written once at the end.
#[derive(Debug)]
pub struct Trace {
    origin: Instant,
    events: Mutex<Vec<Value>>,
}

/// The row of work that holds no container slot: keys, cache hits, restores, saves.
pub const CACHE_ROW: usize = 0;

impl Trace {
    pub fn new(origin: Instant) -> Trace {
        Trace {
            origin,
            events: Mutex::default(),
        }
    }

    /// A complete span (`ph: X`) on `row`; `cat` is `task` for a whole task, `phase` for a part.
    pub fn span(
        &self,
        name: &str,
        cat: &str,
        row: usize,
        start: Instant,
        dur: Duration,
        args: Value,
    ) {
        let ts = start.saturating_duration_since(self.origin).as_micros() as u64;
        self.events.lock().expect("trace lock").push(json!({
            "name": name,
            "cat": cat,
            "ph": "X",
            "ts": ts,
            "dur": dur.as_micros() as u64,
            "pid": 1,
            "tid": row,
            "args": args,
        }));
    }

    /// A moment (`ph: i`) on `row`, such as a log line arriving from a task.
    pub fn instant(&self, name: &str, cat: &str, row: usize, at: Instant) {
        let ts = at.saturating_duration_since(self.origin).as_micros() as u64;
        self.events.lock().expect("trace lock").push(json!({
            "name": name,
            "cat": cat,
            "ph": "i",
            "s": "t",
            "ts": ts,
            "pid": 1,
            "tid": row,
        }));
    }

    /// The JSON document, with row names for `slots` container slots.
    pub fn to_json(&self, slots: usize) -> Value {
        let mut events = vec![
            json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "flamenco-build"}}),
            json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": CACHE_ROW, "args": {"name": "cache (no container)"}}),
        ];
        for slot in 1..=slots {
            events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": slot, "args": {"name": format!("slot {slot}")}}));
        }
        events.extend(self.events.lock().expect("trace lock").iter().cloned());
        json!({ "traceEvents": events, "displayTimeUnit": "ms" })
    }

    pub fn write(&self, path: &std::path::Path, slots: usize) -> std::io::Result<()> {
        let bytes =
            serde_json::to_vec_pretty(&self.to_json(slots)).map_err(std::io::Error::other)?;
        std::fs::write(path, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_trace_events() {
        let t0 = Instant::now();
        let t = Trace::new(t0);
        t.span(
            "gen: run",
            "phase",
            2,
            t0 + Duration::from_millis(5),
            Duration::from_millis(10),
            json!({}),
        );
        let v = t.to_json(2);
        let ev = v["traceEvents"].as_array().unwrap();
        let span = ev.iter().find(|e| e["ph"] == "X").unwrap();
        assert_eq!(
            (
                span["ts"].as_u64(),
                span["dur"].as_u64(),
                span["tid"].as_u64()
            ),
            (Some(5000), Some(10000), Some(2))
        );
        assert_eq!(ev.iter().filter(|e| e["name"] == "thread_name").count(), 3);
    }
}
