//! What a task is given: its declared inputs (with a warning for each glob that matched nothing
//! and each path it covers that is never an input) and its direct dependencies' outputs.

use super::context::Context;
use crate::config::Task;
use crate::error::Result;
use crate::fingerprint::{InputFile, InputFiles, Skipped};

impl<E> Context<E> {
    /// The task's declared input files (without what its dependencies' outputs cover).
    pub(crate) fn task_inputs(&self, task: &Task) -> Result<Vec<InputFile>> {
        let found = InputFiles::of_task(&self.config, task)?;
        self.warn_unmatched(task, &found.unmatched);
        self.warn_skipped(task, &found.skipped);
        Ok(found.files)
    }

    /// A warning for each path the task's globs cover that is never an input.
    pub(crate) fn warn_skipped(&self, task: &Task, skipped: &[Skipped]) {
        for s in skipped {
            self.reporter.warn(&format!(
                "task `{}`: skipped `{}` ({})",
                task.name, s.rel, s.why
            ));
        }
    }

    /// A warning for each include pattern of the task that matched no file.
    pub(crate) fn warn_unmatched(&self, task: &Task, unmatched: &[usize]) {
        for i in unmatched {
            let span = task.input_spans.get(*i).cloned().flatten();
            let d = self
                .config
                .source
                .diagnostic(
                    span,
                    format!(
                        "task `{}`: input `{}` matches no file",
                        task.name, task.inputs.patterns[*i]
                    ),
                )
                .as_warning();
            eprintln!("{d}");
        }
    }

    /// Everything a task receives: its inputs plus its direct dependencies' outputs (which win
    /// over any input at the same place). Only gathered when the task runs.
    pub(crate) fn with_dep_outputs(
        &self,
        task: &Task,
        inputs: Vec<InputFile>,
    ) -> Result<Vec<InputFile>> {
        let root = &self.config.root;
        let mut files = inputs;
        for dep in &task.deps {
            files.extend(InputFiles::output_tree(root, &self.task(dep).outputs)?);
        }
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        Ok(files)
    }
}
