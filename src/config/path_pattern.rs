//! Input globs and output paths of a task, checked to stay inside the project root.

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// Characters that make a path a glob.
const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}'];

fn is_glob(s: &str) -> bool {
    s.contains(GLOB_META)
}

pub(super) fn glob(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("cannot parse glob `{pattern}`: {}", e.kind()))
}

/// Normalises a project-relative path or glob, refusing anything that could escape the root.
pub(crate) fn normalize(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "`{path}` is absolute; paths are relative to the project root"
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("`{path}` escapes the project root (`..`)")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{path}` names the project root itself"));
    }
    Ok(parts.join("/"))
}

/// The part of a path before its first glob component: where a walk has to start.
fn literal_prefix(path: &str) -> String {
    path.split('/')
        .take_while(|part| !is_glob(part))
        .collect::<Vec<_>>()
        .join("/")
}

/// A task's input globs: `!pattern` excludes; a literal folder stands for everything below it.
#[derive(Debug, Clone)]
pub struct InputSet {
    /// The patterns as written (normalised), includes and excludes.
    pub patterns: Vec<String>,
    include: GlobSet,
    /// For each glob of `include`, the index in `patterns` it came from.
    include_origin: Vec<usize>,
    exclude: GlobSet,
    roots: Vec<String>,
}

impl InputSet {
    /// Builds the set; on failure, the index of the offending pattern and why.
    pub fn new(patterns: &[String]) -> Result<InputSet, (usize, String)> {
        let mut include = GlobSetBuilder::new();
        let mut include_origin = Vec::new();
        let mut exclude = GlobSetBuilder::new();
        let mut roots: Vec<String> = Vec::new();
        let mut normalized = Vec::new();
        for (i, raw) in patterns.iter().enumerate() {
            let (negated, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw.as_str()),
            };
            let body = normalize(body).map_err(|e| (i, e))?;
            let mut globs = vec![glob(&body).map_err(|e| (i, e))?];
            if !body.ends_with("**") {
                // `cmd` and `cmd/*` mean their whole subtree when they name folders.
                globs.push(glob(&format!("{body}/**")).map_err(|e| (i, e))?);
            }
            for g in globs {
                if negated {
                    exclude.add(g);
                } else {
                    include.add(g);
                    include_origin.push(i);
                }
            }
            if !negated {
                roots.push(literal_prefix(&body));
            }
            normalized.push(if negated { format!("!{body}") } else { body });
        }
        // Walk each subtree once: drop roots inside other roots.
        roots.sort();
        roots.dedup();
        let mut minimal: Vec<String> = Vec::new();
        for r in roots {
            let covered = minimal
                .iter()
                .any(|m| m.is_empty() || r == *m || r.starts_with(&format!("{m}/")));
            if !covered {
                minimal.push(r);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| (0, e.to_string()));
        Ok(InputSet {
            patterns: normalized,
            include: build(include)?,
            include_origin,
            exclude: build(exclude)?,
            roots: minimal,
        })
    }

    /// Whether a project-relative file path is an input.
    pub fn matches(&self, rel: &str) -> bool {
        self.include.is_match(rel) && !self.exclude.is_match(rel)
    }

    /// Indices into `patterns` of the include patterns that match `rel` (and `rel` is not excluded).
    pub fn matching_patterns(&self, rel: &str) -> Vec<usize> {
        if self.exclude.is_match(rel) {
            return Vec::new();
        }
        let mut v: Vec<usize> = self
            .include
            .matches(rel)
            .into_iter()
            .map(|g| self.include_origin[g])
            .collect();
        v.dedup();
        v
    }

    /// Whether a folder may hold inputs, so a walk can skip the ones that cannot.
    pub fn may_contain(&self, rel_dir: &str) -> bool {
        self.roots.iter().any(|r| {
            r.is_empty()
                || rel_dir == r
                || rel_dir.starts_with(&format!("{r}/"))
                || r.starts_with(&format!("{rel_dir}/"))
        })
    }

    /// The folders (or files) below which all inputs lie; "" means the whole root.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }
}

/// A declared output: a file, a folder (replaced whole), or a glob.
#[derive(Debug, Clone)]
pub struct OutputPath {
    /// Normalised, relative to the project root.
    pub path: String,
    glob: Option<GlobMatcher>,
}

impl OutputPath {
    pub fn new(raw: &str) -> Result<OutputPath, String> {
        let path = normalize(raw)?;
        let glob = if is_glob(&path) {
            Some(glob(&path)?.compile_matcher())
        } else {
            None
        };
        Ok(OutputPath { path, glob })
    }

    pub fn is_glob(&self) -> bool {
        self.glob.is_some()
    }

    /// The literal part: the path itself, or the folder a glob's matches lie below.
    pub fn prefix(&self) -> String {
        if self.glob.is_some() {
            literal_prefix(&self.path)
        } else {
            self.path.clone()
        }
    }

    /// Whether a project-relative path belongs to this output.
    pub fn contains(&self, rel: &str) -> bool {
        match &self.glob {
            Some(g) => g.is_match(rel),
            None => rel == self.path || rel.starts_with(&format!("{}/", self.path)),
        }
    }

    /// Whether two outputs can claim the same path.
    pub fn overlaps(&self, other: &OutputPath) -> bool {
        match (&self.glob, &other.glob) {
            (None, None) => self.contains(&other.path) || other.contains(&self.path),
            (Some(_), None) => self.contains(&other.path) || other.contains(&self.prefix()),
            (None, Some(_)) => other.overlaps(self),
            // Two globs: the same pattern, or one's literal part inside the other's matches.
            (Some(_), Some(_)) => {
                self.path == other.path
                    || self.contains(&other.prefix())
                    || other.contains(&self.prefix())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> InputSet {
        InputSet::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn folders_globs_and_negations() {
        let s = set(&["go.mod", "cmd", "internal/**", "!internal/**/*.gen.go"]);
        assert!(s.matches("go.mod"));
        assert!(s.matches("cmd/a/main.go"));
        assert!(s.matches("internal/x/y.go"));
        assert!(!s.matches("internal/x/y.gen.go"));
        assert!(!s.matches("go.sum"));
        assert!(!s.matches("cmdx/a.go"));
        assert_eq!(s.roots(), ["cmd", "go.mod", "internal"]);
        assert!(s.may_contain("internal/x"));
        assert!(!s.may_contain("web"));
    }

    #[test]
    fn star_does_not_cross_folders() {
        let s = set(&["web/*.go"]);
        assert!(s.matches("web/web.go"));
        assert!(!s.matches("web/static/x.go"));
        assert_eq!(s.roots(), ["web"]);
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(InputSet::new(&["../x".into()]).is_err());
        assert!(InputSet::new(&["/etc/passwd".into()]).is_err());
        assert!(InputSet::new(&["a/[".into()]).is_err());
        assert!(OutputPath::new("a/../../b").is_err());
        assert_eq!(OutputPath::new("./a//b/").unwrap().path, "a/b");
    }

    #[test]
    fn output_overlap() {
        let o = |s: &str| OutputPath::new(s).unwrap();
        assert!(o("web/static").overlaps(&o("web/static/app.js")));
        assert!(o("web/static/*.js").overlaps(&o("web/static/app.js")));
        assert!(o("web/static/**").overlaps(&o("web")));
        assert!(!o("web/static").overlaps(&o("web/statics")));
        assert!(!o("pkg/api/*.gen.go").overlaps(&o("internal/x")));
    }
}
