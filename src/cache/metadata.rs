//! `metadata/<task>.meta.json`: the entries saved for one task, each with its key, the record of
//! its outputs (whose blobs lie in `artifacts/sha256/`), and what it cost and saved. The recipe each key was computed from lies beside it in
//! `metadata/<task>.recipes/<key>.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::storage::ActionRecord;
use crate::fingerprint::{Manifest, TaskKey};

pub const METADATA_FORMAT: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskMetadata {
    pub format: u32,
    pub task: String,
    /// The key of the task's most recent build or restore: what `--explain` compares with.
    pub last: Option<TaskKey>,
    pub entries: BTreeMap<TaskKey, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: TaskKey,
    /// The outputs: per file its SHA-256 (the blob's name), size and mode; folders; symlinks.
    pub outputs: Manifest,
    /// The toolchain image ID the outputs were built with.
    pub image_id: String,
    /// Unix seconds.
    pub created: u64,
    pub last_used: u64,
    /// How long the task took when it ran (container and all).
    pub run_ms: u64,
    /// How often it was restored or found up to date, and the run time that saved.
    pub hits: u64,
    pub saved_ms: u64,
}

impl Entry {
    /// A new entry for `record`, saved or used at `t` (Unix seconds).
    pub fn new(key: TaskKey, record: ActionRecord, t: u64) -> Entry {
        Entry {
            key,
            outputs: record.outputs,
            image_id: record.image_id,
            created: t,
            last_used: t,
            run_ms: record.run_ms,
            hits: 0,
            saved_ms: 0,
        }
    }

    /// The action result this entry holds, as every tier keeps it.
    pub fn record(&self) -> ActionRecord {
        ActionRecord {
            outputs: self.outputs.clone(),
            image_id: self.image_id.clone(),
            run_ms: self.run_ms,
        }
    }
}

impl TaskMetadata {
    pub fn new(task: &str) -> TaskMetadata {
        TaskMetadata {
            format: METADATA_FORMAT,
            task: task.to_string(),
            last: None,
            entries: BTreeMap::new(),
        }
    }

    /// The key of the last recorded run, whose recipe explains a miss.
    pub fn last_key(&self) -> Option<&TaskKey> {
        self.last
            .as_ref()
            .filter(|k| self.entries.contains_key(*k))
            .or_else(|| {
                self.entries
                    .values()
                    .max_by_key(|e| e.last_used)
                    .map(|e| &e.key)
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::LocalStore;

    // An entry of an older cache format (2: before manifests recorded modes and folders; 3:
    // archives instead of blobs) is a clean miss: the cache is cleared on open, with a warning, never an error.
    #[test]
    fn an_older_cache_format_is_a_clean_miss() {
        let dir = tempfile::tempdir().unwrap();
        LocalStore::open(dir.path()).unwrap();
        let old = r#"{"format":2,"task":"gen","last":"k","entries":{"k":{"key":"k",
            "outputs":{"out/a":{"sha256":"aa","size":1}},"archive":"k.tar.zst",
            "archive_size":1,"image_id":"i","created":1,"last_used":1,"run_ms":1,"hits":0,
            "saved_ms":0}}}"#;
        std::fs::write(dir.path().join("metadata/gen.meta.json"), old).unwrap();
        std::fs::create_dir_all(dir.path().join("artifacts/gen")).unwrap();
        std::fs::write(dir.path().join("artifacts/gen/k.tar.zst"), "x").unwrap();
        std::fs::write(dir.path().join("VERSION"), "2").unwrap();
        let cache = LocalStore::open(dir.path()).unwrap();
        assert!(cache.load("gen").is_none());
        assert!(!dir.path().join("artifacts/gen/k.tar.zst").exists());
    }
}
