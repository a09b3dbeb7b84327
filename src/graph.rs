//! The task DAG: dependency cycles, the order tasks run in, and what a set of targets needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::config::{Config, Task};
use crate::error::{Error, Result};

/// The validated, acyclic task graph of a [`Config`].
#[derive(Debug, Clone)]
pub struct Graph {
    /// All tasks in a dependency order (a task after all its dependencies; ties by name).
    order: Vec<String>,
}

impl Graph {
    /// Builds the graph, reporting a dependency cycle as a whole (`a -> b -> a`).
    pub fn new(config: &Config) -> Result<Graph> {
        if let Some(cycle) = find_cycle(config) {
            let first = &config.tasks[&cycle[0]];
            let span = first
                .deps
                .iter()
                .position(|d| *d == cycle[1])
                .and_then(|i| first.dep_spans[i].clone())
                .or_else(|| first.span.clone());
            return Err(Error::Config(vec![config.source.diagnostic(
                span,
                format!("dependency cycle: {}", cycle.join(" -> ")),
            )]));
        }
        // Kahn's algorithm with a sorted ready set: a deterministic order.
        let mut missing: BTreeMap<&str, usize> = config
            .tasks
            .values()
            .map(|t| (t.name.as_str(), t.deps.len()))
            .collect();
        let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in config.tasks.values() {
            for d in &t.deps {
                dependents
                    .entry(d.clone())
                    .or_default()
                    .push(t.name.clone());
            }
        }
        let mut ready: BTreeSet<&str> = missing
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut order = Vec::new();
        while let Some(name) = ready.pop_first() {
            order.push(name.to_string());
            for dep in dependents.get(name).into_iter().flatten() {
                let n = missing.get_mut(dep.as_str()).expect("known task");
                *n -= 1;
                if *n == 0 {
                    ready.insert(dep.as_str());
                }
            }
        }
        debug_assert_eq!(order.len(), config.tasks.len());
        Ok(Graph { order })
    }

    /// Every task in dependency order.
    #[cfg(test)]
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The targets and everything they need, in dependency order; all tasks when `targets` is empty.
    pub fn plan(&self, config: &Config, targets: &[String]) -> Result<Vec<String>> {
        if targets.is_empty() {
            return Ok(self.order.clone());
        }
        let mut needed = BTreeSet::new();
        let mut stack = Vec::new();
        for t in targets {
            if !config.tasks.contains_key(t) {
                return Err(Error::UnknownTarget {
                    name: t.clone(),
                    known: self.order.join(", "),
                });
            }
            stack.push(t.as_str());
        }
        while let Some(t) = stack.pop() {
            if needed.insert(t) {
                stack.extend(config.tasks[t].deps.iter().map(String::as_str));
            }
        }
        Ok(self
            .order
            .iter()
            .filter(|t| needed.contains(t.as_str()))
            .cloned()
            .collect())
    }

    /// A plain-text rendering: each task with its toolchain, dependencies and outputs.
    pub fn to_text(&self, config: &Config) -> String {
        let mut s = String::new();
        for name in &self.order {
            let t = &config.tasks[name];
            let _ = write!(s, "{name} [{}]", t.toolchain);
            if !t.deps.is_empty() {
                let _ = write!(s, " <- {}", t.deps.join(", "));
            }
            s.push('\n');
            if let Some(d) = &t.description {
                let _ = writeln!(s, "    {d}");
            }
            let tc = &config.toolchains[&t.toolchain];
            let _ = writeln!(s, "    image: {} ({})", tc.image, tc.why);
            let outs: Vec<&str> = t.outputs.iter().map(|o| o.path.as_str()).collect();
            let _ = writeln!(s, "    outputs: {}", outs.join(", "));
        }
        s
    }

    /// Graphviz `dot`: tasks as boxes, an edge from each dependency to its dependent.
    pub fn to_dot(&self, config: &Config) -> String {
        let mut s = String::from("digraph flamenco_build {\n  rankdir=LR;\n  node [shape=box];\n");
        for name in &self.order {
            let t: &Task = &config.tasks[name];
            let _ = writeln!(s, "  \"{name}\" [label=\"{name}\\n({})\"];", t.toolchain);
        }
        for name in &self.order {
            for d in &config.tasks[name].deps {
                let _ = writeln!(s, "  \"{d}\" -> \"{name}\";");
            }
        }
        s.push_str("}\n");
        s
    }
}

/// A cycle as the list of task names along it, the first repeated at the end. A depth-first
/// search with its own stack (a chain of thousands of tasks must not overflow the thread's),
/// visiting each task and dependency once.
fn find_cycle(config: &Config) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let names: Vec<&str> = config.tasks.keys().map(String::as_str).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let deps: Vec<Vec<usize>> = config
        .tasks
        .values()
        .map(|t| {
            t.deps
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let mut marks = vec![Mark::New; names.len()];
    for start in 0..names.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // The path from `start`: each task with the next of its dependencies to visit.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Active;
        while let Some((task, next)) = path.last_mut() {
            let task = *task;
            let Some(&dep) = deps[task].get(*next) else {
                marks[task] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match marks[dep] {
                Mark::Done => {}
                Mark::New => {
                    marks[dep] = Mark::Active;
                    path.push((dep, 0));
                }
                Mark::Active => {
                    let from = path.iter().position(|(t, _)| *t == dep).expect("on path");
                    let mut cycle: Vec<String> = path[from..]
                        .iter()
                        .map(|(t, _)| names[*t].to_string())
                        .collect();
                    cycle.push(names[dep].to_string());
                    return Some(cycle);
                }
            }
        }
    }
    None
}
