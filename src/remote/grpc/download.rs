//! Blobs out of the CAS into new files: small ones in BatchReadBlobs calls, large ones streamed
//! by ByteStream.Read straight into the file. Every blob is checked against its digest before
//! the call returns, and on any failure no target file is left.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::{ReadRequest, ReadResponse};
use futures_util::{FutureExt, StreamExt, TryStreamExt, future::BoxFuture, stream};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{GrpcStorage, IN_FLIGHT, batch, blob_digest, names};
use crate::cache::{BlobRead, BlobRef};
use crate::remote::RemoteError;
use crate::remote::output_tree::{Trees, tree_blobs};

impl GrpcStorage {
    pub(crate) async fn read_all(&self, blobs: Vec<BlobRead>) -> Result<(), RemoteError> {
        let targets: Vec<PathBuf> = blobs.iter().map(|b| b.to.clone()).collect();
        let result = self.read_each(blobs).await;
        if result.is_err() {
            for t in targets {
                let _ = std::fs::remove_file(t);
            }
        }
        result
    }

    async fn read_each(&self, blobs: Vec<BlobRead>) -> Result<(), RemoteError> {
        // The empty blob is never asked for (REAPI: always there); its digest is still checked.
        let (empty, blobs): (Vec<BlobRead>, Vec<BlobRead>) =
            blobs.into_iter().partition(|r| r.blob.size == 0);
        for r in &empty {
            verify(&r.blob, &[]).map_err(|reason| self.bad(reason))?;
            write_new(&r.to, &[], r.mode)?;
        }
        if blobs.is_empty() {
            return Ok(());
        }
        let limit = self.batch_limit().await?;
        let (batches, large) = batch::split(blobs, |r| r.blob.size, limit);
        let jobs: Vec<BoxFuture<'_, Result<(), RemoteError>>> = batches
            .into_iter()
            .map(|b| self.read_batch(b).boxed())
            .chain(large.into_iter().map(|r| self.read_stream(r).boxed()))
            .collect();
        stream::iter(jobs)
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn read_batch(&self, batch: Vec<BlobRead>) -> Result<(), RemoteError> {
        let _room = self.hold(batch.iter().map(|r| r.blob.size).sum()).await?;
        let mut digests: Vec<re::Digest> = batch.iter().map(|r| blob_digest(&r.blob)).collect();
        digests.sort_by(|a, b| a.hash.cmp(&b.hash));
        digests.dedup();
        let request = re::BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests,
            ..Default::default()
        };
        let answer = self
            .cas()?
            .batch_read_blobs(request)
            .await
            .map_err(|s| self.status(s))?;
        let mut got: HashMap<String, Vec<u8>> = HashMap::new();
        for r in answer.into_inner().responses {
            let hash = r.digest.map(|d| d.hash).unwrap_or_default();
            if let Some(e) = self.blob_status(&hash, r.status) {
                return Err(e);
            }
            if r.compressor != 0 {
                return Err(self.bad(format!("blob {hash} came compressed, unasked")));
            }
            got.insert(hash, r.data);
        }
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || write_batch(&server, &batch, &got))
            .await
            .map_err(|e| RemoteError::Local(format!("writing restored files failed: {e}")))?
    }

    async fn read_stream(&self, r: BlobRead) -> Result<(), RemoteError> {
        // A message being received and one being written (servers send about 1 MiB each).
        let _room = self.hold(2 * 1024 * 1024).await?;
        let not_there = |s| self.not_there(&r.blob, s);
        let mut body = self.open_read(&r.blob).await?;
        let local = |e: std::io::Error| cannot_write(&r.to, e);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&r.to)
            .await
            .map_err(local)?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        while let Some(message) = body.message().await.map_err(not_there)? {
            size += message.data.len() as u64;
            if size > r.blob.size {
                break;
            }
            hash.update(&message.data);
            file.write_all(&message.data).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        if size != r.blob.size || hex::encode(hash.finalize()) != r.blob.sha256 {
            return Err(self.bad(mismatch(&r.blob, size)));
        }
        let mode = std::fs::Permissions::from_mode(r.mode);
        file.set_permissions(mode).await.map_err(local)
    }
}

impl GrpcStorage {
    /// The tree blobs a result's output folders name, each checked, in memory.
    pub(crate) async fn fetch_trees(
        &self,
        result: &re::ActionResult,
    ) -> Result<Trees, RemoteError> {
        let mut trees = Trees::new();
        for blob in tree_blobs(result).map_err(|r| self.bad(r))? {
            let bytes = self.read_bytes(&blob).await?;
            trees.insert(blob.sha256, bytes);
        }
        Ok(trees)
    }

    /// ByteStream.Read of a whole blob: the stream of its pieces.
    async fn open_read(
        &self,
        blob: &BlobRef,
    ) -> Result<tonic::Streaming<ReadResponse>, RemoteError> {
        let request = ReadRequest {
            resource_name: names::read_name(&self.instance, blob),
            read_offset: 0,
            read_limit: 0,
        };
        let body = self.bytestream()?.read(request).await;
        Ok(body.map_err(|s| self.not_there(blob, s))?.into_inner())
    }

    /// A failed read: NOT_FOUND names the blob, anything else is the server's status.
    fn not_there(&self, blob: &BlobRef, s: tonic::Status) -> RemoteError {
        match s.code() {
            tonic::Code::NotFound => self.bad(format!("blob {} is missing", blob.sha256)),
            _ => self.status(s),
        }
    }

    /// One blob into memory, streamed by ByteStream.Read (any size), checked against its digest.
    async fn read_bytes(&self, blob: &BlobRef) -> Result<Vec<u8>, RemoteError> {
        if blob.size == 0 {
            verify(blob, &[]).map_err(|r| self.bad(r))?;
            return Ok(Vec::new());
        }
        let _room = self.hold(blob.size).await?;
        let not_there = |s| self.not_there(blob, s);
        let mut body = self.open_read(blob).await?;
        let mut data = Vec::new();
        while let Some(m) = body.message().await.map_err(not_there)? {
            // Never more than the digest says: a server cannot make us hold more.
            if (data.len() + m.data.len()) as u64 > blob.size {
                return Err(self.bad(mismatch(blob, (data.len() + m.data.len()) as u64)));
            }
            data.extend_from_slice(&m.data);
        }
        verify(blob, &data).map_err(|r| self.bad(r))?;
        Ok(data)
    }
}

/// A batch's blobs, each checked, into their files.
fn write_batch(
    server: &str,
    batch: &[BlobRead],
    got: &HashMap<String, Vec<u8>>,
) -> Result<(), RemoteError> {
    let bad = |reason| RemoteError::BadAnswer {
        server: server.to_string(),
        reason,
    };
    for r in batch {
        let Some(data) = got.get(&r.blob.sha256) else {
            return Err(bad(format!(
                "blob {} is missing from the answer",
                r.blob.sha256
            )));
        };
        verify(&r.blob, data).map_err(bad)?;
        write_new(&r.to, data, r.mode)?;
    }
    Ok(())
}

/// Why `data` is not `blob`, if it is not.
fn verify(blob: &BlobRef, data: &[u8]) -> Result<(), String> {
    let size = data.len() as u64;
    if size != blob.size || hex::encode(Sha256::digest(data)) != blob.sha256 {
        return Err(mismatch(blob, size));
    }
    Ok(())
}

fn mismatch(blob: &BlobRef, size: u64) -> String {
    format!(
        "blob {} does not match its SHA-256 ({size} bytes received, {} expected)",
        blob.sha256, blob.size
    )
}

/// A new file holding `data`, with `mode` set once it is written.
fn write_new(to: &Path, data: &[u8], mode: u32) -> Result<(), RemoteError> {
    let local = |e| cannot_write(to, e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(local)?;
    file.write_all(data).map_err(local)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(local)
}

fn cannot_write(path: &Path, e: std::io::Error) -> RemoteError {
    RemoteError::Local(format!("cannot write {}: {e}", path.display()))
}
