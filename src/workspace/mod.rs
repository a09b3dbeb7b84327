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
    /// The project folder's (device, inode) when the build began.
    root_id: Option<(u64, u64)>,
}

impl Workspace {
    pub(crate) fn new(config: &Config) -> Workspace {
        Workspace {
            root: config.root.clone(),
            tmp: config.cache_dir().join("tmp"),
            disk_full: AtomicBool::new(false),
            placed: AtomicUsize::new(0),
            root_id: folder_id(&config.root),
        }
    }

    /// Fails when the project folder is not the one the build began in (deleted or replaced):
    /// writing on would create its paths anew.
    pub(crate) fn check_root(&self) -> Result<()> {
        let now = folder_id(&self.root);
        if now.is_some() && now == self.root_id {
            return Ok(());
        }
        Err(Error::Io {
            context: "the project folder was deleted or replaced during the build; nothing more \
                      is written to it",
            path: self.root.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })
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
        self.check_root()?;
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
        // Nothing is placed once the build was told to stop, and a forced stop waits for a
        // placing under way: outputs are never left half placed.
        let _placing = crate::interrupt::workspace_lock();
        crate::interrupt::check()?;
        self.check_root()?;
        // Counted before the first rename: from here on the snapshot may be out of date.
        self.placed.fetch_add(1, Ordering::SeqCst);
        place_outputs(staging, &self.root, outputs)
    }
}

/// A folder's (device, inode): what tells it from another one made at the same path.
fn folder_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
