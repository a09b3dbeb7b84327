//! A task's key recipe: its command, outputs, toolchain and env, the digests of its inputs and
//! the output manifests of its dependencies; and the values of the host variables it declares
//! (GITHASH derived from the project's git when the host does not set it). Every task also gets
//! SOURCE_DATE_EPOCH, the time reproducible tools stamp into what they make instead of "now".

use std::collections::BTreeMap;
use std::sync::Arc;

use super::context::Context;
use super::source_date;
use crate::config::{Config, Task};
use crate::fingerprint::action::{ActionSpec, TaskAction, task_action};
use crate::fingerprint::{
    FileDigest, InputFile, KEY_FORMAT, KeyRecipe, Manifest, env_value_hash, manifest_hash,
};

impl<E> Context<E> {
    /// The key recipe of a task from its input digests and its dependencies' output manifests,
    /// and the task's `Action`: the key is its digest, and its input root holds both.
    pub(crate) fn recipe(
        &self,
        task: &Task,
        inputs: &[InputFile],
        digests: Vec<FileDigest>,
        dep_outputs: &BTreeMap<String, Manifest>,
    ) -> (KeyRecipe, Arc<TaskAction>) {
        let tc = &self.config.toolchains[&task.toolchain];
        let declared = declared_env(&self.config, task);
        let inputs: Manifest = inputs.iter().map(|f| f.rel.clone()).zip(digests).collect();
        let outputs: Vec<String> = task.outputs.iter().map(|o| o.path.clone()).collect();
        let mut root = inputs.clone();
        for m in task.deps.iter().filter_map(|d| dep_outputs.get(d)) {
            root.extend(m.iter().map(|(p, d)| (p.clone(), d.clone())));
        }
        let image_id = &self.images[&task.toolchain];
        let action = task_action(&ActionSpec {
            run: &task.run,
            workdir: &task.workdir,
            outputs: &outputs,
            env: self.task_env(task).into_iter().collect(),
            image: &tc.image,
            image_id,
            network: task.network,
            memory: task.memory,
            cpus: task.cpus,
            inputs: &root,
        });
        let recipe = KeyRecipe {
            format: KEY_FORMAT,
            task: task.name.clone(),
            run: task.run.clone(),
            workdir: task.workdir.clone(),
            outputs,
            network: task.network,
            memory: task.memory,
            cpus: task.cpus.map(|c| c.to_string()),
            image: tc.image.clone(),
            toolchain: image_id.clone(),
            toolchain_env: tc.env.clone(),
            env: declared
                .into_iter()
                .map(|(k, v)| {
                    let h = v.map(|v| env_value_hash(&k, &v));
                    (k, h)
                })
                .collect(),
            inputs,
            deps: task
                .deps
                .iter()
                .map(|d| {
                    let hash = dep_outputs.get(d).map(manifest_hash).unwrap_or_default();
                    (d.clone(), hash)
                })
                .collect(),
            key: action.key(),
        };
        (recipe, Arc::new(action))
    }

    /// The environment of a task: its toolchain's, then the host variables it declares.
    pub(crate) fn task_env(&self, task: &Task) -> Vec<(String, String)> {
        let tc = &self.config.toolchains[&task.toolchain];
        let mut env: Vec<(String, String)> =
            tc.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.extend(
            declared_env(&self.config, task)
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v))),
        );
        env
    }
}

/// Given to every task, declared or not (a toolchain's env may still set it).
pub(crate) const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The declared host variables and their values (None: unset), and SOURCE_DATE_EPOCH.
fn declared_env(config: &Config, task: &Task) -> Vec<(String, Option<String>)> {
    let tc = &config.toolchains[&task.toolchain];
    let implicit = (!task.env.iter().any(|v| v == SOURCE_DATE_EPOCH)
        && !tc.env.contains_key(SOURCE_DATE_EPOCH))
    .then(|| SOURCE_DATE_EPOCH.to_string());
    task.env
        .iter()
        .chain(implicit.as_ref())
        .map(|var| {
            let v = std::env::var(var)
                .ok()
                .or_else(|| derived_env(var, config, task));
            (var.clone(), v)
        })
        .collect()
}

/// The value flamenco-build gives a derived variable when the host does not set it: GITHASH is
/// `git rev-parse --short HEAD`; SOURCE_DATE_EPOCH the time of the last commit that touched the
/// task's inputs, else 0, so that two clones of one commit stamp the same time and a commit
/// elsewhere in the project leaves the task's key alone (see [`super::source_date`]).
fn derived_env(var: &str, config: &Config, task: &Task) -> Option<String> {
    match var {
        "GITHASH" => source_date::derived(config).githash.clone(),
        // A toolchain's env that sets it wins over a task that declares it.
        SOURCE_DATE_EPOCH => source_date::gives_epoch(config, task)
            .then(|| source_date::derived(config).epoch(&task.name)),
        _ => None,
    }
}

/// The SOURCE_DATE_EPOCH a task gets, and where it comes from, for `--explain`.
pub(crate) fn epoch_origin(config: &Config, task: &Task) -> (String, &'static str) {
    if let Ok(v) = std::env::var(SOURCE_DATE_EPOCH) {
        return (v, "the host's");
    }
    let toolchain = &config.toolchains[&task.toolchain].env;
    if let Some(v) = toolchain.get(SOURCE_DATE_EPOCH) {
        return (v.clone(), "the toolchain's env");
    }
    let v = source_date::derived(config).epoch(&task.name);
    (v, "the last commit that touched its inputs, 0 if none")
}

/// Starts working out, in the background, the values derived from git (see
/// [`super::source_date`]), so that the first key need not wait for them. Without a change of
/// HEAD this reads a few small files and spawns no `git`.
pub fn derive_env_ahead(config: &std::sync::Arc<Config>) {
    let config = config.clone();
    std::thread::spawn(move || source_date::derived(&config));
}
