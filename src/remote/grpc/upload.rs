//! Files into the CAS: small ones in BatchUpdateBlobs calls, large ones streamed by
//! ByteStream.Write in chunks straight from the file. Each file is checked against its digest as
//! it is read, so a file changed since it was hashed is never stored under the old digest.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::WriteRequest;
use futures_util::{FutureExt, Stream, StreamExt, TryStreamExt, future::BoxFuture, stream};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{GrpcStorage, IN_FLIGHT, batch, blob_digest, names, size_i64};
use crate::cache::{BlobRef, BlobWrite};
use crate::remote::RemoteError;

/// Bytes per ByteStream.Write message.
const CHUNK: u64 = 1024 * 1024;

impl GrpcStorage {
    pub(crate) async fn write_all(&self, blobs: Vec<BlobWrite>) -> Result<(), RemoteError> {
        let blobs: Vec<BlobWrite> = blobs.into_iter().filter(|w| w.blob.size > 0).collect();
        if blobs.is_empty() {
            return Ok(());
        }
        let limit = self.batch_limit().await?;
        let (batches, large) = batch::split(blobs, |w| w.blob.size, limit);
        let jobs: Vec<BoxFuture<'_, Result<(), RemoteError>>> = batches
            .into_iter()
            .map(|b| self.write_batch(b).boxed())
            .chain(large.into_iter().map(|w| self.write_stream(w).boxed()))
            .collect();
        stream::iter(jobs)
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn write_batch(&self, batch: Vec<BlobWrite>) -> Result<(), RemoteError> {
        let _room = self.hold(batch.iter().map(|w| w.blob.size).sum()).await?;
        let requests = tokio::task::spawn_blocking(move || {
            batch
                .iter()
                .map(read_checked)
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| RemoteError::Local(format!("reading files to upload failed: {e}")))??;
        let request = re::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests,
            ..Default::default()
        };
        let answer = self
            .cas()?
            .batch_update_blobs(request)
            .await
            .map_err(|s| self.status(s))?;
        for r in answer.into_inner().responses {
            let hash = r.digest.map(|d| d.hash).unwrap_or_default();
            if let Some(e) = self.blob_status(&hash, r.status) {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn write_stream(&self, w: BlobWrite) -> Result<(), RemoteError> {
        // A chunk being read and one being sent.
        let _room = self.hold(2 * CHUNK).await?;
        let file = tokio::fs::File::open(&w.from)
            .await
            .map_err(|e| cannot_read(&w.from, e))?;
        let name = names::upload_name(&self.instance, uuid::Uuid::new_v4(), &w.blob);
        let failed = Arc::new(Mutex::new(None));
        let chunks = Chunks {
            file,
            blob: w.blob.clone(),
            from: w.from.clone(),
            name,
            sent: 0,
            hash: Sha256::new(),
            done: false,
        };
        let answer = self
            .bytestream()?
            .write(chunks.stream(failed.clone()))
            .await;
        // A local failure ends the stream early; the server's complaint about that is no news.
        if let Some(e) = failed.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        let committed = answer
            .map_err(|s| self.status(s))?
            .into_inner()
            .committed_size;
        // -1: the server already held the blob and stopped the upload early (compressed form).
        if committed != size_i64(w.blob.size) && committed != -1 {
            return Err(self.bad(format!(
                "blob {}: the server committed {committed} of {} bytes",
                w.blob.sha256, w.blob.size
            )));
        }
        Ok(())
    }
}

/// A file's bytes, if they still are the blob.
fn read_checked(w: &BlobWrite) -> Result<re::batch_update_blobs_request::Request, RemoteError> {
    let data = std::fs::read(&w.from).map_err(|e| cannot_read(&w.from, e))?;
    if data.len() as u64 != w.blob.size || hex::encode(Sha256::digest(&data)) != w.blob.sha256 {
        return Err(changed(&w.from, &w.blob));
    }
    Ok(re::batch_update_blobs_request::Request {
        digest: Some(blob_digest(&w.blob)),
        data,
        compressor: 0,
    })
}

fn cannot_read(path: &Path, e: std::io::Error) -> RemoteError {
    RemoteError::Local(format!("cannot read {}: {e}", path.display()))
}

fn changed(path: &Path, blob: &BlobRef) -> RemoteError {
    RemoteError::Local(format!(
        "{} changed since it was hashed: it is no longer blob {}",
        path.display(),
        blob.sha256
    ))
}

/// A file as ByteStream.Write messages, read as the server takes them (memory stays flat).
struct Chunks {
    file: tokio::fs::File,
    blob: BlobRef,
    from: std::path::PathBuf,
    name: String,
    sent: u64,
    hash: Sha256,
    done: bool,
}

impl Chunks {
    /// The messages; on a local failure the stream ends without `finish_write` (so the server
    /// stores nothing) and the failure is left in `failed`.
    fn stream(
        self,
        failed: Arc<Mutex<Option<RemoteError>>>,
    ) -> impl Stream<Item = WriteRequest> + Send + 'static {
        stream::unfold((self, failed), |(mut chunks, failed)| async move {
            if chunks.done {
                return None;
            }
            match chunks.next().await {
                Ok(request) => Some((request, (chunks, failed))),
                Err(e) => {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(e);
                    }
                    None
                }
            }
        })
    }

    async fn next(&mut self) -> Result<WriteRequest, RemoteError> {
        let offset = self.sent;
        let len = (self.blob.size - offset).min(CHUNK);
        let mut data = vec![0; len as usize];
        self.file
            .read_exact(&mut data)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => changed(&self.from, &self.blob),
                _ => cannot_read(&self.from, e),
            })?;
        self.hash.update(&data);
        self.sent += len;
        let finish = self.sent == self.blob.size;
        if finish {
            self.done = true;
            let got = hex::encode(std::mem::take(&mut self.hash).finalize());
            if got != self.blob.sha256 {
                return Err(changed(&self.from, &self.blob));
            }
        }
        Ok(WriteRequest {
            // Only the first message names the resource.
            resource_name: if offset == 0 {
                self.name.clone()
            } else {
                String::new()
            },
            write_offset: size_i64(offset),
            finish_write: finish,
            data,
        })
    }
}
