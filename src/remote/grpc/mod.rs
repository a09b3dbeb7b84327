//! REAPI over gRPC (bazel-remote, BuildBuddy, Buildbarn, NativeLink, BuildGrid): the action cache
//! holds results, the CAS and ByteStream hold blobs. The channel is opened on first use, so a
//! build that never asks the server costs nothing; the guard bounds every call's time.

mod batch;
mod capabilities;
mod download;
mod headers;
pub(crate) use headers::Headers;
pub(crate) mod names;
mod status;
mod upload;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use bazel_remote_apis::google::longrunning::operations_client::OperationsClient;
use futures_util::{StreamExt, TryStreamExt, stream};
use re::action_cache_client::ActionCacheClient;
use re::capabilities_client::CapabilitiesClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use re::execution_client::ExecutionClient;
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::action_result::{from_action_result, to_action_result};
use super::{RemoteError, RemoteSettings};
use crate::cache::{ActionRecord, BlobRead, BlobRef, BlobWrite, CacheError, Storage};
use crate::fingerprint::TaskKey;

/// Requests in flight at once: enough to hide a round trip, few enough for a small server.
const IN_FLIGHT: usize = 8;

/// The largest message we decode: a full batch (see [`batch::DEFAULT_MAX`]) with room to spare.
const MAX_MESSAGE: usize = 2 * batch::DEFAULT_MAX as usize;

pub(crate) type Service = InterceptedService<Channel, Headers>;

/// A REAPI server as a cache tier; the remote executor moves its blobs through one too.
pub(crate) struct GrpcStorage {
    server: String,
    instance: String,
    timeout: Duration,
    sign_key: Option<Vec<u8>>,
    endpoint: Endpoint,
    tls: bool,
    headers: Headers,
    /// Made on first use: TLS loads the system's roots, which a no-change build must not pay.
    channel: OnceLock<Result<Channel, String>>,
    /// The bytes a batch call may carry, from GetCapabilities on the first blob transfer.
    batch_limit: tokio::sync::OnceCell<u64>,
    /// Blob bytes in memory at once (see [`batch::permits`]).
    budget: tokio::sync::Semaphore,
}

impl GrpcStorage {
    /// Checks the settings; connects nothing yet.
    pub(crate) fn connect(settings: &RemoteSettings) -> Result<GrpcStorage, RemoteError> {
        let server = settings.shown();
        let unusable = |reason| RemoteError::Unavailable {
            server: server.clone(),
            reason,
        };
        let (uri, tls) = names::endpoint_uri(&settings.cache).map_err(unusable)?;
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| unusable(format!("not a server address: {e}")))?
            .connect_timeout(settings.timeout);
        Ok(GrpcStorage {
            headers: Headers::new(&settings.headers).map_err(unusable)?,
            server,
            instance: settings.instance.clone(),
            timeout: settings.timeout,
            sign_key: settings.sign_key.clone(),
            endpoint,
            tls,
            channel: OnceLock::new(),
            batch_limit: tokio::sync::OnceCell::new(),
            budget: batch::budget(),
        })
    }

    fn service(&self) -> Result<Service, RemoteError> {
        let channel = self.channel.get_or_init(|| {
            let mut endpoint = self.endpoint.clone();
            if self.tls {
                let tls = ClientTlsConfig::new().with_native_roots();
                endpoint = endpoint
                    .tls_config(tls)
                    .map_err(|e| format!("cannot set up TLS: {e}"))?;
            }
            Ok(endpoint.connect_lazy())
        });
        match channel {
            Ok(c) => Ok(InterceptedService::new(c.clone(), self.headers.clone())),
            Err(reason) => Err(RemoteError::Unavailable {
                server: self.server.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Keeps a long call (an execution followed for minutes) alive and notices a server gone
    /// silent: HTTP/2 pings. Only for the executor: some caches refuse frequent pings.
    pub(crate) fn with_keep_alive(mut self) -> GrpcStorage {
        self.endpoint = self
            .endpoint
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        self
    }

    /// The server as it may be shown.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    pub(crate) fn execution(&self) -> Result<ExecutionClient<Service>, RemoteError> {
        Ok(ExecutionClient::new(self.service()?).max_decoding_message_size(MAX_MESSAGE))
    }

    pub(crate) fn operations(&self) -> Result<OperationsClient<Service>, RemoteError> {
        Ok(OperationsClient::new(self.service()?))
    }

    fn action_cache(&self) -> Result<ActionCacheClient<Service>, RemoteError> {
        Ok(ActionCacheClient::new(self.service()?))
    }

    fn cas(&self) -> Result<ContentAddressableStorageClient<Service>, RemoteError> {
        Ok(ContentAddressableStorageClient::new(self.service()?)
            .max_decoding_message_size(MAX_MESSAGE))
    }

    pub(crate) fn bytestream(&self) -> Result<ByteStreamClient<Service>, RemoteError> {
        Ok(ByteStreamClient::new(self.service()?).max_decoding_message_size(MAX_MESSAGE))
    }

    fn capabilities_client(&self) -> Result<CapabilitiesClient<Service>, RemoteError> {
        Ok(CapabilitiesClient::new(self.service()?))
    }

    pub(crate) fn status(&self, s: tonic::Status) -> RemoteError {
        status::to_remote(&self.server, self.timeout, &s)
    }

    /// A batch answer's per-blob status, as an error when it is not OK.
    fn blob_status(
        &self,
        hash: &str,
        s: Option<bazel_remote_apis::google::rpc::Status>,
    ) -> Option<RemoteError> {
        let s = s.filter(|s| s.code != 0)?;
        Some(status::blob_status(
            &self.server,
            self.timeout,
            hash,
            s.code,
            &s.message,
        ))
    }

    /// Waits until `bytes` of blob data may be held in memory.
    async fn hold(&self, bytes: u64) -> Result<tokio::sync::SemaphorePermit<'_>, RemoteError> {
        self.budget
            .acquire_many(batch::permits(bytes))
            .await
            .map_err(|e| RemoteError::Local(format!("no room for a batch: {e}")))
    }

    fn bad(&self, reason: String) -> RemoteError {
        RemoteError::BadAnswer {
            server: self.server.clone(),
            reason,
        }
    }

    async fn get(&self, key: &TaskKey) -> Result<Option<ActionRecord>, RemoteError> {
        let request = re::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(key_digest(key)),
            ..Default::default()
        };
        let result = match self.action_cache()?.get_action_result(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(self.status(s)),
        };
        let trees = self.fetch_trees(&result).await?;
        from_action_result(result, key, self.sign_key.as_deref(), &trees)
            .map(Some)
            .map_err(|r| self.bad(format!("the result for key {}: {r}", key.short())))
    }

    async fn put(&self, key: &TaskKey, record: &ActionRecord) -> Result<(), RemoteError> {
        let request = re::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(key_digest(key)),
            action_result: Some(to_action_result(record, key, "", self.sign_key.as_deref())),
            ..Default::default()
        };
        self.action_cache()?
            .update_action_result(request)
            .await
            .map_err(|s| self.status(s))?;
        Ok(())
    }

    pub(crate) async fn missing(&self, blobs: Vec<BlobRef>) -> Result<Vec<BlobRef>, RemoteError> {
        // The empty blob is always there (REAPI): never asked for, never sent.
        let wanted: Vec<BlobRef> = blobs.into_iter().filter(|b| b.size > 0).collect();
        let chunks: Vec<Vec<BlobRef>> = wanted
            .chunks(batch::FIND_CHUNK)
            .map(<[_]>::to_vec)
            .collect();
        let answers: Vec<Vec<(String, i64)>> = stream::iter(chunks)
            .map(|chunk| self.find_chunk(chunk))
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        let absent: HashSet<(String, i64)> = answers.into_iter().flatten().collect();
        // Only what was asked about: a server cannot make us believe in other blobs.
        let mut missing: Vec<BlobRef> = wanted
            .into_iter()
            .filter(|b| absent.contains(&(b.sha256.clone(), size_i64(b.size))))
            .collect();
        missing.sort();
        missing.dedup();
        Ok(missing)
    }

    async fn find_chunk(&self, chunk: Vec<BlobRef>) -> Result<Vec<(String, i64)>, RemoteError> {
        let request = re::FindMissingBlobsRequest {
            instance_name: self.instance.clone(),
            blob_digests: chunk.iter().map(blob_digest).collect(),
            ..Default::default()
        };
        let answer = self
            .cas()?
            .find_missing_blobs(request)
            .await
            .map_err(|s| self.status(s))?;
        let digests = answer.into_inner().missing_blob_digests;
        Ok(digests
            .into_iter()
            .map(|d| (d.hash, d.size_bytes))
            .collect())
    }
}

fn size_i64(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn key_digest(key: &TaskKey) -> re::Digest {
    re::Digest {
        hash: key.hash.clone(),
        size_bytes: size_i64(key.size),
    }
}

fn blob_digest(blob: &BlobRef) -> re::Digest {
    re::Digest {
        hash: blob.sha256.clone(),
        size_bytes: size_i64(blob.size),
    }
}

#[async_trait::async_trait]
impl Storage for GrpcStorage {
    fn describe(&self) -> String {
        self.server.clone()
    }

    async fn get_action(
        &self,
        _task: &str,
        key: &TaskKey,
    ) -> Result<Option<ActionRecord>, CacheError> {
        Ok(self.get(key).await?)
    }

    async fn put_action(
        &self,
        _task: &str,
        key: &TaskKey,
        record: &ActionRecord,
    ) -> Result<(), CacheError> {
        Ok(self.put(key, record).await?)
    }

    async fn find_missing(&self, blobs: Vec<BlobRef>) -> Result<Vec<BlobRef>, CacheError> {
        Ok(self.missing(blobs).await?)
    }

    async fn write_blobs(&self, blobs: Vec<BlobWrite>) -> Result<(), CacheError> {
        Ok(self.write_all(blobs).await?)
    }

    async fn read_blobs(&self, blobs: Vec<BlobRead>) -> Result<(), CacheError> {
        Ok(self.read_all(blobs).await?)
    }

    async fn probe(&self) -> Result<String, CacheError> {
        Ok(self.support().await?)
    }
}
