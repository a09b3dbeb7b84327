//! `metadata/uses.jsonl`: the hits builds made since the last cleanup, a line each. A build that
//! changes nothing must stay cheap, so it does not rewrite the metadata of every entry it used
//! (only an entry whose last use is over an hour old is rewritten at once, as Go's build cache
//! does); it appends its hits here in one write instead. Cleanup folds them into the entries —
//! their last use, hit count and time saved — before it picks what to drop, so trimming keeps
//! what the last builds used; `cache-status` folds them in too, without writing.
//!
//! Appended without fsync: a crash loses at most a build's hit counts, never an entry.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::metadata::TaskMetadata;
use crate::fingerprint::TaskKey;

/// One hit of a build: which entry, when (Unix seconds), and the run time it saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    pub task: String,
    pub key: TaskKey,
    pub t: u64,
    pub saved_ms: u64,
}

/// Appends `uses` to the journal at `path` in one write (the caller holds the cache lock).
pub(super) fn append(path: &Path, uses: &[Use]) -> std::io::Result<()> {
    let mut text = String::new();
    for u in uses {
        text.push_str(&serde_json::to_string(u).expect("a use serialises"));
        text.push('\n');
    }
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// The uses the journal at `path` holds; a line that is not one (a torn write) is skipped.
pub(super) fn read(path: &Path) -> Vec<Use> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Adds `uses` to the entries they name (an entry dropped since is skipped): the latest use
/// becomes the entry's last use; each use counts a hit and the run time it saved. Returns the
/// tasks whose metadata changed.
pub(super) fn fold(metas: &mut BTreeMap<String, TaskMetadata>, uses: &[Use]) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    for u in uses {
        let Some(e) = metas
            .get_mut(&u.task)
            .and_then(|m| m.entries.get_mut(&u.key))
        else {
            continue;
        };
        e.last_used = e.last_used.max(u.t);
        e.hits += 1;
        e.saved_ms += u.saved_ms;
        changed.insert(u.task.clone());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::metadata::Entry;
    use crate::cache::storage::ActionRecord;

    fn key(k: &str) -> TaskKey {
        TaskKey::new(k.repeat(64), 1)
    }

    fn use_of(task: &str, k: &str, t: u64) -> Use {
        Use {
            task: task.into(),
            key: key(k),
            t,
            saved_ms: 1500,
        }
    }

    #[test]
    fn uses_round_trip_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uses.jsonl");
        assert!(read(&path).is_empty());
        append(&path, &[use_of("a", "1", 10), use_of("b", "2", 11)]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"task\":\"c\",\"ke")
            .unwrap();
        append(&path, &[use_of("a", "1", 12)]).unwrap();
        assert_eq!(
            read(&path),
            vec![use_of("a", "1", 10), use_of("b", "2", 11)],
            "the line after a torn one is joined to it and lost with it"
        );
    }

    #[test]
    fn folding_refreshes_last_use_and_counts_every_hit() {
        let mut metas = BTreeMap::new();
        let mut m = TaskMetadata::new("a");
        let record = ActionRecord {
            outputs: Default::default(),
            image_id: "img".into(),
            run_ms: 1500,
        };
        m.entries.insert(key("1"), Entry::new(key("1"), record, 5));
        metas.insert("a".to_string(), m);
        let uses = [
            use_of("a", "1", 20),
            use_of("a", "1", 10),
            use_of("a", "2", 30),
            use_of("gone", "1", 30),
        ];
        let changed = fold(&mut metas, &uses);
        assert_eq!(changed, BTreeSet::from(["a".to_string()]));
        let e = &metas["a"].entries[&key("1")];
        assert_eq!((e.last_used, e.hits, e.saved_ms), (20, 2, 3000));
    }
}
