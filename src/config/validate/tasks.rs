//! The `[tasks.*]` tables: names, toolchain, dependencies, command, environment and limits; the
//! paths a task reads and writes are checked in `paths`.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::Check;
use super::paths::{self, Outputs};
use super::values::{NAME_RULE, is_env_name, is_name, parse_size};
use crate::config::file::{SizeValue, TaskFile};
use crate::config::path_pattern::normalize;
use crate::config::{Task, Toolchain};

/// The tasks, each with its outputs and where they are written (for the conflict check).
pub(super) fn tasks(
    check: &mut Check,
    file: BTreeMap<Spanned<String>, Spanned<TaskFile>>,
    toolchains: &BTreeMap<String, Toolchain>,
) -> BTreeMap<String, (Task, Outputs)> {
    let names: HashSet<String> = file.keys().map(|k| k.get_ref().clone()).collect();
    let mut tasks = BTreeMap::new();
    for (name, task) in file {
        let (task, outputs) = self::task(check, name, task, &names, toolchains);
        tasks.insert(task.name.clone(), (task, outputs));
    }
    tasks
}

fn task(
    check: &mut Check,
    name: Spanned<String>,
    task: Spanned<TaskFile>,
    names: &HashSet<String>,
    toolchains: &BTreeMap<String, Toolchain>,
) -> (Task, Outputs) {
    let name_span = name.span();
    let name = name.into_inner();
    let task_span = task.span();
    let task = task.into_inner();
    if !is_name(&name) {
        check.err(
            name_span.clone(),
            format!("`{name}` is not a valid task name {NAME_RULE}"),
        );
    }
    known_toolchain(check, &name, &task.toolchain, toolchains);
    let (deps, dep_spans) = deps(check, &name, task.deps, names);
    run(check, &name, &task.run);
    let workdir = workdir(check, &name, task.workdir);
    let (inputs, input_spans) = paths::inputs(check, &name, task.inputs, task_span.clone());
    let outputs = paths::outputs(check, &name, &task.outputs, name_span);
    let env = env(check, &name, task.env);
    let memory = memory(check, &name, task.memory.as_ref());
    let cpus = cpus(check, &name, task.cpus.as_ref());
    let task = Task {
        name,
        description: task.description,
        toolchain: task.toolchain.into_inner(),
        deps,
        run: task.run.into_inner(),
        workdir,
        inputs,
        outputs: outputs.iter().map(|(o, _)| o.clone()).collect(),
        env,
        network: task.network,
        local_only: task.local_only,
        memory,
        cpus,
        span: Some(task_span),
        dep_spans,
        input_spans,
    };
    (task, outputs)
}

fn known_toolchain(
    check: &mut Check,
    task: &str,
    toolchain: &Spanned<String>,
    toolchains: &BTreeMap<String, Toolchain>,
) {
    if toolchains.contains_key(toolchain.get_ref()) {
        return;
    }
    let known: Vec<&str> = toolchains.keys().map(String::as_str).collect();
    let known = if known.is_empty() {
        "none".into()
    } else {
        known.join(", ")
    };
    check.err(
        toolchain.span(),
        format!(
            "task `{task}` uses unknown toolchain `{}` (defined: {known})",
            toolchain.get_ref()
        ),
    );
}

/// The dependencies by name, and where each is written.
fn deps(
    check: &mut Check,
    task: &str,
    deps: Vec<Spanned<String>>,
    names: &HashSet<String>,
) -> (Vec<String>, Vec<Option<Range<usize>>>) {
    let mut checked = Vec::new();
    let mut spans = Vec::new();
    let mut seen = HashSet::new();
    for dep in deps {
        if !names.contains(dep.get_ref()) {
            check.err(
                dep.span(),
                format!("task `{task}` depends on unknown task `{}`", dep.get_ref()),
            );
        } else if dep.get_ref() == task {
            check.err(dep.span(), format!("task `{task}` depends on itself"));
        } else if !seen.insert(dep.get_ref().clone()) {
            check.err(
                dep.span(),
                format!("task `{task}` lists `{}` twice", dep.get_ref()),
            );
        }
        spans.push(Some(dep.span()));
        checked.push(dep.into_inner());
    }
    (checked, spans)
}

fn run(check: &mut Check, task: &str, run: &Spanned<String>) {
    if run.get_ref().trim().is_empty() {
        check.err(run.span(), format!("task `{task}` has an empty `run`"));
    }
    if run.get_ref().contains('\0') {
        check.err(
            run.span(),
            format!("task `{task}`: `run` contains a NUL byte, which no shell command can"),
        );
    }
}

fn workdir(check: &mut Check, task: &str, workdir: Option<Spanned<String>>) -> String {
    match workdir {
        None => ".".to_string(),
        Some(w) if w.get_ref() == "." => ".".to_string(),
        Some(w) => match normalize(w.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                check.err(w.span(), format!("task `{task}`: `workdir` {e}"));
                ".".into()
            }
        },
    }
}

fn env(check: &mut Check, task: &str, vars: Vec<Spanned<String>>) -> Vec<String> {
    let mut env = Vec::new();
    for var in vars {
        if !is_env_name(var.get_ref()) {
            check.err(
                var.span(),
                format!(
                    "`{}` is not a valid environment variable name",
                    var.get_ref()
                ),
            );
        } else if env.contains(var.get_ref()) {
            check.err(
                var.span(),
                format!("task `{task}` lists `{}` twice in `env`", var.get_ref()),
            );
        }
        env.push(var.into_inner());
    }
    env
}

fn memory(check: &mut Check, task: &str, memory: Option<&Spanned<SizeValue>>) -> Option<u64> {
    let v = memory?;
    match parse_size(v.get_ref()) {
        Ok(n) if n >= 4 * 1024 * 1024 => Some(n),
        Ok(n) => {
            check.err(
                v.span(),
                format!("task `{task}`: `memory` must be at least 4MB, not {n} bytes"),
            );
            None
        }
        Err(e) => {
            check.err(
                v.span(),
                format!("task `{task}`: `memory` is not a size such as \"512MB\": {e}"),
            );
            None
        }
    }
}

fn cpus(check: &mut Check, task: &str, cpus: Option<&Spanned<f64>>) -> Option<f64> {
    let c = cpus?;
    let v = *c.get_ref();
    if v > 0.0 && v <= 1024.0 {
        return Some(v);
    }
    check.err(
        c.span(),
        format!("task `{task}`: `cpus` must be more than 0 (and at most 1024), not {v}"),
    );
    None
}
