//! What both executors do with a finished task's declared outputs: each comes back as one
//! archive (downloaded from the container, or packed from the task's folder) and goes through
//! the same checks into the staging folder.

use std::io::Read;
use std::path::Path;

use super::{off_async_workers, tarball};
use crate::config::{OutputPath, Task};
use crate::error::{Error, Result};

/// Extracts every declared output of `task` into `staging`, on the blocking pool. `open` gives
/// the archive of one output as the task left it, or None when the task did not make it; it
/// runs on the blocking pool too.
pub(crate) async fn collect_outputs<R, F>(task: &Task, staging: &Path, open: F) -> Result<()>
where
    R: Read,
    F: FnMut(&OutputPath) -> Result<Option<R>> + Send + 'static,
{
    let (name, outputs) = (task.name.clone(), task.outputs.clone());
    let staging = staging.to_path_buf();
    off_async_workers(&task.name, move || {
        extract_outputs(&name, &outputs, &staging, open)
    })
    .await
}

/// The rules: an output that is not there, or a glob that matched no file, is a missing output;
/// every archive is checked as [`tarball::extract_output`] says.
fn extract_outputs<R: Read>(
    task: &str,
    outputs: &[OutputPath],
    staging: &Path,
    mut open: impl FnMut(&OutputPath) -> Result<Option<R>>,
) -> Result<()> {
    for out in outputs {
        // Extracting makes missing folders: into a staging folder deleted meanwhile (with the
        // project), that would create the project's path anew.
        if !staging.is_dir() {
            return Err(Error::io("the staging folder is gone", staging)(
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let missing = || Error::MissingOutput {
            task: task.to_string(),
            output: out.path.clone(),
        };
        let archive = open(out)?.ok_or_else(missing)?;
        let written = tarball::extract_output(archive, task, out, staging)?;
        if written == 0 && out.is_glob() {
            return Err(missing());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &str) -> OutputPath {
        OutputPath::new(p).unwrap()
    }

    /// An archive holding `name` with `data`, as an engine gives one output.
    fn archive(name: &str, data: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
        b.into_inner().unwrap()
    }

    fn run(outputs: &[OutputPath], staging: &Path, archives: Vec<Option<Vec<u8>>>) -> Result<()> {
        let mut archives = archives.into_iter();
        extract_outputs("t", outputs, staging, |_| {
            Ok(archives.next().unwrap().map(std::io::Cursor::new))
        })
    }

    #[test]
    fn every_output_lands_in_staging() {
        let staging = tempfile::tempdir().unwrap();
        let outputs = [out("a.txt"), out("gen/*.go")];
        let archives = vec![Some(archive("a.txt", "a")), Some(archive("gen/x.go", "x"))];
        run(&outputs, staging.path(), archives).unwrap();
        let read = |p: &str| std::fs::read_to_string(staging.path().join(p)).unwrap();
        assert_eq!((read("a.txt"), read("gen/x.go")), ("a".into(), "x".into()));
    }

    #[test]
    fn an_output_not_made_or_a_glob_matching_nothing_is_missing() {
        for (output, archive) in [
            (out("a.txt"), None),
            (out("gen/*.go"), Some(archive("gen/x.txt", "x"))),
        ] {
            let staging = tempfile::tempdir().unwrap();
            let path = output.path.clone();
            let err = run(&[output], staging.path(), vec![archive]).unwrap_err();
            assert!(
                matches!(&err, Error::MissingOutput { output, .. } if *output == path),
                "{err}"
            );
        }
    }

    #[test]
    fn a_staging_folder_gone_is_never_made_anew() {
        let base = tempfile::tempdir().unwrap();
        let staging = base.path().join("gone");
        let err = run(&[out("a.txt")], &staging, vec![Some(archive("a.txt", "a"))]).unwrap_err();
        assert!(
            err.to_string().contains("the staging folder is gone"),
            "{err}"
        );
        assert!(!staging.exists());
    }
}
