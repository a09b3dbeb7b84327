//! A task as a REAPI `Action`: its `Command` (`sh -c RUN`, the env, the working folder, the
//! output paths, the platform), its input root (a Merkle tree of `Directory` messages over the
//! declared inputs and the dependencies' outputs) and the platform properties that pin where it
//! may run. The digest of that `Action` is the task key, so the local cache, every remote cache
//! and a remote executor share one action cache.

use std::collections::BTreeMap;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::protobuf::UInt32Value;
use prost::Message;
use sha2::{Digest as _, Sha256};

use super::digest::{FileDigest, Manifest};
use super::key::TaskKey;

/// Why the key's salt exists: a change of what the key covers (bump it) moves every task into a
/// new cache namespace, locally and on every server, without touching anyone else's entries.
/// v3: the memory and cpus limits are platform properties.
const SALT: &[u8] = b"flamenco-build key v3";

/// The platform property naming the toolchain image: `reference@image-id`.
pub const CONTAINER_IMAGE: &str = "container-image";

/// The platform property of a task's memory limit, in bytes.
pub const MEMORY: &str = "memory";

/// The platform property of a task's CPU limit (a decimal number of CPUs).
pub const CPUS: &str = "cpus";

/// What the `Action` of a task is made of, in our terms.
#[derive(Debug, Clone)]
pub struct ActionSpec<'a> {
    pub run: &'a str,
    pub workdir: &'a str,
    pub outputs: &'a [String],
    /// The run environment: the toolchain's variables, then the declared ones (they win).
    pub env: BTreeMap<String, String>,
    /// The toolchain image's reference and ID.
    pub image: &'a str,
    pub image_id: &'a str,
    pub network: bool,
    /// The task's limits: bytes of memory, CPUs (a fraction may be asked for).
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    /// Every file of the input root by project-relative path: declared inputs and the
    /// dependencies' outputs.
    pub inputs: &'a Manifest,
}

/// A task's `Action` and every message it names, encoded, with their digests.
#[derive(Debug, Clone)]
pub struct TaskAction {
    pub action: re::Action,
    pub digest: re::Digest,
    pub command: re::Command,
    /// Every `Directory` of the input root, the root first, encoded; each is a CAS blob.
    pub directories: Vec<(re::Digest, Vec<u8>)>,
}

impl TaskAction {
    pub fn key(&self) -> TaskKey {
        TaskKey::new(self.digest.hash.clone(), self.digest.size_bytes as u64)
    }
}

/// A blob's REAPI digest.
pub fn digest_of(bytes: &[u8]) -> re::Digest {
    re::Digest {
        hash: hex::encode(Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

/// Builds the `Action` of a task. Deterministic: REAPI's own canonical rules (names sorted,
/// env sorted by name, properties sorted), and prost encodes fields in tag order. The platform
/// is in the `Command` too (deprecated there since v2.2): servers older than 2.2 read it there.
#[allow(deprecated)]
pub fn task_action(spec: &ActionSpec) -> TaskAction {
    let platform = platform(spec);
    let command = re::Command {
        arguments: vec!["sh".into(), "-c".into(), spec.run.to_string()],
        environment_variables: spec
            .env
            .iter()
            .map(|(name, value)| re::command::EnvironmentVariable {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        output_paths: sorted(spec.outputs),
        working_directory: match spec.workdir {
            "." | "" => String::new(),
            w => w.trim_end_matches('/').to_string(),
        },
        platform: Some(platform.clone()),
        ..Default::default()
    };
    let directories = input_tree(spec.inputs);
    let action = re::Action {
        command_digest: Some(digest_of(&command.encode_to_vec())),
        input_root_digest: Some(directories[0].0.clone()),
        salt: SALT.to_vec(),
        platform: Some(platform),
        ..Default::default()
    };
    TaskAction {
        digest: digest_of(&action.encode_to_vec()),
        action,
        command,
        directories,
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn platform(spec: &ActionSpec) -> re::Platform {
    let property = |name: &str, value: String| re::platform::Property {
        name: name.into(),
        value,
    };
    let mut properties = vec![
        property("OSFamily", "linux".into()),
        property(CONTAINER_IMAGE, format!("{}@{}", spec.image, spec.image_id)),
        property(
            "network",
            if spec.network { "bridge" } else { "none" }.into(),
        ),
    ];
    // Named only when set: an engine that has not registered them still takes tasks without
    // limits. `{}` of an f64 is its shortest exact form ("0.5", "2"), so equal limits are equal text.
    if let Some(m) = spec.memory {
        properties.push(property(MEMORY, m.to_string()));
    }
    if let Some(c) = spec.cpus {
        properties.push(property(CPUS, c.to_string()));
    }
    // Sorted by name (byte order, as REAPI requires: `OSFamily` before the lower-case names).
    properties.sort_by(|a, b| a.name.cmp(&b.name));
    re::Platform { properties }
}

/// One folder of the input root while it is being built.
#[derive(Default)]
struct Folder {
    files: Vec<re::FileNode>,
    symlinks: Vec<re::SymlinkNode>,
    subfolders: BTreeMap<String, Option<u32>>,
    mode: Option<u32>,
}

fn properties(mode: Option<u32>) -> Option<re::NodeProperties> {
    mode.map(|m| re::NodeProperties {
        unix_mode: Some(UInt32Value { value: m }),
        ..Default::default()
    })
}

/// The input root as `Directory` messages, the root first. Folders are built leaf first so
/// each parent can name its children's digests.
fn input_tree(inputs: &Manifest) -> Vec<(re::Digest, Vec<u8>)> {
    let mut folders: BTreeMap<String, Folder> = BTreeMap::new();
    folders.insert(String::new(), Folder::default());
    for (path, d) in inputs {
        let (parent, name) = split(path);
        add_parents(&mut folders, parent);
        let folder = folders.get_mut(parent).expect("parents were added");
        if d.dir {
            folder.subfolders.entry(name.to_string()).or_default();
            folders.entry(path.clone()).or_default().mode = d.mode;
        } else if let Some(target) = &d.link {
            folder.symlinks.push(re::SymlinkNode {
                name: name.into(),
                target: target.clone(),
                node_properties: None,
            });
        } else {
            folder.files.push(file_node(name, d));
        }
    }
    encode_folders(folders)
}

fn file_node(name: &str, d: &FileDigest) -> re::FileNode {
    re::FileNode {
        name: name.into(),
        digest: Some(re::Digest {
            hash: d.sha256.clone(),
            size_bytes: d.size as i64,
        }),
        is_executable: d.executable,
        node_properties: properties(d.mode),
    }
}

/// Makes sure `dir` and every folder above it exist, each named by its parent.
fn add_parents(folders: &mut BTreeMap<String, Folder>, dir: &str) {
    let mut dir = dir;
    while !dir.is_empty() {
        folders.entry(dir.to_string()).or_default();
        let (parent, name) = split(dir);
        let above = folders.entry(parent.to_string()).or_default();
        if above.subfolders.contains_key(name) {
            // Named before, so every folder above it was too.
            break;
        }
        above.subfolders.insert(name.to_string(), None);
        dir = parent;
    }
}

fn encode_folders(mut folders: BTreeMap<String, Folder>) -> Vec<(re::Digest, Vec<u8>)> {
    let mut digests: BTreeMap<String, re::Digest> = BTreeMap::new();
    let mut blobs = Vec::new();
    // Deepest first: a child's path sorts after its parent's, so walk the paths in reverse.
    let paths: Vec<String> = folders.keys().rev().cloned().collect();
    for path in paths {
        let mut f = folders.remove(&path).expect("listed");
        f.files.sort_by(|a, b| a.name.cmp(&b.name));
        f.symlinks.sort_by(|a, b| a.name.cmp(&b.name));
        let directories = f
            .subfolders
            .keys()
            .map(|name| re::DirectoryNode {
                name: name.clone(),
                digest: digests.remove(&join(&path, name)),
            })
            .collect();
        let dir = re::Directory {
            files: f.files,
            directories,
            symlinks: f.symlinks,
            node_properties: properties(f.mode),
        };
        let bytes = dir.encode_to_vec();
        let digest = digest_of(&bytes);
        digests.insert(path.clone(), digest.clone());
        blobs.push((digest, bytes));
    }
    blobs.reverse();
    blobs
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// `parent/name`, or `name` at the root ("").
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: &str) -> FileDigest {
        FileDigest {
            sha256: sha.into(),
            size: 1,
            executable: false,
            link: None,
            mode: None,
            dir: false,
        }
    }

    fn spec(inputs: &Manifest) -> ActionSpec<'_> {
        ActionSpec {
            run: "go build",
            workdir: ".",
            outputs: &[],
            env: BTreeMap::new(),
            image: "go:1.23",
            image_id: "sha256:1",
            network: false,
            memory: None,
            cpus: None,
            inputs,
        }
    }

    #[test]
    fn the_root_names_nested_folders_by_digest() {
        let mut m = Manifest::new();
        m.insert("a/b/c.go".into(), file("11"));
        m.insert("a/d.go".into(), file("22"));
        m.insert("top".into(), file("33"));
        let a = task_action(&spec(&m));
        assert_eq!(a.directories.len(), 3, "root, a, a/b");
        let root = re::Directory::decode(a.directories[0].1.as_slice()).unwrap();
        assert_eq!(root.files[0].name, "top");
        assert_eq!(root.directories[0].name, "a");
        let a_digest = root.directories[0].digest.clone().unwrap();
        let (_, a_bytes) = a.directories.iter().find(|(d, _)| *d == a_digest).unwrap();
        let a_dir = re::Directory::decode(a_bytes.as_slice()).unwrap();
        assert_eq!(a_dir.files[0].name, "d.go");
        assert_eq!(a_dir.directories[0].name, "b");
    }

    #[test]
    fn the_key_follows_every_part_and_nothing_else() {
        let mut m = Manifest::new();
        m.insert("x".into(), file("11"));
        let base = task_action(&spec(&m)).key();
        assert_eq!(task_action(&spec(&m)).key(), base, "deterministic");
        let mut other = m.clone();
        other.insert("y".into(), file("22"));
        assert_ne!(task_action(&spec(&other)).key(), base);
        let mut s = spec(&m);
        s.env.insert("GOOS".into(), "linux".into());
        assert_ne!(task_action(&s).key(), base);
        let mut s = spec(&m);
        s.network = true;
        assert_ne!(task_action(&s).key(), base);
        let mut s = spec(&m);
        s.image_id = "sha256:2";
        assert_ne!(task_action(&s).key(), base);
        let mut s = spec(&m);
        s.memory = Some(512 << 20);
        let with_memory = task_action(&s).key();
        assert_ne!(with_memory, base);
        s.memory = Some(256 << 20);
        assert_ne!(
            task_action(&s).key(),
            with_memory,
            "another limit, another key"
        );
        let mut s = spec(&m);
        s.cpus = Some(0.5);
        let half = task_action(&s).key();
        assert_ne!(half, base);
        s.cpus = Some(1.0);
        assert_ne!(task_action(&s).key(), half);
    }

    #[test]
    fn the_limits_are_platform_properties_sorted_in_action_and_command() {
        let m = Manifest::new();
        let mut s = spec(&m);
        s.memory = Some(268_435_456);
        s.cpus = Some(0.5);
        let a = task_action(&s);
        let names = |p: &re::Platform| -> Vec<(String, String)> {
            p.properties
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect()
        };
        let platform = names(a.action.platform.as_ref().unwrap());
        let want: Vec<(String, String)> = [
            ("OSFamily", "linux"),
            ("container-image", "go:1.23@sha256:1"),
            ("cpus", "0.5"),
            ("memory", "268435456"),
            ("network", "none"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(platform, want);
        #[allow(deprecated)]
        let in_command = names(a.command.platform.as_ref().unwrap());
        assert_eq!(in_command, want, "older servers read the Command's");
        s.cpus = Some(2.0);
        let a = task_action(&s);
        let cpus = a.action.platform.unwrap().properties[2].value.clone();
        assert_eq!(cpus, "2");
        let none = task_action(&spec(&m));
        let names: Vec<String> = none
            .action
            .platform
            .unwrap()
            .properties
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            ["OSFamily", "container-image", "network"],
            "no limits, no properties"
        );
    }
}
