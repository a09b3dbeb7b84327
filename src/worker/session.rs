//! One bot session (one lease at a time): CreateBotSession, then UpdateBotSession as a long poll
//! while idle and as a heartbeat while a lease runs; a finished lease is reported COMPLETED with
//! its result or status on the next update. When the engine goes away the session waits
//! (0.5 s doubling to 30 s) and tries again; when the engine no longer knows the session, a new
//! one is made and what the old one held is dropped (the engine has requeued it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bots::bots_client::BotsClient;
use bots::{BotSession, BotStatus, Lease, LeaseState};
use googleapis_tonic_google_devtools_remoteworkers_v1test2::google::devtools::remoteworkers::v1test2 as bots;
use googleapis_tonic_google_devtools_remoteworkers_v1test2::google::rpc::Status;
use prost::Message;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::backoff::Backoff;
use super::lease::{Outcome, Runner};
use super::properties::device_properties;
use super::shutdown::{Level, Stop};
use super::status::{self, Refusal};

/// How long the engine may hold an idle long poll (BuildGrid waits 80 % of it for work).
const LONG_POLL: Duration = Duration::from_secs(30);
/// The deadline of an update that reports or keeps a lease alive.
const SHORT_CALL: Duration = Duration::from_secs(10);
/// At most this long between heartbeats while a lease runs.
const HEARTBEAT: Duration = Duration::from_secs(10);

const RESULT_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.ActionResult";

/// A lease this session holds.
struct Held {
    lease: Lease,
    job: Option<JoinHandle<Outcome>>,
    /// Set once the job ended: reported on the next update.
    outcome: Option<Outcome>,
}

pub(crate) struct Session {
    pub(crate) client: BotsClient<Channel>,
    pub(crate) instance: String,
    pub(crate) bot_id: String,
    pub(crate) server: String,
    pub(crate) runner: Arc<Runner>,
    pub(crate) stop: Stop,
}

impl Session {
    /// Runs sessions until a stop has given back or finished everything held.
    pub(crate) async fn run(self) {
        let mut backoff = Backoff::new();
        let mut held: Option<Held> = None;
        loop {
            if self.stop.level() > Level::Running && held.is_none() {
                return;
            }
            let session = match self.create().await {
                Ok(s) => s,
                Err(e) => {
                    let wait = backoff.next();
                    eprintln!(
                        "worker {}: cannot reach {}: {e}; again in {wait:?}",
                        self.bot_id, self.server
                    );
                    self.pause(wait).await;
                    continue;
                }
            };
            backoff.reset();
            tracing::info!(bot = %self.bot_id, session = %session.name, "bot session created");
            if self.serve(session, &mut held, &mut backoff).await {
                return;
            }
            // The engine forgot the session: it requeued what it held.
            if let Some(h) = held.take() {
                self.drop_job(h).await;
            }
        }
    }

    /// Updates the session until the worker stops (true) or the engine forgets it (false).
    async fn serve(
        &self,
        mut session: BotSession,
        held: &mut Option<Held>,
        backoff: &mut Backoff,
    ) -> bool {
        let mut give_back: Vec<Lease> = Vec::new();
        // Set once a stopping session has asked what was assigned to it meanwhile.
        let mut said_goodbye = false;
        // CreateBotSession long-polls too and may already carry a lease. BuildGrid sends a lease
        // only when the session's version moves: one dropped here is never offered again.
        let draining = self.stop.level() > Level::Running;
        self.sync(held, &mut give_back, &session.leases, draining)
            .await;
        loop {
            let level = self.stop.level();
            if level == Level::Now {
                self.give_back_held(held).await;
            }
            let draining = level > Level::Running;
            if draining && held.is_none() && give_back.is_empty() {
                if said_goodbye {
                    return true;
                }
                said_goodbye = true;
            }
            session.status = if draining {
                BotStatus::BotTerminating
            } else {
                BotStatus::Ok
            } as i32;
            session.leases = leases_to_send(held, &give_back);
            let idle = held.is_none() && give_back.is_empty() && !draining;
            if idle
                && let Ok(props) = device_properties(&self.runner.engine, &self.runner.images).await
            {
                session.worker = Some(worker_of(&props));
            }
            let answer = if idle {
                tokio::select! {
                    a = self.update(&session, LONG_POLL) => a,
                    _ = self.stop.past(Level::Running) => continue,
                }
            } else {
                self.update(&session, SHORT_CALL).await
            };
            match answer {
                Ok(s) => {
                    backoff.reset();
                    give_back.clear();
                    session = s;
                }
                Err(s) if gone(&s) => {
                    eprintln!(
                        "worker {}: the engine no longer knows session {}: {}",
                        self.bot_id,
                        session.name,
                        s.message()
                    );
                    return false;
                }
                Err(s) => {
                    let wait = backoff.next();
                    eprintln!(
                        "worker {}: {} did not answer: {}; again in {wait:?}",
                        self.bot_id,
                        self.server,
                        s.message()
                    );
                    self.pause(wait).await;
                    continue;
                }
            }
            self.sync(held, &mut give_back, &session.leases, draining)
                .await;
            self.wait_for_work(held, &session).await;
        }
    }

    /// Takes in the engine's view of the leases: a reported lease is done with, a running one the
    /// engine dropped is cancelled, a new one starts (or is given back while stopping).
    async fn sync(
        &self,
        held: &mut Option<Held>,
        give_back: &mut Vec<Lease>,
        leases: &[Lease],
        draining: bool,
    ) {
        if held.as_ref().is_some_and(|h| h.outcome.is_some()) {
            *held = None;
        }
        if let Some(h) = held.as_mut() {
            match leases.iter().find(|l| l.id == h.lease.id) {
                Some(l) if l.state != LeaseState::Cancelled as i32 => h.lease.state = l.state,
                _ => {
                    tracing::info!(lease = %h.lease.id, "the engine cancelled the lease");
                    let h = held.take().expect("held");
                    self.drop_job(h).await;
                }
            }
        }
        for l in leases {
            let ours = held.as_ref().is_some_and(|h| h.lease.id == l.id);
            let live =
                l.state == LeaseState::Active as i32 || l.state == LeaseState::Pending as i32;
            if ours || !live {
                continue;
            }
            if held.is_some() || draining {
                give_back.push(l.clone());
                continue;
            }
            tracing::info!(lease = %l.id, "took a lease");
            let (runner, payload) = (self.runner.clone(), l.payload.clone());
            let job = tokio::spawn(async move { runner.run(payload.as_ref()).await });
            *held = Some(Held {
                lease: l.clone(),
                job: Some(job),
                outcome: None,
            });
        }
    }

    /// While a lease runs: until it ends, a heartbeat is due, or a stop goes further.
    async fn wait_for_work(&self, held: &mut Option<Held>, session: &BotSession) {
        let Some(h) = held.as_mut() else { return };
        let Some(job) = h.job.as_mut() else { return };
        let level = self.stop.level();
        tokio::select! {
            ended = job => {
                h.job = None;
                h.outcome = Some(ended.unwrap_or_else(|e| Outcome::Refused(Refusal::retry(format!("the lease's run failed: {e}")))));
            }
            _ = tokio::time::sleep(heartbeat(session)) => {}
            _ = self.stop.past(level), if level < Level::Now => {}
        }
    }

    /// A stop that cannot wait: the running lease goes back to the engine, retryable.
    async fn give_back_held(&self, held: &mut Option<Held>) {
        let Some(h) = held.as_mut() else { return };
        if let Some(job) = h.job.take() {
            job.abort();
            let _ = job.await;
            self.runner.engine.remove_run_containers().await;
            h.outcome = Some(Outcome::Refused(Refusal::retry("the worker was stopped")));
        }
    }

    async fn drop_job(&self, mut h: Held) {
        if let Some(job) = h.job.take() {
            job.abort();
            let _ = job.await;
            self.runner.engine.remove_run_containers().await;
        }
    }

    async fn create(&self) -> Result<BotSession, tonic::Status> {
        let props = device_properties(&self.runner.engine, &self.runner.images)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let request = bots::CreateBotSessionRequest {
            parent: self.instance.clone(),
            bot_session: Some(BotSession {
                bot_id: self.bot_id.clone(),
                status: BotStatus::Ok as i32,
                worker: Some(worker_of(&props)),
                ..Default::default()
            }),
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(LONG_POLL);
        let mut client = self.client.clone();
        let call = client.create_bot_session(request);
        match tokio::time::timeout(LONG_POLL + SHORT_CALL, call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "CreateBotSession timed out",
            )),
        }
    }

    async fn update(
        &self,
        session: &BotSession,
        deadline: Duration,
    ) -> Result<BotSession, tonic::Status> {
        let request = bots::UpdateBotSessionRequest {
            name: session.name.clone(),
            bot_session: Some(session.clone()),
            update_mask: None,
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(deadline);
        let mut client = self.client.clone();
        match tokio::time::timeout(deadline + SHORT_CALL, client.update_bot_session(request)).await
        {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "UpdateBotSession timed out",
            )),
        }
    }

    /// Waits, unless a stop that cannot wait comes first.
    async fn pause(&self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.past(Level::Draining) => {}
        }
    }
}

/// The leases as the next update reports them.
fn leases_to_send(held: &Option<Held>, give_back: &[Lease]) -> Vec<Lease> {
    let mut v = Vec::new();
    if let Some(h) = held {
        let mut l = h.lease.clone();
        if let Some(outcome) = &h.outcome {
            complete(&mut l, outcome);
        }
        v.push(l);
    }
    for l in give_back {
        let mut l = l.clone();
        complete(
            &mut l,
            &Outcome::Refused(Refusal::retry("the worker is stopping")),
        );
        v.push(l);
    }
    v
}

/// A lease marked COMPLETED with its outcome.
fn complete(lease: &mut Lease, outcome: &Outcome) {
    lease.state = LeaseState::Completed as i32;
    lease.payload = None;
    match outcome {
        Outcome::Ran(result) => {
            lease.status = Some(Status {
                code: status::OK,
                message: String::new(),
                details: Vec::new(),
            });
            lease.result = Some(prost_types::Any {
                type_url: RESULT_TYPE.into(),
                value: result.encode_to_vec(),
            });
        }
        Outcome::Refused(r) => {
            lease.status = Some(Status {
                code: r.code,
                message: r.message.clone(),
                details: Vec::new(),
            });
            lease.result = None;
        }
    }
}

fn worker_of(props: &[(String, String)]) -> bots::Worker {
    bots::Worker {
        devices: vec![bots::Device {
            handle: "docker".into(),
            properties: props
                .iter()
                .map(|(k, v)| bots::device::Property {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        }],
        ..Default::default()
    }
}

/// Whether an error means the engine no longer knows the session (else: it is away).
fn gone(s: &tonic::Status) -> bool {
    use tonic::Code::*;
    !matches!(
        s.code(),
        Unavailable | DeadlineExceeded | Cancelled | Unknown | ResourceExhausted
    )
}

/// Between heartbeats: a third of the session's remaining life, at most [`HEARTBEAT`].
fn heartbeat(session: &BotSession) -> Duration {
    let left = session.expire_time.as_ref().and_then(|t| {
        let at =
            SystemTime::UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
        at.duration_since(SystemTime::now()).ok()
    });
    match left {
        Some(left) => (left / 3).clamp(Duration::from_millis(500), HEARTBEAT),
        None => HEARTBEAT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_lease_is_reported_completed_with_its_result_or_status() {
        let lease = Lease {
            id: "j1".into(),
            state: LeaseState::Active as i32,
            ..Default::default()
        };
        let done = Held {
            lease: lease.clone(),
            job: None,
            outcome: Some(Outcome::Refused(Refusal::precondition("no image"))),
        };
        let sent = leases_to_send(&Some(done), std::slice::from_ref(&lease));
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].state, LeaseState::Completed as i32);
        assert_eq!(
            sent[0].status.as_ref().unwrap().code,
            status::FAILED_PRECONDITION
        );
        assert_eq!(
            sent[1].status.as_ref().unwrap().code,
            status::UNAVAILABLE,
            "given back, retryable"
        );
        let ran = Outcome::Ran(Box::default());
        let mut l = lease.clone();
        complete(&mut l, &ran);
        assert_eq!(l.status.unwrap().code, status::OK);
        assert!(l.result.unwrap().type_url.ends_with("ActionResult"));
    }

    #[test]
    fn an_away_engine_is_waited_for_and_a_forgotten_session_replaced() {
        assert!(!gone(&tonic::Status::unavailable("down")));
        assert!(gone(&tonic::Status::invalid_argument("Bot does not exist")));
    }
}
