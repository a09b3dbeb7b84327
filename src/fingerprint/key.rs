//! The task key: SHA-256 over a canonical serialisation of everything that can change a task's
//! result, and the explanation of why two keys differ.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::digest::{FileDigest, Manifest};

/// Bumped whenever what the recipe records changes (the key itself is versioned by the
/// `Action`'s salt, see [`super::action`]). 3: the memory and cpus limits.
pub const KEY_FORMAT: u32 = 3;

/// What a task key was computed from, in canonical form (sorted maps, a format version), and the
/// key itself: the digest of the task's REAPI `Action` ([`super::action`]). Stored with each
/// local cache entry so a later miss can say what changed; holds no secret in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecipe {
    pub format: u32,
    pub task: String,
    pub run: String,
    pub workdir: String,
    pub outputs: Vec<String>,
    pub network: bool,
    /// The memory limit in bytes and the CPU limit as the platform properties say them (text:
    /// a recipe compares equal only when the property does).
    #[serde(default)]
    pub memory: Option<u64>,
    #[serde(default)]
    pub cpus: Option<String>,
    /// The toolchain image's reference, as the task's platform names it.
    #[serde(default)]
    pub image: String,
    /// The toolchain's identity: its image ID (a re-tag changes it).
    pub toolchain: String,
    pub toolchain_env: BTreeMap<String, String>,
    /// Declared host variables: name → hash of the value, None when unset.
    pub env: BTreeMap<String, Option<String>>,
    /// Input files by project-relative path.
    pub inputs: Manifest,
    /// Direct dependencies: name → hash of their output manifest.
    pub deps: BTreeMap<String, String>,
    /// The digest of the task's `Action`, which covers all of the above and the values of the
    /// declared variables.
    pub key: TaskKey,
}

/// A task key: the REAPI digest of the task's `Action` (64 hex digits and the `Action`'s size,
/// which a REAPI server keys by too). Shown as the hex alone; stored as `hash/size`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct TaskKey {
    pub hash: String,
    pub size: u64,
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hash)
    }
}

impl From<TaskKey> for String {
    fn from(k: TaskKey) -> String {
        format!("{}/{}", k.hash, k.size)
    }
}

impl TryFrom<String> for TaskKey {
    type Error = String;
    fn try_from(s: String) -> Result<TaskKey, String> {
        let (hash, size) = s.split_once('/').ok_or_else(|| format!("not a key: {s}"))?;
        let size = size.parse().map_err(|_| format!("not a key: {s}"))?;
        Ok(TaskKey::new(hash.to_string(), size))
    }
}

impl TaskKey {
    pub fn new(hash: String, size: u64) -> TaskKey {
        TaskKey { hash, size }
    }

    pub fn short(&self) -> &str {
        &self.hash[..12.min(self.hash.len())]
    }
}

/// The value of a declared variable as it enters the key: hashed, so metadata never holds it.
pub fn env_value_hash(name: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"flamenco-build env v1\0");
    h.update(name.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    hex::encode(h.finalize())
}

impl KeyRecipe {
    pub fn key(&self) -> TaskKey {
        self.key.clone()
    }

    /// Why this recipe differs from an earlier one, cause by cause, names only.
    pub fn explain_against(&self, old: &KeyRecipe) -> Vec<String> {
        let mut why = Vec::new();
        if old.format != self.format {
            why.push(format!(
                "the key format changed ({} → {})",
                old.format, self.format
            ));
        }
        let (changed, added, removed) = diff_files(&old.inputs, &self.inputs);
        let list = |v: &[&String]| {
            let mut s: Vec<&str> = v.iter().take(10).map(|s| s.as_str()).collect();
            if v.len() > 10 {
                s.push("…");
            }
            format!("{} ({})", v.len(), s.join(", "))
        };
        if !changed.is_empty() {
            why.push(format!("input files changed: {}", list(&changed)));
        }
        if !added.is_empty() {
            why.push(format!("input files appeared: {}", list(&added)));
        }
        if !removed.is_empty() {
            why.push(format!("input files vanished: {}", list(&removed)));
        }
        for (name, v) in &self.env {
            if old.env.get(name) != Some(v) {
                why.push(format!("environment variable {name} changed"));
            }
        }
        for name in old.env.keys().filter(|n| !self.env.contains_key(*n)) {
            why.push(format!("environment variable {name} is no longer declared"));
        }
        if old.image != self.image {
            why.push(format!(
                "toolchain image reference changed ({} → {})",
                old.image, self.image
            ));
        }
        if old.toolchain != self.toolchain {
            why.push(format!(
                "toolchain image changed ({} → {})",
                short(&old.toolchain),
                short(&self.toolchain)
            ));
        }
        if old.toolchain_env != self.toolchain_env {
            why.push("toolchain env changed".into());
        }
        if old.run != self.run {
            why.push("command changed".into());
        }
        if old.workdir != self.workdir {
            why.push("working directory changed".into());
        }
        if old.outputs != self.outputs {
            why.push("declared outputs changed".into());
        }
        if old.network != self.network {
            why.push("network setting changed".into());
        }
        if old.memory != self.memory || old.cpus != self.cpus {
            why.push("memory or cpus limit changed".into());
        }
        for (dep, h) in &self.deps {
            match old.deps.get(dep) {
                Some(o) if o == h => {}
                Some(_) => why.push(format!("output of dependency {dep} changed")),
                None => why.push(format!("new dependency {dep}")),
            }
        }
        for dep in old.deps.keys().filter(|d| !self.deps.contains_key(*d)) {
            why.push(format!("dependency {dep} removed"));
        }
        why
    }
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// (changed, added, removed) paths between two manifests.
pub fn diff_files<'a>(
    old: &'a Manifest,
    new: &'a Manifest,
) -> (Vec<&'a String>, Vec<&'a String>, Vec<&'a String>) {
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for (path, d) in new {
        match old.get(path) {
            Some(o) if same(o, d) => {}
            Some(_) => changed.push(path),
            None => added.push(path),
        }
    }
    let removed = old.keys().filter(|p| !new.contains_key(*p)).collect();
    (changed, added, removed)
}

fn same(a: &FileDigest, b: &FileDigest) -> bool {
    a.sha256 == b.sha256 && a.executable == b.executable && a.link == b.link
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> KeyRecipe {
        let mut inputs = Manifest::new();
        inputs.insert(
            "go.mod".into(),
            FileDigest {
                sha256: "aa".into(),
                size: 1,
                executable: false,
                link: None,
                mode: None,
                dir: false,
            },
        );
        KeyRecipe {
            format: KEY_FORMAT,
            task: "t".into(),
            run: "go build".into(),
            workdir: ".".into(),
            outputs: vec!["bin".into()],
            network: false,
            memory: None,
            cpus: None,
            image: "go:1.23".into(),
            toolchain: "sha256:1111".into(),
            toolchain_env: BTreeMap::new(),
            env: [("GOOS".to_string(), Some(env_value_hash("GOOS", "linux")))].into(),
            inputs,
            deps: [("gen".to_string(), "h1".to_string())].into(),
            key: TaskKey::new("k".into(), 1),
        }
    }

    #[test]
    fn every_cause_is_named() {
        let base = recipe();
        type Change = Box<dyn Fn(&mut KeyRecipe)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|r| r.inputs.get_mut("go.mod").unwrap().sha256 = "bb".into()),
                "input files changed: 1 (go.mod)",
            ),
            (
                Box::new(|r| r.inputs.get_mut("go.mod").unwrap().executable = true),
                "input files changed",
            ),
            (
                Box::new(|r| {
                    r.inputs.insert(
                        "new.go".into(),
                        FileDigest {
                            sha256: "c".into(),
                            size: 1,
                            executable: false,
                            link: None,
                            mode: None,
                            dir: false,
                        },
                    );
                }),
                "input files appeared: 1 (new.go)",
            ),
            (
                Box::new(|r| {
                    r.inputs.clear();
                }),
                "input files vanished: 1 (go.mod)",
            ),
            (
                Box::new(|r| {
                    r.env
                        .insert("GOOS".into(), Some(env_value_hash("GOOS", "darwin")));
                }),
                "environment variable GOOS changed",
            ),
            (
                Box::new(|r| r.toolchain = "sha256:2222".into()),
                "toolchain image changed",
            ),
            (
                Box::new(|r| r.run = "go build -v".into()),
                "command changed",
            ),
            (
                Box::new(|r| r.memory = Some(1 << 30)),
                "memory or cpus limit changed",
            ),
            (
                Box::new(|r| r.cpus = Some("0.5".into())),
                "memory or cpus limit changed",
            ),
            (
                Box::new(|r| {
                    r.deps.insert("gen".into(), "h2".into());
                }),
                "output of dependency gen changed",
            ),
        ];
        for (change, why) in cases {
            let mut r = base.clone();
            change(&mut r);
            let reasons = r.explain_against(&base);
            assert!(
                reasons.iter().any(|x| x.contains(why)),
                "{reasons:?} should say {why}"
            );
        }
        assert!(base.explain_against(&base).is_empty());
    }

    #[test]
    fn env_values_never_appear_in_the_recipe() {
        let r = recipe();
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("linux"));
    }
}
