//! What goes into a task and what identifies it: its input files (walked and matched against its
//! globs), their digests (through a stat cache), and the task key over all of it.

pub mod action;
mod archive_tree;
mod digest;
mod input_files;
mod key;
mod stat_cache;
mod workspace_snapshot;

pub(crate) use archive_tree::{ArchiveTree, Node};
pub use digest::{
    FileDigest, Manifest, hash_bytes, hash_file, hash_path, manifest_hash, output_mode,
};
pub use input_files::{FileKind, InputFile, InputFiles, Skipped};
pub use key::{KEY_FORMAT, KeyRecipe, TaskKey, diff_files, env_value_hash};
pub use stat_cache::{StatCache, changed_since_read};
pub use workspace_snapshot::{TaskSnapshot, WorkspaceSnapshot};
