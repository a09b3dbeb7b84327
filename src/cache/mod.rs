//! The artifact cache, behind one facade ([`Cache`]): look a key up, restore, save, explain a
//! miss. Under it, tiers that keep REAPI's two kinds of data ([`storage`]): action results and
//! content blobs. The local store is `.build-cache/`: `metadata/<task>.meta.json` (the entries),
//! `metadata/uses.jsonl` (the hits since the last cleanup),
//! `artifacts/sha256/` (the blobs), a `CACHEDIR.TAG` and a format version. Writes are atomic
//! (temp name, rename; blobs made durable before the metadata that names them) under a file
//! lock; every restore re-checks each file's SHA-256.

mod cas;
mod error;
mod facade;
mod local_store;
pub(crate) mod materialize;
mod metadata;
mod ownership;
mod storage;
mod uses;

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use cas::is_sha256;
pub(crate) use error::{CacheError, Corrupt};
pub(crate) use facade::{Cache, Hit, Lookup};
pub(crate) use local_store::{CacheStatus, LocalStore};
pub(crate) use materialize::is_safe_rel;
pub(crate) use materialize::outside_outputs;
pub(crate) use storage::{ActionRecord, BlobRead, BlobRef, BlobWrite, Storage};

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename, fsync of
/// the folder. A crash leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a file in a folder");
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable; a failure here only weakens durability, so it is not an error.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
