//! The worker's side of the CAS: the same gRPC client as the remote cache (FindMissingBlobs,
//! batch or ByteStream transfers, every blob read checked against its digest), used for the
//! messages a lease names (read into memory) and for files (read into and sent from a folder).

use std::path::Path;
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::status::Refusal;
use crate::cache::{BlobRead, BlobRef, BlobWrite, Storage, is_sha256};
use crate::fingerprint::action::digest_of;

/// A CAS the worker fetches inputs from and sends outputs to.
#[derive(Clone)]
pub(crate) struct WorkerCas {
    storage: Arc<dyn Storage>,
}

impl WorkerCas {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> WorkerCas {
        WorkerCas { storage }
    }

    /// Decodes the message stored under `digest`; `what` names it in errors.
    pub(crate) async fn message<M: Message + Default>(
        &self,
        digest: &re::Digest,
        what: &str,
        tmp: &Path,
    ) -> Result<M, Refusal> {
        let bytes = self.bytes(std::slice::from_ref(digest), tmp).await?;
        M::decode(bytes[0].as_slice())
            .map_err(|e| Refusal::invalid(format!("the {what} {} is not one: {e}", digest.hash)))
    }

    /// The blobs of `digests`, in order, through files in `tmp` (the client checks each).
    pub(crate) async fn bytes(
        &self,
        digests: &[re::Digest],
        tmp: &Path,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        let blobs: Vec<BlobRef> = digests.iter().map(blob_ref).collect::<Result<_, _>>()?;
        let mut unique = blobs.clone();
        unique.sort();
        unique.dedup();
        let reads: Vec<BlobRead> = unique
            .iter()
            .filter(|b| b.size > 0)
            .map(|b| BlobRead {
                blob: b.clone(),
                to: tmp.join(&b.sha256),
                mode: 0o600,
            })
            .collect();
        self.read(reads.clone()).await?;
        let mut read = std::collections::HashMap::new();
        for r in &reads {
            let bytes = std::fs::read(&r.to).map_err(|e| {
                Refusal::retry(format!("cannot read back blob {}: {e}", r.blob.sha256))
            })?;
            // Gone once read: a later call may fetch the same blob again.
            let _ = std::fs::remove_file(&r.to);
            read.insert(r.blob.sha256.clone(), bytes);
        }
        Ok(blobs
            .iter()
            .map(|b| read.get(&b.sha256).cloned().unwrap_or_default())
            .collect())
    }

    /// Fills files from blobs; an empty blob is just an empty file.
    pub(crate) async fn read(&self, reads: Vec<BlobRead>) -> Result<(), Refusal> {
        let (empty, reads): (Vec<BlobRead>, Vec<BlobRead>) =
            reads.into_iter().partition(|r| r.blob.size == 0);
        for r in empty {
            write_empty(&r)?;
        }
        if reads.is_empty() {
            return Ok(());
        }
        self.storage
            .read_blobs(reads)
            .await
            .map_err(|e| Refusal::retry(format!("cannot fetch inputs from the CAS: {e}")))
    }

    /// Sends the files the CAS lacks.
    pub(crate) async fn write(&self, writes: Vec<BlobWrite>) -> Result<(), Refusal> {
        let fail = |e| Refusal::retry(format!("cannot send outputs to the CAS: {e}"));
        let wanted: Vec<BlobRef> = writes.iter().map(|w| w.blob.clone()).collect();
        let missing = self.storage.find_missing(wanted).await.map_err(fail)?;
        let send: Vec<BlobWrite> = writes
            .into_iter()
            .filter(|w| missing.contains(&w.blob))
            .collect();
        if send.is_empty() {
            return Ok(());
        }
        self.storage.write_blobs(send).await.map_err(fail)
    }

    /// Stores `bytes` (a log) through a file in `tmp`; returns its digest.
    pub(crate) async fn write_bytes(
        &self,
        bytes: &[u8],
        tmp: &Path,
    ) -> Result<re::Digest, Refusal> {
        let digest = digest_of(bytes);
        let path = tmp.join(format!("{}.blob", digest.hash));
        std::fs::write(&path, bytes)
            .map_err(|e| Refusal::retry(format!("cannot write {}: {e}", path.display())))?;
        let blob = BlobRef {
            sha256: digest.hash.clone(),
            size: bytes.len() as u64,
        };
        self.write(vec![BlobWrite { blob, from: path }]).await?;
        Ok(digest)
    }
}

/// A digest as a blob reference, refused when malformed (it names a path in `tmp`).
pub(crate) fn blob_ref(d: &re::Digest) -> Result<BlobRef, Refusal> {
    if !is_sha256(&d.hash) || d.size_bytes < 0 {
        return Err(Refusal::invalid(format!(
            "`{}/{}` is not a SHA-256 digest",
            d.hash, d.size_bytes
        )));
    }
    Ok(BlobRef {
        sha256: d.hash.clone(),
        size: d.size_bytes as u64,
    })
}

fn write_empty(r: &BlobRead) -> Result<(), Refusal> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(r.mode)
        .open(&r.to)
        .map(drop)
        .map_err(|e| Refusal::retry(format!("cannot create {}: {e}", r.to.display())))
}
