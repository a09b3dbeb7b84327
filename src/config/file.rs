//! The on-disk shape of flamenco-build.toml (serde, with spans) and its validation into
//! [`Config`](super::Config).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::cache_dir;
use super::path_pattern::{InputSet, OutputPath, conflicts, forbidden_place, normalize};
use super::{Config, Diagnostic, Settings, Source, Task, Toolchain};
use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    settings: Option<SettingsFile>,
    #[serde(default)]
    toolchains: BTreeMap<Spanned<String>, Spanned<ToolchainFile>>,
    #[serde(default)]
    tasks: BTreeMap<Spanned<String>, Spanned<TaskFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    cache_dir: Option<Spanned<String>>,
    cache_volume: Option<Spanned<String>>,
    jobs: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    cache_max_size: Option<Spanned<SizeValue>>,
    cache_max_age: Option<Spanned<String>>,
}

/// A size: bytes as a number, or a string such as "5GB" or "500 MiB".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolchainFile {
    image: Spanned<String>,
    dockerfile: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    #[serde(default)]
    build_args: BTreeMap<String, String>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    version_command: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    description: Option<String>,
    toolchain: Spanned<String>,
    #[serde(default)]
    deps: Vec<Spanned<String>>,
    run: Spanned<String>,
    workdir: Option<Spanned<String>>,
    inputs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    outputs: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default)]
    network: bool,
    memory: Option<Spanned<SizeValue>>,
    cpus: Option<Spanned<f64>>,
}

fn parse_size(v: &SizeValue) -> Result<u64, String> {
    match v {
        SizeValue::Bytes(n) if *n >= 0 => Ok(*n as u64),
        SizeValue::Bytes(n) => Err(format!("{n} is negative")),
        SizeValue::Text(t) => parse_size_text(t),
    }
}

/// A size as Docker reads one (`512m`, `2GB`, `1.5GiB`): K, M, G and T are powers of 1024, with or
/// without a trailing `B` or `iB`. Hand-written because the crates read "MB" as 10^6, and memory
/// limits here must mean what they mean to `docker run -m`.
fn parse_size_text(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` does not start with a number"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        other => return Err(format!("unknown unit `{other}` (use K, M, G or T)")),
    };
    Ok((n * factor as f64) as u64)
}

/// The longest task or toolchain name. Task names become file names in the cache
/// (`metadata/<task>.meta.json`, `artifacts/<task>/`, staging folders): well inside 255 bytes.
const MAX_NAME_BYTES: usize = 100;

const NAME_RULE: &str = "(1 to 100 letters, digits, `-`, `_` or `.`, and not `.` or `..`: \
                         names become file names in the cache)";

/// A task or toolchain name: one safe path component (no `.` or `..`, no separator).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// A volume name Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(crate) fn is_volume_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() >= 2
        && s.len() <= 255
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ConfigFile {
    pub(super) fn parse(source: &Source) -> Result<ConfigFile> {
        toml::from_str(&source.text).map_err(|e| {
            // toml's message already quotes the source; keep only its first line.
            let message = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string();
            Error::Config(vec![source.diagnostic(e.span(), message)])
        })
    }

    pub(super) fn validate(self, root: PathBuf, source: Source, builtin: bool) -> Result<Config> {
        let mut errors: Vec<Diagnostic> = Vec::new();
        let mut err = |span: std::ops::Range<usize>, msg: String| {
            errors.push(source.diagnostic(Some(span), msg));
        };

        // The cache folder's project-relative paths: no output or input may reach into it.
        let mut cache_inside: Vec<String> = Vec::new();
        let settings = {
            let s = self.settings.unwrap_or(SettingsFile {
                cache_dir: None,
                cache_volume: None,
                jobs: None,
                user: None,
                cache_max_size: None,
                cache_max_age: None,
            });
            let cache_dir_span = s.cache_dir.as_ref().map(|d| d.span());
            let cache_max_size = match s.cache_max_size {
                None => Settings::DEFAULT_MAX_SIZE,
                Some(v) => parse_size(v.get_ref()).unwrap_or_else(|e| {
                    err(
                        v.span(),
                        format!("`cache_max_size` is not a size such as \"5GB\": {e}"),
                    );
                    0
                }),
            };
            let cache_max_age = match s.cache_max_age {
                None => Settings::DEFAULT_MAX_AGE,
                Some(v) => humantime::parse_duration(v.get_ref()).unwrap_or_else(|e| {
                    err(
                        v.span(),
                        format!("`cache_max_age` is not a duration such as \"30d\": {e}"),
                    );
                    Settings::DEFAULT_MAX_AGE
                }),
            };
            let cache_dir = match s.cache_dir {
                Some(d) if d.get_ref().is_empty() => {
                    err(d.span(), "`cache_dir` is empty".into());
                    PathBuf::new()
                }
                Some(d) => PathBuf::from(d.into_inner()),
                None => PathBuf::from(".build-cache"),
            };
            let cache_dir = match cache_dir::resolve(&root, &cache_dir.to_string_lossy()) {
                Ok(c) => {
                    cache_inside = c.inside;
                    c.setting
                }
                Err(e) => {
                    err(cache_dir_span.clone().unwrap_or(0..0), e);
                    cache_dir
                }
            };
            let cache_volume = match s.cache_volume {
                Some(v) if !is_volume_name(v.get_ref()) => {
                    err(
                        v.span(),
                        format!(
                            "`cache_volume` `{}` is not a volume name Docker accepts (a letter or \
                             digit, then letters, digits, `_`, `.` or `-`)",
                            v.get_ref()
                        ),
                    );
                    String::new()
                }
                Some(v) => v.into_inner(),
                None => Settings::default_cache_volume(&root),
            };
            let jobs = match s.jobs {
                Some(j) if *j.get_ref() < 1 || *j.get_ref() > 256 => {
                    err(
                        j.span(),
                        format!("`jobs` must be 1 to 256, not {}", j.get_ref()),
                    );
                    1
                }
                Some(j) => *j.get_ref() as usize,
                None => Settings::default_jobs(),
            };
            let user = match s.user {
                Some(u) => {
                    let ids = u
                        .get_ref()
                        .split_once(':')
                        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
                    if ids.is_none() {
                        err(
                            u.span(),
                            format!("`user` must be `uid:gid` (numbers), not `{}`", u.get_ref()),
                        );
                    }
                    ids
                }
                None => None,
            };
            Settings {
                cache_dir,
                cache_volume,
                jobs,
                user,
                cache_max_size,
                cache_max_age,
            }
        };

        let mut toolchains = BTreeMap::new();
        for (name, tc) in self.toolchains {
            let name_span = name.span();
            let name = name.into_inner();
            if !is_name(&name) {
                err(
                    name_span.clone(),
                    format!("`{name}` is not a valid toolchain name {NAME_RULE}"),
                );
            }
            let tc = tc.into_inner();
            if tc.image.get_ref().trim().is_empty() {
                err(
                    tc.image.span(),
                    format!("toolchain `{name}` has an empty `image`"),
                );
            }
            for (span, message) in nul_bytes(&name, &tc) {
                err(span, message);
            }
            let mut env = BTreeMap::new();
            for (k, v) in tc.env {
                if !is_env_name(k.get_ref()) {
                    err(
                        k.span(),
                        format!("`{}` is not a valid environment variable name", k.get_ref()),
                    );
                }
                env.insert(k.into_inner(), v);
            }
            if let (Some(ctx), None) = (&tc.context, &tc.dockerfile) {
                err(
                    ctx.span(),
                    format!("toolchain `{name}` has a `context` but no `dockerfile`"),
                );
            }
            let dockerfile = tc.dockerfile.map(|d| PathBuf::from(d.into_inner()));
            let context = tc
                .context
                .map(|c| PathBuf::from(c.into_inner()))
                .or_else(|| {
                    dockerfile
                        .as_ref()
                        .and_then(|d| d.parent().map(PathBuf::from))
                });
            toolchains.insert(
                name.clone(),
                Toolchain {
                    name,
                    image: tc.image.into_inner(),
                    dockerfile,
                    context,
                    build_args: tc.build_args,
                    env,
                    version_command: tc.version_command.map(|v| v.into_inner()),
                },
            );
        }

        let task_names: HashSet<String> = self.tasks.keys().map(|k| k.get_ref().clone()).collect();
        let mut tasks = BTreeMap::new();
        for (name, task) in self.tasks {
            let name_span = name.span();
            let name = name.into_inner();
            let task_span = task.span();
            let task = task.into_inner();
            if !is_name(&name) {
                err(
                    name_span.clone(),
                    format!("`{name}` is not a valid task name {NAME_RULE}"),
                );
            }
            if !toolchains.contains_key(task.toolchain.get_ref()) {
                let known: Vec<&str> = toolchains.keys().map(String::as_str).collect();
                err(
                    task.toolchain.span(),
                    format!(
                        "task `{name}` uses unknown toolchain `{}` (defined: {})",
                        task.toolchain.get_ref(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            let mut deps = Vec::new();
            let mut dep_spans = Vec::new();
            let mut seen = HashSet::new();
            for dep in task.deps {
                if !task_names.contains(dep.get_ref()) {
                    err(
                        dep.span(),
                        format!("task `{name}` depends on unknown task `{}`", dep.get_ref()),
                    );
                } else if dep.get_ref() == &name {
                    err(dep.span(), format!("task `{name}` depends on itself"));
                } else if !seen.insert(dep.get_ref().clone()) {
                    err(
                        dep.span(),
                        format!("task `{name}` lists `{}` twice", dep.get_ref()),
                    );
                }
                dep_spans.push(Some(dep.span()));
                deps.push(dep.into_inner());
            }
            if task.run.get_ref().trim().is_empty() {
                err(task.run.span(), format!("task `{name}` has an empty `run`"));
            }
            if task.run.get_ref().contains('\0') {
                err(
                    task.run.span(),
                    format!("task `{name}`: `run` contains a NUL byte, which no shell command can"),
                );
            }
            let workdir = match task.workdir {
                None => ".".to_string(),
                Some(w) if w.get_ref() == "." => ".".to_string(),
                Some(w) => match normalize(w.get_ref()) {
                    Ok(p) => p,
                    Err(e) => {
                        err(w.span(), format!("task `{name}`: `workdir` {e}"));
                        ".".into()
                    }
                },
            };
            let input_span = task.inputs.as_ref().map_or(task_span.clone(), |i| i.span());
            let input_list: Vec<Spanned<String>> =
                task.inputs.map(|i| i.into_inner()).unwrap_or_default();
            let input_spans: Vec<_> = input_list.iter().map(|s| Some(s.span())).collect();
            let raw_inputs: Vec<String> = input_list.iter().map(|s| s.get_ref().clone()).collect();
            let inputs = match InputSet::new(&raw_inputs) {
                Ok(set) => {
                    for (i, pattern) in set.patterns.iter().enumerate() {
                        if let Some(why) = forbidden_input(pattern, &cache_inside) {
                            let span = input_list[i].span();
                            err(span, format!("task `{name}`: input `{pattern}` {why}"));
                        }
                    }
                    set
                }
                Err((i, e)) => {
                    let span = input_list.get(i).map_or(input_span, |s| s.span());
                    err(span, format!("task `{name}`: input {e}"));
                    InputSet::new(&[]).expect("empty input set")
                }
            };
            let mut outputs = Vec::new();
            for out in &task.outputs {
                match OutputPath::new(out.get_ref()) {
                    Ok(o) => {
                        if let Some(why) = forbidden_output(&o, &cache_inside) {
                            err(
                                out.span(),
                                format!("task `{name}`: output `{}` {why}", o.path),
                            );
                        }
                        outputs.push((o, out.span()));
                    }
                    Err(e) => err(out.span(), format!("task `{name}`: output {e}")),
                }
            }
            if outputs.is_empty() {
                err(
                    name_span.clone(),
                    format!("task `{name}` declares no `outputs`"),
                );
            }
            let mut env = Vec::new();
            for var in task.env {
                if !is_env_name(var.get_ref()) {
                    err(
                        var.span(),
                        format!(
                            "`{}` is not a valid environment variable name",
                            var.get_ref()
                        ),
                    );
                } else if env.contains(var.get_ref()) {
                    err(
                        var.span(),
                        format!("task `{name}` lists `{}` twice in `env`", var.get_ref()),
                    );
                }
                env.push(var.into_inner());
            }
            let memory = task
                .memory
                .as_ref()
                .and_then(|v| match parse_size(v.get_ref()) {
                    Ok(n) if n >= 4 * 1024 * 1024 => Some(n),
                    Ok(n) => {
                        err(
                            v.span(),
                            format!("task `{name}`: `memory` must be at least 4MB, not {n} bytes"),
                        );
                        None
                    }
                    Err(e) => {
                        err(
                            v.span(),
                            format!("task `{name}`: `memory` is not a size such as \"512MB\": {e}"),
                        );
                        None
                    }
                });
            let cpus = task.cpus.as_ref().and_then(|c| {
                let v = *c.get_ref();
                if v > 0.0 && v <= 1024.0 {
                    Some(v)
                } else {
                    err(
                        c.span(),
                        format!(
                            "task `{name}`: `cpus` must be more than 0 (and at most 1024), not {v}"
                        ),
                    );
                    None
                }
            });
            tasks.insert(
                name.clone(),
                (
                    Task {
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
                        memory,
                        cpus,
                        span: Some(task_span),
                        dep_spans,
                        input_spans,
                    },
                    outputs,
                ),
            );
        }

        // No two outputs, of one task or of two, may claim the same path.
        let all: Vec<(&str, &OutputPath, std::ops::Range<usize>)> = tasks
            .iter()
            .flat_map(|(n, (_, outs))| outs.iter().map(move |(o, s)| (n.as_str(), o, s.clone())))
            .collect();
        for (span, message) in output_conflicts(&all) {
            err(span, message);
        }

        if tasks.is_empty() {
            errors.push(source.diagnostic(None, "the configuration defines no tasks"));
        }
        if !errors.is_empty() {
            return Err(Error::Config(errors));
        }
        Ok(Config {
            root,
            source,
            builtin,
            settings,
            toolchains,
            tasks: tasks.into_iter().map(|(k, (t, _))| (k, t)).collect(),
            all_outputs: Default::default(),
        })
    }
}

/// Why an input pattern may not be declared: it reaches into `.git` or the cache folder (an
/// exclude may name them; it only takes files away).
fn forbidden_input(pattern: &str, cache: &[String]) -> Option<String> {
    if pattern.starts_with('!') {
        return None;
    }
    forbidden_place(pattern, cache)
}

/// Why an output may not be declared: it lies in `.git` or the cache folder, or would claim
/// either whole (a folder above the cache folder, a glob matching it or `.git`).
fn forbidden_output(o: &OutputPath, cache: &[String]) -> Option<String> {
    if let Some(why) = forbidden_place(&o.path, cache) {
        return Some(why);
    }
    if o.covers(".git") {
        return Some("would claim `.git`, which belongs to git".into());
    }
    cache
        .iter()
        .find(|c| o.covers(c))
        .map(|c| format!("contains the cache folder `{c}`"))
}

/// NUL bytes where the engine needs a C string (a command, an image reference, an env value).
fn nul_bytes(name: &str, tc: &ToolchainFile) -> Vec<(std::ops::Range<usize>, String)> {
    let mut found = Vec::new();
    for (what, value) in [
        ("image", Some(&tc.image)),
        ("version_command", tc.version_command.as_ref()),
    ] {
        if let Some(v) = value.filter(|v| v.get_ref().contains('\0')) {
            let message = format!("toolchain `{name}`: `{what}` contains a NUL byte");
            found.push((v.span(), message));
        }
    }
    for (k, v) in &tc.env {
        if v.contains('\0') {
            let message = format!(
                "toolchain `{name}`: the value of `{}` contains a NUL byte",
                k.get_ref()
            );
            found.push((k.span(), message));
        }
    }
    found
}

/// Outputs claiming the same path, of one task (declared twice) or of two: where and why.
fn output_conflicts(
    all: &[(&str, &OutputPath, std::ops::Range<usize>)],
) -> Vec<(std::ops::Range<usize>, String)> {
    let paths: Vec<&OutputPath> = all.iter().map(|(_, o, _)| *o).collect();
    conflicts(&paths)
        .into_iter()
        .map(|(b, a)| {
            let ((a_task, a, _), (b_task, b, b_span)) = (&all[a], &all[b]);
            let message = if a_task == b_task {
                format!("task `{b_task}` declares `{}` twice", b.path)
            } else if a.path == b.path {
                format!(
                    "tasks `{a_task}` and `{b_task}` both claim output `{}`",
                    b.path
                )
            } else {
                format!(
                    "tasks `{a_task}` and `{b_task}` both claim output `{}` (`{}`)",
                    b.path, a.path
                )
            };
            (b_span.clone(), message)
        })
        .collect()
}
