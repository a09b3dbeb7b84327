//! A task's key recipe: its command, outputs, toolchain and env, the digests of its inputs and
//! the output manifests of its dependencies; and the values of the host variables it declares
//! (GITHASH derived from the project's git when the host does not set it). Every task also gets
//! SOURCE_DATE_EPOCH, the time reproducible tools stamp into what they make instead of "now".

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::context::Context;
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
            inputs: &root,
        });
        let recipe = KeyRecipe {
            format: KEY_FORMAT,
            task: task.name.clone(),
            run: task.run.clone(),
            workdir: task.workdir.clone(),
            outputs,
            network: task.network,
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
                .or_else(|| derived_env(var, &config.root));
            (var.clone(), v)
        })
        .collect()
}

/// The value flamenco-build gives a derived variable (each asked once per process): GITHASH is
/// `git rev-parse --short HEAD`; SOURCE_DATE_EPOCH the time of the last commit that touched the
/// project's folder, else 0, so that two clones of one commit stamp the same time.
fn derived_env(var: &str, root: &Path) -> Option<String> {
    static GITHASH: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match var {
        "GITHASH" => GITHASH.get_or_init(|| git_hash(root)).clone(),
        SOURCE_DATE_EPOCH => Some(EPOCH.get_or_init(|| last_commit_time(root)).clone()),
        _ => None,
    }
}

/// Starts working out, in the background, the derived variables that `plan`'s tasks declare and
/// the host does not set, so that their first key need not wait for `git`.
pub fn derive_env_ahead(config: &Config, plan: &[String]) {
    let wanted = plan
        .iter()
        .filter_map(|t| config.tasks.get(t))
        .any(|t| t.env.iter().any(|v| v == "GITHASH"));
    if wanted && std::env::var_os("GITHASH").is_none() {
        let root = config.root.clone();
        std::thread::spawn(move || derived_env("GITHASH", &root));
    }
    if std::env::var_os(SOURCE_DATE_EPOCH).is_none() {
        let root = config.root.clone();
        std::thread::spawn(move || derived_env(SOURCE_DATE_EPOCH, &root));
    }
}

/// `git log -1 --format=%ct -- .` in the project: the last commit that touched it; "0" outside
/// git or before the first commit.
fn last_commit_time(root: &Path) -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["log", "-1", "--format=%ct", "--", "."])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| "0".to_string())
}

fn git_hash(root: &Path) -> Option<String> {
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
