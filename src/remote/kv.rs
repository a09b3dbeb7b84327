//! A remote tier over a store of named byte objects — Bazel's HTTP cache protocol, object stores
//! (S3, GCS, Azure Blob), key-value stores (Redis), the GitHub Actions cache — with Bazel's
//! layout: `ac/<action digest hash>` holds an encoded `ActionResult`, `cas/<sha256>` a blob.
//! Each backend only moves named objects; this file makes them a [`Storage`]: results encoded,
//! signed and checked, blobs streamed to and from files and each checked against its digest.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::RemoteError;
use super::action_result::{decode, encode, from_action_result, to_action_result};
use super::output_tree::{Trees, tree_blobs};
use crate::cache::{ActionRecord, BlobRead, BlobRef, BlobWrite, CacheError, Storage};
use crate::fingerprint::TaskKey;
use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

/// A stream of an object's bytes.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, RemoteError>> + Send>>;

/// How many objects move at once: enough to hide a round trip, few enough for a small server.
const IN_FLIGHT: usize = 16;

/// A store of named byte objects. Names are `ac/<hex>` or `cas/<hex>`; a backend adds its base.
#[async_trait::async_trait]
pub(crate) trait KvBackend: Send + Sync {
    /// The server, for messages: a URL without credentials.
    fn describe(&self) -> String;
    /// The whole object, None when absent (for action results: small).
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RemoteError>;
    /// The object as a stream, None when absent (for blobs: any size).
    async fn get_stream(&self, name: &str) -> Result<Option<ByteStream>, RemoteError>;
    /// Whether the object exists.
    async fn exists(&self, name: &str) -> Result<bool, RemoteError>;
    /// Stores bytes under `name`.
    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), RemoteError>;
    /// Stores a file's bytes under `name`, streamed (`size` bytes).
    async fn put_file(&self, name: &str, file: &Path, size: u64) -> Result<(), RemoteError>;
}

/// A [`Storage`] over a [`KvBackend`].
pub(crate) struct KvStorage {
    backend: Arc<dyn KvBackend>,
    sign_key: Option<Vec<u8>>,
}

impl KvStorage {
    pub(crate) fn new(backend: Arc<dyn KvBackend>, sign_key: Option<Vec<u8>>) -> KvStorage {
        KvStorage { backend, sign_key }
    }

    /// The tree blobs a result's output folders name, each checked, in memory.
    async fn fetch_trees(&self, result: &re::ActionResult) -> Result<Trees, RemoteError> {
        let mut trees = Trees::new();
        for blob in tree_blobs(result).map_err(|r| self.bad(r))? {
            let Some(bytes) = self.backend.get(&cas(&blob.sha256)).await? else {
                return Err(self.bad(format!("blob {} is missing", blob.sha256)));
            };
            if bytes.len() as u64 != blob.size || hex::encode(Sha256::digest(&bytes)) != blob.sha256
            {
                return Err(self.bad(format!("blob {} does not match its SHA-256", blob.sha256)));
            }
            trees.insert(blob.sha256, bytes);
        }
        Ok(trees)
    }

    fn bad(&self, reason: String) -> RemoteError {
        RemoteError::BadAnswer {
            server: self.backend.describe(),
            reason,
        }
    }
}

fn ac(key: &TaskKey) -> String {
    format!("ac/{}", key.hash)
}

fn cas(sha256: &str) -> String {
    format!("cas/{sha256}")
}

#[async_trait::async_trait]
impl Storage for KvStorage {
    fn describe(&self) -> String {
        self.backend.describe()
    }

    async fn get_action(
        &self,
        _task: &str,
        key: &TaskKey,
    ) -> Result<Option<ActionRecord>, CacheError> {
        let Some(bytes) = self.backend.get(&ac(key)).await? else {
            return Ok(None);
        };
        let result = decode(&bytes).map_err(|r| self.bad(r))?;
        let trees = self.fetch_trees(&result).await?;
        let record = from_action_result(result, key, self.sign_key.as_deref(), &trees)
            .map_err(|r| self.bad(format!("the result for key {}: {r}", key.short())))?;
        Ok(Some(record))
    }

    async fn put_action(
        &self,
        _task: &str,
        key: &TaskKey,
        record: &ActionRecord,
    ) -> Result<(), CacheError> {
        let result = to_action_result(record, key, "", self.sign_key.as_deref());
        self.backend.put(&ac(key), encode(&result)).await?;
        Ok(())
    }

    async fn find_missing(&self, blobs: Vec<BlobRef>) -> Result<Vec<BlobRef>, CacheError> {
        let backend = &self.backend;
        let found: Vec<(BlobRef, bool)> = stream::iter(blobs)
            .map(|b| async move {
                let there = backend.exists(&cas(&b.sha256)).await?;
                Ok::<_, RemoteError>((b, there))
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        let mut missing: Vec<BlobRef> = found
            .into_iter()
            .filter(|(_, t)| !t)
            .map(|(b, _)| b)
            .collect();
        missing.sort();
        Ok(missing)
    }

    async fn write_blobs(&self, blobs: Vec<BlobWrite>) -> Result<(), CacheError> {
        let backend = &self.backend;
        stream::iter(blobs)
            .map(|w| async move {
                backend
                    .put_file(&cas(&w.blob.sha256), &w.from, w.blob.size)
                    .await
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn read_blobs(&self, blobs: Vec<BlobRead>) -> Result<(), CacheError> {
        let targets: Vec<PathBuf> = blobs.iter().map(|b| b.to.clone()).collect();
        let result = stream::iter(blobs)
            .map(|r| self.read_blob(r))
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await;
        if result.is_err() {
            for t in targets {
                let _ = std::fs::remove_file(t);
            }
        }
        result.map(|_| ()).map_err(CacheError::from)
    }
}

impl KvStorage {
    /// One blob into a new file, hashed as it arrives; a short, long or altered body is refused.
    async fn read_blob(&self, r: BlobRead) -> Result<(), RemoteError> {
        let name = cas(&r.blob.sha256);
        let Some(mut body) = self.backend.get_stream(&name).await? else {
            return Err(self.bad(format!("blob {} is missing", r.blob.sha256)));
        };
        let local =
            |e: std::io::Error| RemoteError::Local(format!("cannot write {}: {e}", r.to.display()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(r.mode)
            .open(&r.to)
            .await
            .map_err(local)?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > r.blob.size {
                break;
            }
            hash.update(&chunk);
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        let got = hex::encode(hash.finalize());
        if size != r.blob.size || got != r.blob.sha256 {
            return Err(self.bad(format!(
                "blob {} does not match its SHA-256 ({} bytes received, {} expected)",
                r.blob.sha256, size, r.blob.size
            )));
        }
        // The mode exactly as recorded: `open` left the umask's mark on it.
        let mode = std::fs::Permissions::from_mode(r.mode);
        tokio::fs::set_permissions(&r.to, mode)
            .await
            .map_err(local)?;
        Ok(())
    }
}
