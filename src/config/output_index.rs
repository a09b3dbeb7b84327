//! The outputs of every task of a configuration at once, so that an input walk can tell in one
//! look whether a path is some task's output, and whose.

use std::collections::HashMap;

use globset::{GlobSet, GlobSetBuilder};

use super::Task;

#[derive(Debug, Clone, Default)]
pub struct OutputIndex {
    /// Literal outputs (files, or folders that are outputs whole) and the task of each.
    literal: HashMap<String, String>,
    /// Glob outputs; None when there are none.
    globs: Option<GlobSet>,
    /// The task of each glob of `globs`.
    glob_owners: Vec<String>,
}

impl OutputIndex {
    pub fn new<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> OutputIndex {
        let mut literal = HashMap::new();
        let mut globs = GlobSetBuilder::new();
        let mut glob_owners = Vec::new();
        for task in tasks {
            for out in &task.outputs {
                if !out.is_glob() {
                    literal.insert(out.path.clone(), task.name.clone());
                } else if let Ok(g) = super::path_pattern::glob(&out.path) {
                    // (Validation already parsed every output glob.)
                    globs.add(g);
                    glob_owners.push(task.name.clone());
                }
            }
        }
        OutputIndex {
            literal,
            globs: if glob_owners.is_empty() {
                None
            } else {
                globs.build().ok()
            },
            glob_owners,
        }
    }

    /// The task whose output project-relative `rel` belongs to, if any (outputs of two tasks
    /// never overlap).
    pub fn owner(&self, rel: &str) -> Option<&str> {
        self.folder_owner(rel).or_else(|| {
            let g = self.globs.as_ref()?.matches(rel);
            g.first().map(|i| self.glob_owners[*i].as_str())
        })
    }

    /// The task of a literal output that is `rel` or a folder above it: everything below `rel`
    /// is that task's output.
    pub fn folder_owner(&self, rel: &str) -> Option<&str> {
        if self.literal.is_empty() {
            return None;
        }
        let mut at = rel;
        loop {
            if let Some(task) = self.literal.get(at) {
                return Some(task);
            }
            at = &at[..at.rfind('/')?];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_outputs_cover_what_is_below_them_and_globs_their_matches() {
        let config = crate::config::Config::parse(
            std::path::PathBuf::from("/p"),
            crate::config::Source::new(
                "flamenco-build.toml",
                r#"
[toolchains.go]
image = "go"

[tasks.web]
toolchain = "go"
run = "true"
outputs = ["web/static", "bin"]

[tasks.gen]
toolchain = "go"
run = "true"
outputs = ["pkg/api/*.gen.go"]
"#,
            ),
            false,
        )
        .unwrap();
        let index = config.all_outputs();
        for (rel, task) in [
            ("web/static", "web"),
            ("web/static/a/b.js", "web"),
            ("bin", "web"),
            ("pkg/api/x.gen.go", "gen"),
        ] {
            assert_eq!(index.owner(rel), Some(task), "{rel}");
        }
        for rel in [
            "web/statics",
            "web",
            "binary",
            "pkg/api/x.go",
            "pkg/api/sub/x.gen.go",
        ] {
            assert_eq!(index.owner(rel), None, "{rel}");
        }
        assert_eq!(index.folder_owner("web/static/a"), Some("web"));
        assert_eq!(index.folder_owner("pkg/api"), None);
        assert_eq!(OutputIndex::default().owner("anything"), None);
    }
}
