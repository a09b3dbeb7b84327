//! `--dry-run`: what a build would do, from the same cache lookup a build makes, without running,
//! restoring or writing anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::context::Context;
use crate::cache::Lookup;
use crate::config::Task;
use crate::error::{Error, Result};
use crate::executor::{Executor, off_async_workers};
use crate::fingerprint::{InputFiles, Manifest};

impl<E: Executor + Send + Sync + 'static> Context<E> {
    pub(crate) async fn dry_run(self: Arc<Self>) -> Result<()> {
        let mut outputs: BTreeMap<String, Manifest> = BTreeMap::new();
        let mut runs: Vec<&str> = Vec::new();
        for name in &self.plan {
            let task = self.task(name);
            let verdict = self.verdict(task, &runs, &mut outputs).await?;
            if verdict.starts_with("would run") {
                runs.push(name);
            }
            self.reporter.line(&format!("dry-run: {name}: {verdict}"));
        }
        self.reporter.line(&format!(
            "dry-run: {} of {} tasks would run; nothing was changed",
            runs.len(),
            self.plan.len()
        ));
        Ok(())
    }

    /// What the build would do with `task`, given the tasks that would run before it.
    async fn verdict(
        self: &Arc<Self>,
        task: &Task,
        runs: &[&str],
        outputs: &mut BTreeMap<String, Manifest>,
    ) -> Result<String> {
        if !self.images.contains_key(&task.toolchain) {
            return Ok(format!(
                "would run (toolchain image {} is not present and would be made first)",
                self.config.toolchains[&task.toolchain].image
            ));
        }
        let after: Vec<&str> = task
            .deps
            .iter()
            .map(String::as_str)
            .filter(|d| runs.contains(d))
            .collect();
        if !after.is_empty() {
            let deps = after.join(", ");
            return Ok(format!(
                "would run after {deps} (the key depends on what they produce)"
            ));
        }
        let Some(mode) = &self.cache else {
            return Ok("would run (`build` always runs)".to_string());
        };
        let (inputs, digests) = self.read_inputs(mode, task).await?;
        let (recipe, _) = self.recipe(task, &inputs, digests, outputs);
        let key = recipe.key();
        let (root, outs, stat_cache) = (
            self.config.root.clone(),
            task.outputs.clone(),
            mode.stat_cache.clone(),
        );
        let here = || {
            off_async_workers(&task.name, move || {
                let files = InputFiles::output_tree(&root, &outs)?;
                stat_cache
                    .manifest(&files)
                    .map_err(Error::io("cannot hash outputs", &root))
            })
        };
        Ok(match mode.cache.lookup(&task.name, &key, here).await? {
            Lookup::UpToDate(hit) => {
                outputs.insert(task.name.clone(), hit.entry.outputs);
                "up to date".to_string()
            }
            Lookup::Restorable(hit) => {
                outputs.insert(task.name.clone(), hit.entry.outputs);
                "would restore from the cache".to_string()
            }
            Lookup::Miss(miss) => {
                let why = mode.cache.why_missed(&task.name, &recipe, &miss);
                format!("would run: {why}")
            }
        })
    }
}
