//! What a task reads and writes: input patterns and outputs, each kept out of `.git` and the
//! cache folder, and no output claimed twice.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::Check;
use crate::config::Task;
use crate::config::path_pattern::{InputSet, OutputPath, conflicts, forbidden_place};

/// A task's outputs, each with where it is written.
pub(super) type Outputs = Vec<(OutputPath, Range<usize>)>;

/// The input set, and where each pattern is written. Problems point at the pattern, else at the
/// list, else (no `inputs` at all) at the task.
pub(super) fn inputs(
    check: &mut Check,
    task: &str,
    inputs: Option<Spanned<Vec<Spanned<String>>>>,
    task_span: Range<usize>,
) -> (InputSet, Vec<Option<Range<usize>>>) {
    let list_span = inputs.as_ref().map_or(task_span, |i| i.span());
    let list: Vec<Spanned<String>> = inputs.map(|i| i.into_inner()).unwrap_or_default();
    let spans = list.iter().map(|s| Some(s.span())).collect();
    let raw: Vec<String> = list.iter().map(|s| s.get_ref().clone()).collect();
    let set = match InputSet::new(&raw) {
        Ok(set) => {
            for (i, pattern) in set.patterns.iter().enumerate() {
                if let Some(why) = forbidden_input(pattern, &check.cache_inside) {
                    let span = list[i].span();
                    check.err(span, format!("task `{task}`: input `{pattern}` {why}"));
                }
            }
            set
        }
        Err((i, e)) => {
            let span = list.get(i).map_or(list_span, |s| s.span());
            check.err(span, format!("task `{task}`: input {e}"));
            InputSet::new(&[]).expect("empty input set")
        }
    };
    (set, spans)
}

/// The outputs that parse; a task must declare at least one (else the error points at its name).
pub(super) fn outputs(
    check: &mut Check,
    task: &str,
    outputs: &[Spanned<String>],
    name_span: Range<usize>,
) -> Outputs {
    let mut checked = Vec::new();
    for out in outputs {
        match OutputPath::new(out.get_ref()) {
            Ok(o) => {
                if let Some(why) = forbidden_output(&o, &check.cache_inside) {
                    check.err(
                        out.span(),
                        format!("task `{task}`: output `{}` {why}", o.path),
                    );
                }
                checked.push((o, out.span()));
            }
            Err(e) => check.err(out.span(), format!("task `{task}`: output {e}")),
        }
    }
    if checked.is_empty() {
        check.err(name_span, format!("task `{task}` declares no `outputs`"));
    }
    checked
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

/// No two outputs, of one task (declared twice) or of two, may claim the same path.
pub(super) fn output_conflicts(check: &mut Check, tasks: &BTreeMap<String, (Task, Outputs)>) {
    let all: Vec<(&str, &OutputPath, &Range<usize>)> = tasks
        .iter()
        .flat_map(|(n, (_, outs))| outs.iter().map(move |(o, s)| (n.as_str(), o, s)))
        .collect();
    let paths: Vec<&OutputPath> = all.iter().map(|(_, o, _)| *o).collect();
    for (b, a) in conflicts(&paths) {
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
        check.err((*b_span).clone(), message);
    }
}
