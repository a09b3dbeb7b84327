//! `metadata/<task>.meta.json`: the entries saved for one task, each with its key, the recipe
//! the key was computed from, the output manifest, and what it cost and saved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fingerprint::{KeyRecipe, Manifest, TaskKey};

pub const METADATA_FORMAT: u32 = 1;

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
    pub recipe: KeyRecipe,
    /// The outputs, per file: SHA-256, size, mode.
    pub outputs: Manifest,
    /// The archive's file name in `artifacts/<task>/`.
    pub archive: String,
    pub archive_size: u64,
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

impl TaskMetadata {
    pub fn new(task: &str) -> TaskMetadata {
        TaskMetadata {
            format: METADATA_FORMAT,
            task: task.to_string(),
            last: None,
            entries: BTreeMap::new(),
        }
    }

    /// The recipe of the last recorded run, for explaining a miss.
    pub fn last_recipe(&self) -> Option<&KeyRecipe> {
        self.last
            .as_ref()
            .and_then(|k| self.entries.get(k))
            .or_else(|| self.entries.values().max_by_key(|e| e.last_used))
            .map(|e| &e.recipe)
    }
}
