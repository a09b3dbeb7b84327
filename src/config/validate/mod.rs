//! Validation of a parsed [`ConfigFile`] into a [`Config`], one section at a time: settings,
//! toolchains, tasks, then the outputs of all tasks together. Every problem is collected, in the
//! order of the sections, and reported at once.

mod paths;
mod remote;
mod settings;
mod tasks;
mod toolchains;
mod values;

use std::ops::Range;
use std::path::PathBuf;

use super::file::ConfigFile;
use super::{Config, Diagnostic, Source};
use crate::error::{Error, Result};

/// What the checks of every section share: where problems are reported, and what the settings
/// decided that later sections need.
struct Check<'a> {
    source: &'a Source,
    errors: Vec<Diagnostic>,
    /// The cache folder's project-relative paths: no output or input may reach into it.
    cache_inside: Vec<String>,
}

impl Check<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(self.source.diagnostic(Some(span), message));
    }
}

/// Checks `file` (read from `source`) against the project `root`; all problems are reported
/// together.
pub(super) fn validate(
    file: ConfigFile,
    root: PathBuf,
    source: Source,
    builtin: bool,
) -> Result<Config> {
    let mut check = Check {
        source: &source,
        errors: Vec::new(),
        cache_inside: Vec::new(),
    };
    let settings = settings::settings(&mut check, file.settings.unwrap_or_default(), &root);
    let remote = remote::remote(&mut check, file.remote.unwrap_or_default());
    let mut toolchains = toolchains::toolchains(&mut check, file.toolchains);
    for tc in toolchains.values_mut() {
        tc.why = match builtin {
            true => "the built-in graph's default".into(),
            false => format!("set in {}", super::CONFIG_FILE),
        };
    }
    let tasks = tasks::tasks(&mut check, file.tasks, &toolchains);
    paths::output_conflicts(&mut check, &tasks);
    let mut errors = check.errors;
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
        remote,
        toolchains,
        tasks: tasks.into_iter().map(|(k, (t, _))| (k, t)).collect(),
        all_outputs: Default::default(),
    })
}
