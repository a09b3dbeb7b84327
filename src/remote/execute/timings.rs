//! Where a remote task's time went, in the phases of a local run: the engine's queue as
//! `create`, our upload and the worker's input fetch as `upload`, the execution as `run`, the
//! worker's output upload and our download as `download`. The engine's clocks are its own, so
//! only differences between its timestamps are used.

use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::protobuf::Timestamp;

use crate::executor::Timings;

/// What we measured ourselves around the engine's part.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Measured {
    pub(super) upload: Duration,
    /// From Execute to the operation's end.
    pub(super) execute: Duration,
    pub(super) download: Duration,
}

/// The phases of one remote run. A result the engine answered from its action cache ran
/// elsewhere, earlier: its timestamps say nothing of this build.
pub(super) fn timings(
    meta: Option<&re::ExecutedActionMetadata>,
    cached: bool,
    ours: Measured,
) -> Timings {
    let worker = meta
        .map(|m| m.worker.clone())
        .filter(|w| !w.is_empty() && !cached);
    let mut t = Timings {
        upload: ours.upload,
        run: ours.execute,
        download: ours.download,
        worker,
        engine_cached: cached,
        ..Timings::default()
    };
    let Some(m) = meta.filter(|_| !cached) else {
        return t;
    };
    let queue = between(&m.queued_timestamp, &m.worker_start_timestamp);
    let fetch = between(
        &m.input_fetch_start_timestamp,
        &m.input_fetch_completed_timestamp,
    );
    let exec = between(
        &m.execution_start_timestamp,
        &m.execution_completed_timestamp,
    );
    let upload = between(
        &m.output_upload_start_timestamp,
        &m.output_upload_completed_timestamp,
    );
    if let Some(exec) = exec {
        t.create = queue.unwrap_or_default();
        t.upload += fetch.unwrap_or_default();
        t.download += upload.unwrap_or_default();
        t.run = exec;
        // What the engine spent beyond these (scheduling, its own bookkeeping).
        let told = t.create + fetch.unwrap_or_default() + exec + upload.unwrap_or_default();
        t.remove = ours.execute.saturating_sub(told);
    }
    t
}

fn between(a: &Option<Timestamp>, b: &Option<Timestamp>) -> Option<Duration> {
    let (a, b) = (a.as_ref()?, b.as_ref()?);
    let nanos = |t: &Timestamp| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let d = nanos(b) - nanos(a);
    u64::try_from(d).ok().map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64, ms: i32) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: s,
            nanos: ms * 1_000_000,
        })
    }

    #[test]
    fn the_engines_phases_and_ours_add_up() {
        let meta = re::ExecutedActionMetadata {
            worker: "bot-a".into(),
            queued_timestamp: at(100, 0),
            worker_start_timestamp: at(100, 500),
            input_fetch_start_timestamp: at(100, 500),
            input_fetch_completed_timestamp: at(100, 700),
            execution_start_timestamp: at(100, 700),
            execution_completed_timestamp: at(102, 700),
            output_upload_start_timestamp: at(102, 700),
            output_upload_completed_timestamp: at(102, 800),
            ..Default::default()
        };
        let ours = Measured {
            upload: Duration::from_millis(30),
            execute: Duration::from_millis(3000),
            download: Duration::from_millis(20),
        };
        let t = timings(Some(&meta), false, ours);
        assert_eq!(t.worker.as_deref(), Some("bot-a"));
        assert_eq!(t.create, Duration::from_millis(500));
        assert_eq!(t.upload, Duration::from_millis(230));
        assert_eq!(t.run, Duration::from_secs(2));
        assert_eq!(t.download, Duration::from_millis(120));
        assert_eq!(t.remove, Duration::from_millis(200));
        let cached = timings(Some(&meta), true, ours);
        assert_eq!(cached.worker, None);
        assert!(cached.engine_cached && !t.engine_cached);
        assert_eq!(cached.run, ours.execute);
        assert_eq!(
            between(&at(5, 0), &at(4, 0)),
            None,
            "a clock going back is no time"
        );
    }
}
