//! One lease, start to end: the Action (sent whole or by digest), its Command and input tree from
//! the CAS into a scratch folder, the task run by the same Docker executor as a local build, the
//! outputs and the log sent to the CAS, and the `ActionResult` — or a status saying why not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bollard::errors::Error as BollardError;
use prost::Message;

use super::cas::WorkerCas;
use super::inputs::fetch_inputs;
use super::result::{Phases, action_result, staged_manifest, upload_outputs};
use super::status::Refusal;
use super::task::{LeaseTask, task_of};
use crate::cache::ActionRecord;
use crate::error::Error;
use crate::executor::{DockerEngine, DockerExecutor, Executor, TaskJob};
use crate::fingerprint::action::digest_of;
use crate::fingerprint::{Manifest, TaskKey};

const ACTION_TYPE: &str = "build.bazel.remote.execution.v2.Action";
const DIGEST_TYPE: &str = "build.bazel.remote.execution.v2.Digest";

/// How a lease ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The task ran: its result, whatever its exit code.
    Ran(Box<re::ActionResult>),
    /// It did not run, or its run yielded no result.
    Refused(Refusal),
}

/// What runs a session's leases.
pub(crate) struct Runner {
    pub(crate) cas: WorkerCas,
    pub(crate) engine: DockerEngine,
    pub(crate) executor: DockerExecutor,
    /// The worker's name in each result.
    pub(crate) worker: String,
    pub(crate) user: (u32, u32),
    /// Each lease gets a folder below it, removed when the lease ends.
    pub(crate) scratch: PathBuf,
    /// The image references to advertise (`--image`); empty: every tagged image.
    pub(crate) images: Vec<String>,
}

impl Runner {
    /// Runs the lease whose payload is `payload`.
    pub(crate) async fn run(&self, payload: Option<&prost_types::Any>) -> Outcome {
        let mut phases = Phases::new();
        let dir = match tempfile::tempdir_in(&self.scratch) {
            Ok(d) => d,
            Err(e) => return Outcome::Refused(Refusal::retry(format!("no scratch folder: {e}"))),
        };
        match self.run_in(payload, dir.path(), &mut phases).await {
            Ok(result) => Outcome::Ran(Box::new(result)),
            Err(refusal) => Outcome::Refused(refusal),
        }
    }

    async fn run_in(
        &self,
        payload: Option<&prost_types::Any>,
        dir: &Path,
        phases: &mut Phases,
    ) -> Result<re::ActionResult, Refusal> {
        let (tmp, inputs, staging) = (dir.join("tmp"), dir.join("in"), dir.join("out"));
        for d in [&tmp, &inputs, &staging] {
            std::fs::create_dir_all(d)
                .map_err(|e| Refusal::retry(format!("cannot create {}: {e}", d.display())))?;
        }
        let (action, key) = self.action(payload, &tmp).await?;
        let command_digest = action.command_digest.clone().unwrap_or_default();
        let command: re::Command = self.cas.message(&command_digest, "Command", &tmp).await?;
        let lt = task_of(&format!("remote:{}", key.short()), &action, &command)?;
        self.check_image(&lt).await?;
        phases.fetch_start = SystemTime::now();
        let root = action.input_root_digest.clone().unwrap_or_default();
        let files = fetch_inputs(&self.cas, &root, &inputs, &tmp).await?;
        phases.fetch_done = SystemTime::now();
        let log = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = log.clone();
        let job = TaskJob {
            task: &lt.task,
            image_id: lt.image_id.clone(),
            env: lt.env.clone(),
            files,
            user: self.user,
            log: Arc::new(move |line: &str| {
                let mut l = sink.lock().expect("lock");
                l.extend_from_slice(line.as_bytes());
                l.push(b'\n');
            }),
            action: None,
            fresh: false,
        };
        phases.run_start = SystemTime::now();
        let ran = self.executor.run(&job, &staging).await;
        phases.run_done = SystemTime::now();
        let (exit_code, outputs) = match ran {
            Ok(t) => {
                tracing::debug!(task = %lt.task.name, took = ?t.total(), "ran");
                (0, staged_manifest(&staging, &lt.task.outputs)?)
            }
            Err(Error::TaskFailed { code, killed, .. }) => {
                if let Some(why) = killed {
                    let mut l = log.lock().expect("lock");
                    l.extend_from_slice(format!("[worker] stopped: {why}\n").as_bytes());
                }
                (i32::try_from(code).unwrap_or(1), Manifest::new())
            }
            Err(e) => return Err(Refusal::of_run(&e)),
        };
        phases.upload_start = SystemTime::now();
        let record = ActionRecord {
            outputs,
            image_id: lt.image_id.clone(),
            run_ms: phases
                .run_done
                .duration_since(phases.run_start)
                .map_or(0, |d| d.as_millis() as u64),
        };
        upload_outputs(&self.cas, &record, &staging).await?;
        let log = log.lock().expect("lock").clone();
        let stdout = self.cas.write_bytes(&log, &tmp).await?;
        Ok(action_result(
            &record,
            &key,
            &self.worker,
            exit_code,
            stdout,
            phases,
        ))
    }

    /// The lease's Action and its digest (the task key): sent whole, or by digest.
    async fn action(
        &self,
        payload: Option<&prost_types::Any>,
        tmp: &Path,
    ) -> Result<(re::Action, TaskKey), Refusal> {
        let payload = payload.ok_or_else(|| Refusal::invalid("the lease has no payload"))?;
        let key = |d: &re::Digest| TaskKey::new(d.hash.clone(), d.size_bytes.max(0) as u64);
        if payload.type_url.ends_with(ACTION_TYPE) {
            let action = re::Action::decode(payload.value.as_slice())
                .map_err(|e| Refusal::invalid(format!("the lease's Action: {e}")))?;
            let digest = digest_of(&payload.value);
            return Ok((action, key(&digest)));
        }
        if payload.type_url.ends_with(DIGEST_TYPE) {
            let digest = re::Digest::decode(payload.value.as_slice())
                .map_err(|e| Refusal::invalid(format!("the lease's Digest: {e}")))?;
            let action = self.cas.message(&digest, "Action", tmp).await?;
            return Ok((action, key(&digest)));
        }
        Err(Refusal::invalid(format!(
            "a lease payload of type {} is neither an Action nor its Digest",
            payload.type_url
        )))
    }

    /// Fails, for good, when this engine lacks the exact image the action names: the engine
    /// must not hand it to this worker again and again.
    async fn check_image(&self, lt: &LeaseTask) -> Result<(), Refusal> {
        match self.engine.docker.inspect_image(&lt.image_id).await {
            Ok(_) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Refusal::precondition(format!(
                "this worker's engine ({1}) does not hold image {0}",
                lt.image,
                self.engine.host()
            ))),
            Err(e) => Err(Refusal::of_run(&self.engine.err("looking up the image")(e))),
        }
    }
}
