//! What goes into a task: its input files (walked and matched against its globs) and its
//! dependencies' outputs. The task key over them comes with the artifact cache.

mod input_files;

pub(crate) use input_files::link_stays_inside;
pub use input_files::{FileKind, InputFile, InputFiles};
