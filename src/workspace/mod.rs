//! The project's working tree as a build touches it: staging folders for a task's outputs (in
//! the cache folder, or beside the workspace once that disk is full), putting staged outputs in
//! place, and the rule that no path is used through a symlinked folder ([`paths`]).

pub(crate) mod paths;
mod place;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub(crate) use place::place_outputs;

use crate::config::{Config, OutputPath};
use crate::error::{Error, Result};

/// One build's view of the workspace.
pub(crate) struct Workspace {
    root: PathBuf,
    /// Where staging folders go while the cache folder's disk has room.
    tmp: PathBuf,
    /// The cache folder's disk ran full: stage next to the workspace, do not save.
    disk_full: AtomicBool,
    /// How many tasks' outputs this build has put in the workspace.
    placed: AtomicUsize,
}

impl Workspace {
    pub(crate) fn new(config: &Config) -> Workspace {
        Workspace {
            root: config.root.clone(),
            tmp: config.cache_dir().join("tmp"),
            disk_full: AtomicBool::new(false),
            placed: AtomicUsize::new(0),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// Records that the cache folder's disk is full; true only for the first to say so.
    pub(crate) fn note_disk_full(&self) -> bool {
        !self.disk_full.swap(true, Ordering::Relaxed)
    }

    /// Whether this build has put any outputs in the workspace yet (what was read of it before
    /// may then be out of date).
    pub(crate) fn placed_any(&self) -> bool {
        self.placed.load(Ordering::SeqCst) > 0
    }

    /// A fresh staging folder for `task`'s outputs, removed when dropped.
    pub(crate) fn staging(&self, task: &str) -> Result<tempfile::TempDir> {
        if self.disk_full() {
            return tempfile::Builder::new()
                .prefix(&format!(".flamenco-build-staging-{task}-"))
                .tempdir_in(&self.root)
                .map_err(Error::io("cannot create the staging folder", &self.root));
        }
        std::fs::create_dir_all(&self.tmp)
            .map_err(Error::io("cannot create the staging folder", &self.tmp))?;
        tempfile::Builder::new()
            .prefix(&format!("{task}-"))
            .tempdir_in(&self.tmp)
            .map_err(Error::io("cannot create the staging folder", &self.tmp))
    }

    /// Puts staged outputs in place while `_lock` (the cache lock, when there is a cache) is held,
    /// so that two builds of one project never interleave their renames.
    pub(crate) fn place(
        &self,
        staging: &Path,
        outputs: &[OutputPath],
        _lock: Option<File>,
    ) -> Result<()> {
        // Counted before the first rename: from here on the snapshot may be out of date.
        self.placed.fetch_add(1, Ordering::SeqCst);
        place_outputs(staging, &self.root, outputs)
    }
}
