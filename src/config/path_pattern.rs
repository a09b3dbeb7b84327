//! Input globs and output paths of a task, checked to stay inside the project root.

use std::collections::HashMap;

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

/// Whether a normalised path has a `.git` component: git's own files are never inputs or outputs.
pub(crate) fn in_git(path: &str) -> bool {
    path.split('/').any(|c| c == ".git")
}

/// Whether `path` is `folder` or lies below it (both normalised; "" is the root).
pub(crate) fn is_within(path: &str, folder: &str) -> bool {
    folder.is_empty()
        || path == folder
        || (path.starts_with(folder) && path.as_bytes().get(folder.len()) == Some(&b'/'))
}

/// Why a normalised path or pattern reaches into a `.git` folder or the cache folder (`cache`:
/// the cache folder's project-relative paths), if it does: its literal part decides.
pub(crate) fn forbidden_place(path: &str, cache: &[String]) -> Option<String> {
    if path == ".git" {
        return Some("is `.git`, which belongs to git".into());
    }
    if in_git(path) {
        return Some("lies in a `.git` folder, which belongs to git".into());
    }
    let prefix = literal_prefix(path);
    cache
        .iter()
        .find(|c| !prefix.is_empty() && is_within(&prefix, c))
        .map(|c| format!("lies in the cache folder `{c}`"))
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
        // Asked for every folder a walk meets: no allocation.
        let below = |path: &str, folder: &str| {
            path.len() > folder.len()
                && path.starts_with(folder)
                && path.as_bytes()[folder.len()] == b'/'
        };
        self.roots
            .iter()
            .any(|r| r.is_empty() || rel_dir == r || below(rel_dir, r) || below(r, rel_dir))
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

    /// Whether a project-relative path belongs to this output. Nothing in a `.git` folder ever
    /// does: a folder or glob output never claims (places, saves or removes) git's files.
    pub fn contains(&self, rel: &str) -> bool {
        let claimed = match &self.glob {
            Some(g) => g.is_match(rel),
            None => is_within(rel, &self.path),
        };
        claimed && !in_git(rel)
    }

    /// Whether this output would claim the folder `rel` whole (its own path, an ancestor of it,
    /// or a glob matching it) or anything at `rel` at all.
    pub(crate) fn covers(&self, rel: &str) -> bool {
        match &self.glob {
            Some(g) => g.is_match(rel),
            None => is_within(rel, &self.path),
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

/// Outputs that can claim the same path, as (an output, the one it conflicts with: one declared
/// before it at the same literal prefix, or one above it), each output at most once. What
/// conflicts is what [`OutputPath::overlaps`] says; but after a sort by path, an output is only
/// compared with those at its own literal prefix and those above it, so thousands of tasks
/// validate in linear time (not all pairs).
pub(crate) fn conflicts<'a>(outputs: &[&'a OutputPath]) -> Vec<(usize, usize)> {
    let keys: Vec<String> = outputs.iter().map(|o| o.prefix()).collect();
    let mut order: Vec<usize> = (0..outputs.len()).collect();
    // By components, so that everything below a path comes right after it.
    order.sort_by(|&a, &b| keys[a].split('/').cmp(keys[b].split('/')).then(a.cmp(&b)));
    let mut above: Vec<Level<'a>> = Vec::new();
    let mut found = Vec::new();
    for group in order.chunk_by(|&a, &b| keys[a] == keys[b]) {
        let key = keys[group[0]].as_str();
        while above
            .last()
            .is_some_and(|l| !is_within(key, &keys[l.first]))
        {
            above.pop();
        }
        let mut level = Level {
            first: group[0],
            literal: None,
            globs: Vec::new(),
            patterns: HashMap::new(),
        };
        let mut self_matching = None;
        for &i in group {
            let o: &'a OutputPath = outputs[i];
            let conflict = conflict_above(&above, outputs, o, key)
                .or_else(|| conflict_beside(&level, self_matching, o, key));
            if let Some(with) = conflict {
                found.push((i, with));
            }
            if o.is_glob() {
                if self_matching.is_none() && o.covers(key) {
                    self_matching = Some(i);
                }
                level.globs.push(i);
                level.patterns.entry(o.path.as_str()).or_insert(i);
            } else {
                level.literal.get_or_insert(i);
            }
        }
        above.push(level);
    }
    found.sort_unstable();
    found
}

/// The outputs at one literal prefix: the first literal one, and every glob (by pattern too).
struct Level<'a> {
    first: usize,
    literal: Option<usize>,
    globs: Vec<usize>,
    patterns: HashMap<&'a str, usize>,
}

/// An output above `o` that claims what `o` names: a folder above it, or a glob matching it.
fn conflict_above(
    above: &[Level<'_>],
    all: &[&OutputPath],
    o: &OutputPath,
    key: &str,
) -> Option<usize> {
    let at = if o.is_glob() { key } else { o.path.as_str() };
    above.iter().rev().find_map(|l| {
        l.literal
            .or_else(|| l.globs.iter().copied().find(|&g| all[g].covers(at)))
    })
}

/// An output declared before `o` at the same literal prefix that overlaps it.
fn conflict_beside(
    level: &Level<'_>,
    self_matching: Option<usize>,
    o: &OutputPath,
    key: &str,
) -> Option<usize> {
    if !o.is_glob() {
        // A literal path claims everything at and below its prefix.
        return level.literal.or_else(|| level.globs.first().copied());
    }
    level
        .literal
        .or_else(|| level.patterns.get(o.path.as_str()).copied())
        .or_else(|| {
            o.covers(key)
                .then(|| level.globs.first().copied())
                .flatten()
        })
        .or(self_matching)
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

    #[test]
    fn conflicts_are_the_overlapping_pairs() {
        let raw = [
            "web/static",
            "web/static/app.js",
            "web/static/*.js",
            "web/statics",
            "web/*.go",
            "web/*.go",
            "web/*.html",
            "web/a.go",
            "*.gen.go",
            "api.gen.go",
            "pkg/api/**",
            "pkg/api/x/y",
            "pkg/apix",
            "pkg/*",
            "a-b",
            "a/b",
            "a/b.c",
            "a/b/c",
            "dist/**/x/*.js",
            "dist/y/*.js",
            "dist/*",
        ];
        let outs: Vec<OutputPath> = raw.iter().map(|s| OutputPath::new(s).unwrap()).collect();
        let refs: Vec<&OutputPath> = outs.iter().collect();
        let found = conflicts(&refs);
        // Every overlapping pair has one of its two reported, against an overlapping output.
        for (i, with) in &found {
            assert!(
                outs[*i].overlaps(&outs[*with]),
                "{} / {}",
                raw[*i],
                raw[*with]
            );
        }
        let reported: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
        for i in 0..outs.len() {
            for j in i + 1..outs.len() {
                if outs[i].overlaps(&outs[j]) {
                    assert!(
                        reported.contains(&i) || reported.contains(&j),
                        "{} / {} overlap and neither is reported",
                        raw[i],
                        raw[j]
                    );
                }
            }
        }
        let named: Vec<&str> = reported.iter().map(|i| raw[*i]).collect();
        assert_eq!(
            named,
            [
                "web/static/app.js",
                "web/static/*.js",
                "web/*.go",
                "web/a.go",
                "api.gen.go",
                "pkg/api/**",
                "pkg/api/x/y",
                "pkg/apix",
                "a/b/c",
                "dist/y/*.js",
            ]
        );
    }

    #[test]
    fn git_and_the_cache_folder_are_off_limits() {
        let cache = ["out/cache".to_string()];
        assert!(forbidden_place(".git", &cache).is_some());
        assert!(forbidden_place("x/.git/hooks/*", &cache).is_some());
        assert!(forbidden_place("out/cache/**", &cache).is_some());
        assert!(forbidden_place("out/cache", &cache).is_some());
        assert!(forbidden_place("out/cachex", &cache).is_none());
        assert!(forbidden_place("out", &cache).is_none());
        assert!(forbidden_place("**", &cache).is_none());
        assert!(forbidden_place(".gitignore", &cache).is_none());
        // A folder or glob output never claims git's files.
        let o = |s: &str| OutputPath::new(s).unwrap();
        assert!(!o("**/pre-commit").contains(".git/hooks/pre-commit"));
        assert!(!o("vendor").contains("vendor/.git/config"));
        assert!(o("vendor").contains("vendor/.gitignore"));
        assert!(o("*").covers(".git") && o("out").covers("out/cache"));
    }
}
