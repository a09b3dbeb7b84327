//! `flamenco-build worker`: a bot of the Remote Workers API (BuildGrid schedules to it) that runs
//! each lease through the same Docker executor as a local build. [`session`] keeps the bot
//! sessions, [`lease`] runs one lease ([`task`], [`inputs`], [`result`]), [`properties`] says what
//! the engine can run, [`shutdown`] stops it cleanly.

mod backoff;
mod cas;
mod inputs;
mod lease;
mod properties;
mod result;
mod session;
mod shutdown;
mod status;
mod task;

use std::sync::Arc;
use std::time::Duration;

use googleapis_tonic_google_devtools_remoteworkers_v1test2::google::devtools::remoteworkers::v1test2::bots_client::BotsClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::{Error, Result};
use crate::executor::{DockerEngine, DockerExecutor, DockerSettings, Reaper, RunRegistry};
use crate::remote::RemoteSettings;
use crate::remote::grpc::GrpcStorage;
use lease::Runner;
use session::Session;
use shutdown::Stop;

/// The cache volume worker tasks mount at /cache unless told otherwise.
pub const WORKER_CACHE_VOLUME: &str = "flamenco-build-worker-cache";

/// The label naming the worker on everything it creates.
const LABEL_WORKER: &str = "dev.flamenco-build.worker";

/// `flamenco-build worker`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The engine's Remote Workers API and CAS (grpc://HOST:PORT or grpcs://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The REAPI instance name.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub instance: String,
    /// At most N leases at once (one bot session each).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub capacity: u16,
    /// The Docker engine tasks run on (unix://PATH or tcp://HOST:PORT; default: DOCKER_HOST, else
    /// the local socket).
    #[arg(long, value_name = "DOCKER_HOST")]
    pub engine: Option<String>,
    /// The bot's name at the engine (default: HOSTNAME-PID).
    #[arg(long, value_name = "ID")]
    pub bot_id: Option<String>,
    /// The volume every task mounts at /cache.
    #[arg(long, value_name = "NAME", default_value = WORKER_CACHE_VOLUME)]
    pub cache_volume: String,
    /// Advertise only this image reference (e.g. flamenco-build/go:1.23; repeatable). Default:
    /// every tagged image of the engine. BuildGrid matches on every subset of a worker's
    /// properties, so an engine with many tags makes registration slow.
    #[arg(long = "image", value_name = "REFERENCE")]
    pub images: Vec<String>,
    /// After SIGTERM, how long held leases may take to finish before they are given back.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub grace: u64,
}

/// Runs the worker until SIGTERM or SIGINT.
pub async fn run(args: &WorkerArgs, labels: &[(String, String)]) -> Result<()> {
    let bad = |reason: String| Error::RemoteSetting(format!("--server: {reason}"));
    let bot_id = args
        .bot_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", crate::executor::hostname(), std::process::id()));
    let host = args.engine.clone().unwrap_or_else(|| {
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
    });
    let channel = channel(&args.server).map_err(bad)?;
    let storage = GrpcStorage::connect(&cas_settings(args)).map_err(|e| bad(e.to_string()))?;
    let cas = cas::WorkerCas::new(Arc::new(storage));
    let scratch = tempfile::Builder::new()
        .prefix("flamenco-build-worker-")
        .tempdir()
        .map_err(Error::io(
            "cannot create a scratch folder in",
            std::env::temp_dir(),
        ))?;
    let stop = Stop::on_signals(Duration::from_secs(args.grace))?;
    let run_id = super::cli::run_id();
    let mut sessions = Vec::new();
    let mut engines = Vec::new();
    for i in 0..args.capacity {
        let id = match args.capacity {
            1 => bot_id.clone(),
            _ => format!("{bot_id}-{i}"),
        };
        let mut labels = labels.to_vec();
        labels.push((LABEL_WORKER.to_string(), id.clone()));
        // An engine handle of its own per session: a cancelled lease's containers are its own.
        let engine = DockerEngine::connect_to(&host, &format!("{run_id}-{i}"), &labels)?;
        engine.ensure_is_docker().await?;
        let registry = RunRegistry::new(scratch.path().join("runs"));
        let settings = DockerSettings {
            cache_volume: args.cache_volume.clone(),
        };
        let executor =
            DockerExecutor::new(engine.clone(), settings, Reaper::new(&engine, registry));
        let runner = Runner {
            cas: cas.clone(),
            engine: engine.clone(),
            executor,
            worker: id.clone(),
            user: (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
            scratch: scratch.path().to_path_buf(),
            images: args.images.clone(),
        };
        engines.push(engine);
        let session = Session {
            client: BotsClient::new(channel.clone()),
            instance: args.instance.clone(),
            bot_id: id,
            server: crate::remote::redact(&args.server),
            runner: Arc::new(runner),
            stop: stop.clone(),
        };
        sessions.push(tokio::spawn(session.run()));
    }
    eprintln!(
        "worker {bot_id}: {} lease(s) at once from {}, tasks on {host}",
        args.capacity,
        crate::remote::redact(&args.server)
    );
    for s in sessions {
        let _ = s.await;
    }
    for e in engines {
        e.remove_run_containers().await;
    }
    eprintln!("worker {bot_id}: stopped");
    Ok(())
}

/// The CAS is the engine's own: same server, same instance.
fn cas_settings(args: &WorkerArgs) -> RemoteSettings {
    RemoteSettings {
        cache: args.server.clone(),
        instance: args.instance.clone(),
        upload: true,
        timeout: Duration::from_secs(120),
        headers: Vec::new(),
        sign_key: None,
        s3_endpoint: None,
        s3_region: None,
    }
}

/// A lazily connected channel to the Bots service at `url` (the CAS client's own address rules).
fn channel(url: &str) -> std::result::Result<Channel, String> {
    let (uri, tls) = crate::remote::grpc::names::endpoint_uri(url)?;
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| format!("not a server address: {e}"))?
        .connect_timeout(Duration::from_secs(10));
    if tls {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().with_native_roots())
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
}
