//! What every cache tier keeps, in REAPI's data model: action results (a task key → the record
//! of its outputs) and content blobs (SHA-256 → bytes). The local store implements it now; a
//! remote tier (REAPI gRPC, Bazel's HTTP protocol, object stores) implements the same trait, and
//! the [`Cache`](super::Cache) facade layers them, so nothing above the facade knows which tier
//! answered.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::CacheError;
use crate::fingerprint::{Manifest, TaskKey};

/// The record of one task run whose outputs a tier keeps (REAPI's `ActionResult`, for a task
/// that succeeded): every output file with its digest, size and mode, every folder, every
/// symlink; and what the run cost, so a hit can say what it saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub outputs: Manifest,
    /// The toolchain image ID the outputs were built with.
    pub image_id: String,
    /// How long the task took when it ran (container and all).
    pub run_ms: u64,
}

impl ActionRecord {
    /// The content blobs the record names (each once).
    pub(crate) fn blobs(&self) -> Vec<BlobRef> {
        let mut v: Vec<BlobRef> = self
            .outputs
            .values()
            .filter(|d| d.link.is_none() && !d.dir)
            .map(|d| BlobRef {
                sha256: d.sha256.clone(),
                size: d.size,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A content blob: its SHA-256 and size (REAPI's `Digest`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct BlobRef {
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

/// A blob to copy out of a tier into a new file with the given mode.
#[derive(Debug, Clone)]
pub(crate) struct BlobRead {
    pub(crate) blob: BlobRef,
    pub(crate) to: PathBuf,
    pub(crate) mode: u32,
}

/// A file to store in a tier as the blob it hashes to.
#[derive(Debug, Clone)]
pub(crate) struct BlobWrite {
    pub(crate) blob: BlobRef,
    pub(crate) from: PathBuf,
}

/// One tier of the cache. Blob transfers are in bulk so that each tier can batch them (one pass
/// on a blocking thread locally; batch calls or parallel requests remotely). Every blob read is
/// checked against its digest by the tier before the call returns.
#[async_trait::async_trait]
pub(crate) trait Storage: Send + Sync {
    /// Where it is, for messages (a URL without credentials, or a folder).
    fn describe(&self) -> String;

    /// The action result stored under `key`; `task` is a hint a store may shard by (the local
    /// store keeps one metadata file per task); remote stores key by `key` alone.
    async fn get_action(
        &self,
        task: &str,
        key: &TaskKey,
    ) -> Result<Option<ActionRecord>, CacheError>;

    /// Stores an action result; every blob it names must already be stored.
    async fn put_action(
        &self,
        task: &str,
        key: &TaskKey,
        record: &ActionRecord,
    ) -> Result<(), CacheError>;

    /// Which of `blobs` the tier does not hold.
    async fn find_missing(&self, blobs: Vec<BlobRef>) -> Result<Vec<BlobRef>, CacheError>;

    /// Stores files as blobs, each checked against its digest as it is read.
    async fn write_blobs(&self, blobs: Vec<BlobWrite>) -> Result<(), CacheError>;

    /// Copies blobs into new files, each checked against its digest; on any error no file of a
    /// failed blob is left.
    async fn read_blobs(&self, blobs: Vec<BlobRead>) -> Result<(), CacheError>;

    /// Asks the tier whether it answers, for `cache-status`; says what it supports when it can
    /// tell. By default: a lookup of a key nothing is stored under.
    async fn probe(&self) -> Result<String, CacheError> {
        let nothing = TaskKey::new("0".repeat(64), 0);
        self.get_action("", &nothing)
            .await
            .map(|_| "answers lookups".to_string())
    }
}
