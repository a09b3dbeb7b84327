//! One execution on the engine: Execute, then the operation's stream followed to `done`. After
//! a dropped stream, WaitExecution on the same operation, with backoff and a bound (a new
//! Execute when the engine forgot it). A task left in the queue while nothing of the build
//! moves is cancelled: no worker can take it.

use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::longrunning::{CancelOperationRequest, Operation, operation};
use prost::Message;
use re::execution_stage::Value as Stage;
use tonic::Streaming;

use super::RemoteExecutor;
use super::in_flight::Ticket;
use super::watch::Watch;
use crate::remote::RemoteError;

/// Dropped streams in a row before the engine is given up.
const RETRIES: u32 = 5;

/// Why following an execution ended without its response.
#[derive(Debug)]
pub(super) enum Stopped {
    /// The engine cannot be used (down, refusing, gone mid-stream for good).
    Engine(RemoteError),
    /// The engine refused the execution (a status no retry mends: FAILED_PRECONDITION,
    /// INVALID_ARGUMENT, credentials refused).
    Refused(tonic::Status),
    /// The engine failed the operation itself (google.rpc.Status on the Operation).
    Failed(String),
    /// Queued for `queue_timeout` while nothing of the build moved; cancelled.
    Unplaced(Duration),
}

/// How one stream ended.
enum Followed {
    Done(Box<Operation>),
    /// Dropped; whether any message came first (then the retries start over).
    Dropped(RemoteError, bool),
    Refused(tonic::Status),
    Stuck(Duration),
}

impl RemoteExecutor {
    /// Runs the action to its end and returns the engine's answer; `watch` sees every update.
    /// `fresh`: skip the engine's cache lookup, so the action really runs.
    pub(super) async fn execute(
        &self,
        action: &re::Digest,
        fresh: bool,
        watch: &mut Watch,
    ) -> Result<re::ExecuteResponse, Stopped> {
        let ticket = self.in_flight.enter();
        let mut name: Option<String> = None;
        let mut failures = 0;
        let queued_since = Instant::now();
        loop {
            let stream = match &name {
                None => self.start(action, fresh).await,
                Some(n) => self.wait(n).await,
            };
            let followed = match stream {
                Ok(s) => {
                    self.follow(s, &mut name, &ticket, queued_since, watch)
                        .await
                }
                Err(e) if e.code() == tonic::Code::NotFound && name.is_some() => {
                    // The engine forgot the operation (restarted): execute anew.
                    name = None;
                    Followed::Dropped(self.storage.status(e), false)
                }
                Err(e) => self.dropped_or_refused(e, false),
            };
            match followed {
                Followed::Done(op) => {
                    ticket.done();
                    return response_of(*op);
                }
                Followed::Stuck(waited) => {
                    if let Some(n) = &name {
                        self.cancel(n).await;
                    }
                    ticket.done();
                    return Err(Stopped::Unplaced(waited));
                }
                Followed::Refused(s) => {
                    ticket.done();
                    return Err(Stopped::Refused(s));
                }
                Followed::Dropped(e, progressed) => {
                    failures = if progressed { 1 } else { failures + 1 };
                    if failures > RETRIES {
                        return Err(Stopped::Engine(e));
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }

    async fn start(
        &self,
        action: &re::Digest,
        fresh: bool,
    ) -> Result<Streaming<Operation>, tonic::Status> {
        let request = re::ExecuteRequest {
            instance_name: self.storage.instance().to_string(),
            skip_cache_lookup: fresh,
            action_digest: Some(action.clone()),
            digest_function: re::digest_function::Value::Sha256 as i32,
            ..Default::default()
        };
        let mut client = self.storage.execution().map_err(unusable)?;
        Ok(client.execute(request).await?.into_inner())
    }

    async fn wait(&self, name: &str) -> Result<Streaming<Operation>, tonic::Status> {
        let request = re::WaitExecutionRequest {
            name: name.to_string(),
        };
        let mut client = self.storage.execution().map_err(unusable)?;
        Ok(client.wait_execution(request).await?.into_inner())
    }

    /// Reads one stream of updates until the operation is done, the stream drops, or the task
    /// has waited in the queue too long.
    async fn follow(
        &self,
        mut stream: Streaming<Operation>,
        name: &mut Option<String>,
        ticket: &Ticket<'_>,
        queued_since: Instant,
        watch: &mut Watch,
    ) -> Followed {
        let mut progressed = false;
        let mut queued = true;
        let mut _executing = None;
        loop {
            let next = if queued {
                let deadline = self.queue.deadline(queued_since);
                tokio::select! {
                    m = stream.message() => m,
                    () = tokio::time::sleep_until(deadline.into()) => {
                        if self.queue.deadline(queued_since) <= Instant::now() {
                            return Followed::Stuck(self.queue.timeout());
                        }
                        continue;
                    }
                }
            } else {
                stream.message().await
            };
            let op = match next {
                Ok(Some(op)) => op,
                Ok(None) => {
                    let e = self.dropped("the operation's stream ended before it was done");
                    return Followed::Dropped(e, progressed);
                }
                Err(s) => return self.dropped_or_refused(s, progressed),
            };
            progressed = true;
            if let Some(meta) = metadata(&op) {
                watch.update(&meta, &self.storage);
            }
            tracing::debug!(operation = %op.name, done = op.done, stage = ?stage(&op), "operation update");
            if !op.name.is_empty() && name.as_deref() != Some(op.name.as_str()) {
                ticket.named(&op.name);
                *name = Some(op.name.clone());
            }
            if op.done {
                self.queue.moved();
                return Followed::Done(Box::new(op));
            }
            if queued && stage(&op).is_some_and(|s| s == Stage::Executing || s == Stage::Completed)
            {
                queued = false;
                _executing = Some(self.queue.executing());
            }
        }
    }

    /// A failed call: the transport or a passing state of the engine (retried), or a refusal.
    fn dropped_or_refused(&self, s: tonic::Status, progressed: bool) -> Followed {
        use tonic::Code;
        match s.code() {
            Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Cancelled => Followed::Dropped(self.storage.status(s), progressed),
            _ => Followed::Refused(s),
        }
    }

    fn dropped(&self, reason: &str) -> RemoteError {
        RemoteError::Unavailable {
            server: self.storage.server().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Asks the engine to stop an operation; best effort, bounded.
    pub(super) async fn cancel(&self, name: &str) {
        let Ok(mut client) = self.storage.operations() else {
            return;
        };
        let request = CancelOperationRequest {
            name: name.to_string(),
        };
        let bounded =
            tokio::time::timeout(self.storage_timeout(), client.cancel_operation(request));
        if let Ok(Err(s)) = bounded.await {
            tracing::debug!(operation = name, status = %s, "cancel failed");
        }
    }
}

fn unusable(e: RemoteError) -> tonic::Status {
    tonic::Status::unavailable(e.to_string())
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(failures.saturating_sub(1).min(4)))
}

fn metadata(op: &Operation) -> Option<re::ExecuteOperationMetadata> {
    let any = op.metadata.as_ref()?;
    re::ExecuteOperationMetadata::decode(any.value.as_slice()).ok()
}

fn stage(op: &Operation) -> Option<Stage> {
    Stage::try_from(metadata(op)?.stage).ok()
}

/// The `ExecuteResponse` of a finished operation.
fn response_of(op: Operation) -> Result<re::ExecuteResponse, Stopped> {
    match op.result {
        Some(operation::Result::Response(any)) => re::ExecuteResponse::decode(any.value.as_slice())
            .map_err(|e| Stopped::Failed(format!("its response does not decode: {e}"))),
        Some(operation::Result::Error(s)) => Err(Stopped::Failed(format!(
            "{:?}: {}",
            tonic::Code::from_i32(s.code),
            s.message
        ))),
        None => Err(Stopped::Failed("it ended without a response".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazel_remote_apis::google::protobuf::Any;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(9), Duration::from_secs(8));
    }

    #[test]
    fn a_done_operation_gives_its_response_or_why_not() {
        let response = re::ExecuteResponse {
            cached_result: true,
            ..Default::default()
        };
        let op = Operation {
            done: true,
            result: Some(operation::Result::Response(Any {
                type_url: "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse"
                    .into(),
                value: response.encode_to_vec(),
            })),
            ..Default::default()
        };
        assert!(response_of(op).unwrap().cached_result);
        let failed = Operation {
            done: true,
            result: Some(operation::Result::Error(
                bazel_remote_apis::google::rpc::Status {
                    code: tonic::Code::Internal as i32,
                    message: "scheduler broke".into(),
                    details: vec![],
                },
            )),
            ..Default::default()
        };
        let Err(Stopped::Failed(why)) = response_of(failed) else {
            panic!("an error operation is a failure")
        };
        assert!(why.contains("scheduler broke"), "{why}");
    }

    #[test]
    fn the_stage_comes_from_the_metadata() {
        let meta = re::ExecuteOperationMetadata {
            stage: Stage::Executing as i32,
            ..Default::default()
        };
        let op = Operation {
            metadata: Some(Any {
                type_url: String::new(),
                value: meta.encode_to_vec(),
            }),
            ..Default::default()
        };
        assert_eq!(stage(&op), Some(Stage::Executing));
        assert_eq!(stage(&Operation::default()), None);
    }
}
