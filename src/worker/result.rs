//! A finished run as REAPI's `ActionResult`: the staged outputs hashed as a local build hashes
//! them, sent to the CAS, recorded with the cache's own mapping; the log as stdout; the
//! execution timestamps of each phase.

use std::path::Path;
use std::time::SystemTime;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::protobuf::Timestamp;

use super::cas::WorkerCas;
use super::status::Refusal;
use crate::cache::{ActionRecord, BlobWrite};
use crate::config::OutputPath;
use crate::fingerprint::{InputFiles, Manifest, StatCache, TaskKey};
use crate::remote::action_result::to_action_result;

/// When each phase of a lease began and ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phases {
    pub(crate) worker_start: SystemTime,
    pub(crate) fetch_start: SystemTime,
    pub(crate) fetch_done: SystemTime,
    pub(crate) run_start: SystemTime,
    pub(crate) run_done: SystemTime,
    pub(crate) upload_start: SystemTime,
}

impl Phases {
    pub(crate) fn new() -> Phases {
        let now = SystemTime::now();
        Phases {
            worker_start: now,
            fetch_start: now,
            fetch_done: now,
            run_start: now,
            run_done: now,
            upload_start: now,
        }
    }
}

/// The manifest of what the run staged (files, links, the folders of folder outputs).
pub(crate) fn staged_manifest(staging: &Path, outputs: &[OutputPath]) -> Result<Manifest, Refusal> {
    let files = InputFiles::output_tree(staging, outputs).map_err(|e| Refusal::of_run(&e))?;
    StatCache::in_memory()
        .manifest(&files)
        .map_err(|e| Refusal::retry(format!("cannot hash the outputs: {e}")))
}

/// Sends the record's files from `staging` to the CAS.
pub(crate) async fn upload_outputs(
    cas: &WorkerCas,
    record: &ActionRecord,
    staging: &Path,
) -> Result<(), Refusal> {
    let mut writes = Vec::new();
    for blob in record.blobs() {
        // Any file of that content will do: each is read back checked against the digest.
        let rel = record
            .outputs
            .iter()
            .find(|(_, d)| d.link.is_none() && !d.dir && d.sha256 == blob.sha256)
            .map(|(rel, _)| rel.clone())
            .expect("a blob of the record names one of its files");
        writes.push(BlobWrite {
            blob,
            from: staging.join(rel),
        });
    }
    cas.write(writes).await
}

/// The `ActionResult` of a run that exited with `exit_code`, its log stored under `stdout`.
pub(crate) fn action_result(
    record: &ActionRecord,
    key: &TaskKey,
    worker: &str,
    exit_code: i32,
    stdout: re::Digest,
    phases: &Phases,
) -> re::ActionResult {
    let mut result = to_action_result(record, key, worker, None);
    result.exit_code = exit_code;
    result.stdout_digest = Some(stdout);
    let m = result
        .execution_metadata
        .get_or_insert_with(Default::default);
    let at = |t: SystemTime| Some(timestamp(t));
    m.worker_start_timestamp = at(phases.worker_start);
    m.input_fetch_start_timestamp = at(phases.fetch_start);
    m.input_fetch_completed_timestamp = at(phases.fetch_done);
    m.execution_start_timestamp = at(phases.run_start);
    m.execution_completed_timestamp = at(phases.run_done);
    m.output_upload_start_timestamp = at(phases.upload_start);
    let now = SystemTime::now();
    m.output_upload_completed_timestamp = at(now);
    m.worker_completed_timestamp = at(now);
    result
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
