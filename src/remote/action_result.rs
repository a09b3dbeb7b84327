//! A cache record as a REAPI `ActionResult`, and back. Files and symlinks are REAPI's own
//! `output_files` (with their mode as a node property) and `output_symlinks`; what REAPI has no
//! field for (folders with their modes, the image ID, the run time) rides in one
//! `auxiliary_metadata` entry. With a sign key, an HMAC-SHA256 over the key and the encoded
//! result rides in another, so a reader holding the key can tell an entry a trusted writer made.

use std::collections::BTreeMap;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::protobuf::{Any, UInt32Value};
use hmac::{Hmac, Mac};
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::output_tree::{Trees, expand_all};
use crate::cache::ActionRecord;
use crate::cache::is_sha256;
use crate::fingerprint::{FileDigest, Manifest, TaskKey, output_mode};

const RECORD_TYPE: &str = "type.googleapis.com/flamenco_build.v1.Record";
const SIGNATURE_TYPE: &str = "type.googleapis.com/flamenco_build.v1.HmacSha256";

/// What REAPI's `ActionResult` has no field for.
#[derive(Debug, Serialize, Deserialize)]
struct Extras {
    image_id: String,
    run_ms: u64,
    /// Output folders (empty ones too) and their modes.
    folders: BTreeMap<String, u32>,
}

/// The `ActionResult` of a record, signed when `sign_key` is given.
pub(crate) fn to_action_result(
    record: &ActionRecord,
    key: &TaskKey,
    worker: &str,
    sign_key: Option<&[u8]>,
) -> re::ActionResult {
    let mut result = re::ActionResult::default();
    let mut folders = BTreeMap::new();
    for (path, d) in &record.outputs {
        if d.dir {
            folders.insert(path.clone(), d.mode.unwrap_or(0o755));
        } else if let Some(target) = &d.link {
            result.output_symlinks.push(re::OutputSymlink {
                path: path.clone(),
                target: target.clone(),
                node_properties: None,
            });
        } else {
            result.output_files.push(output_file(path, d));
        }
    }
    let extras = Extras {
        image_id: record.image_id.clone(),
        run_ms: record.run_ms,
        folders,
    };
    result.execution_metadata = Some(re::ExecutedActionMetadata {
        worker: worker.to_string(),
        auxiliary_metadata: vec![Any {
            type_url: RECORD_TYPE.into(),
            value: serde_json::to_vec(&extras).expect("extras serialise"),
        }],
        ..Default::default()
    });
    if let Some(k) = sign_key {
        let mac = signature(k, key, &result.encode_to_vec());
        aux(&mut result).push(Any {
            type_url: SIGNATURE_TYPE.into(),
            value: mac,
        });
    }
    result
}

fn output_file(path: &str, d: &FileDigest) -> re::OutputFile {
    re::OutputFile {
        path: path.to_string(),
        digest: Some(re::Digest {
            hash: d.sha256.clone(),
            size_bytes: d.size as i64,
        }),
        is_executable: d.executable,
        contents: Vec::new(),
        node_properties: d.mode.map(|m| re::NodeProperties {
            unix_mode: Some(UInt32Value { value: m }),
            ..Default::default()
        }),
    }
}

fn aux(result: &mut re::ActionResult) -> &mut Vec<Any> {
    &mut result
        .execution_metadata
        .get_or_insert_with(Default::default)
        .auxiliary_metadata
}

fn signature(sign_key: &[u8], key: &TaskKey, encoded: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(sign_key).expect("HMAC takes any key length");
    mac.update(format!("{}/{}\0", key.hash, key.size).as_bytes());
    mac.update(encoded);
    mac.finalize().into_bytes().to_vec()
}

/// The record an `ActionResult` holds, checked: signed when a sign key is set, a success, every
/// digest well formed, output folders given as trees expanded from `trees` (fetched first, see
/// [`tree_blobs`](super::output_tree::tree_blobs)). Paths are checked later, with the
/// workspace's rules.
// `output_file_symlinks` is deprecated in v2.1, but servers and workers of v2.0 still fill it.
#[allow(deprecated)]
pub(crate) fn from_action_result(
    mut result: re::ActionResult,
    key: &TaskKey,
    sign_key: Option<&[u8]>,
    trees: &Trees,
) -> Result<ActionRecord, String> {
    if let Some(k) = sign_key {
        verify(&mut result, k, key)?;
    }
    if result.exit_code != 0 {
        return Err(format!(
            "the result is a failure (exit code {})",
            result.exit_code
        ));
    }
    let extras = extras(&result)?;
    let mut outputs = Manifest::new();
    for f in &result.output_files {
        let entry = file_entry(
            f.digest.as_ref(),
            f.is_executable,
            &f.node_properties,
            &f.path,
        )?;
        outputs.insert(f.path.clone(), entry);
    }
    expand_all(&result, trees, &mut outputs)?;
    for l in result
        .output_symlinks
        .iter()
        .chain(&result.output_file_symlinks)
    {
        outputs.insert(l.path.clone(), link_digest(&l.target));
    }
    for (path, mode) in extras.folders {
        outputs.insert(path, FileDigest::folder(mode));
    }
    Ok(ActionRecord {
        outputs,
        image_id: extras.image_id,
        run_ms: extras.run_ms,
    })
}

fn verify(result: &mut re::ActionResult, sign_key: &[u8], key: &TaskKey) -> Result<(), String> {
    let aux = aux(result);
    let Some(i) = aux.iter().position(|a| a.type_url == SIGNATURE_TYPE) else {
        return Err("the result is not signed".into());
    };
    let mac = aux.remove(i).value;
    let mut check = Hmac::<Sha256>::new_from_slice(sign_key).expect("HMAC takes any key length");
    check.update(format!("{}/{}\0", key.hash, key.size).as_bytes());
    check.update(&result.encode_to_vec());
    check
        .verify_slice(&mac)
        .map_err(|_| "the result's signature is not valid".to_string())
}

fn extras(result: &re::ActionResult) -> Result<Extras, String> {
    let any = result.execution_metadata.as_ref().and_then(|m| {
        m.auxiliary_metadata
            .iter()
            .find(|a| a.type_url == RECORD_TYPE)
    });
    match any {
        Some(a) => serde_json::from_slice(&a.value)
            .map_err(|e| format!("the result's flamenco-build record is malformed: {e}")),
        // A result another tool wrote: no folders, no image recorded.
        None => Ok(Extras {
            image_id: String::new(),
            run_ms: 0,
            folders: BTreeMap::new(),
        }),
    }
}

/// A file of a result (an `OutputFile`, or a `FileNode` of a tree) as a record entry; `what`
/// names it in errors.
pub(super) fn file_entry(
    digest: Option<&re::Digest>,
    executable: bool,
    properties: &Option<re::NodeProperties>,
    what: &str,
) -> Result<FileDigest, String> {
    let d = digest.ok_or_else(|| format!("`{what}` has no digest"))?;
    if !is_sha256(&d.hash) || d.size_bytes < 0 {
        return Err(format!("`{what}` has a malformed digest"));
    }
    let mode = properties
        .as_ref()
        .and_then(|p| p.unix_mode.as_ref())
        .map(|m| m.value)
        .unwrap_or(if executable { 0o755 } else { 0o644 });
    Ok(FileDigest {
        sha256: d.hash.clone(),
        size: d.size_bytes as u64,
        executable,
        link: None,
        mode: Some(output_mode(mode, false)),
        dir: false,
    })
}

pub(super) fn link_digest(target: &str) -> FileDigest {
    FileDigest {
        sha256: crate::fingerprint::hash_bytes(target.as_bytes()),
        size: 0,
        executable: false,
        link: Some(target.to_string()),
        mode: None,
        dir: false,
    }
}

/// Encodes a result for a store that keeps bytes (HTTP, object and key-value stores).
pub(crate) fn encode(result: &re::ActionResult) -> Vec<u8> {
    result.encode_to_vec()
}

/// Decodes stored bytes; malformed bytes are a bad answer, never a panic.
pub(crate) fn decode(bytes: &[u8]) -> Result<re::ActionResult, String> {
    re::ActionResult::decode(bytes).map_err(|e| format!("the action result is malformed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ActionRecord {
        let mut outputs = Manifest::new();
        outputs.insert("o".into(), FileDigest::folder(0o750));
        outputs.insert(
            "o/a".into(),
            FileDigest {
                sha256: "ab".repeat(32),
                size: 3,
                executable: true,
                link: None,
                mode: Some(0o755),
                dir: false,
            },
        );
        outputs.insert("o/l".into(), link_digest("a"));
        ActionRecord {
            outputs,
            image_id: "sha256:1".into(),
            run_ms: 42,
        }
    }

    fn key() -> TaskKey {
        TaskKey::new("cd".repeat(32), 140)
    }

    fn none() -> Trees {
        Trees::new()
    }

    #[test]
    fn a_record_survives_the_round_trip() {
        let r = record();
        let bytes = encode(&to_action_result(&r, &key(), "", None));
        let back =
            from_action_result(decode(&bytes).unwrap(), &key(), None, &Trees::new()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_signed_result_checks_and_a_tampered_or_moved_one_does_not() {
        let r = record();
        let signed = to_action_result(&r, &key(), "", Some(b"secret"));
        assert_eq!(
            from_action_result(signed.clone(), &key(), Some(b"secret"), &none()).unwrap(),
            r
        );
        let unsigned = to_action_result(&r, &key(), "", None);
        let err = from_action_result(unsigned, &key(), Some(b"secret"), &none()).unwrap_err();
        assert!(err.contains("not signed"), "{err}");
        let other_key = TaskKey::new("ef".repeat(32), 140);
        let err =
            from_action_result(signed.clone(), &other_key, Some(b"secret"), &none()).unwrap_err();
        assert!(err.contains("not valid"), "{err}");
        let mut tampered = signed;
        tampered.output_files[0].digest.as_mut().unwrap().hash = "00".repeat(32);
        assert!(from_action_result(tampered, &key(), Some(b"secret"), &none()).is_err());
    }

    #[test]
    fn a_foreign_result_with_a_tree_reads_as_one_record() {
        use crate::fingerprint::action::digest_of;
        let dir = re::Directory {
            files: vec![re::FileNode {
                name: "b".into(),
                digest: Some(digest_of(b"bb")),
                ..Default::default()
            }],
            ..Default::default()
        };
        let tree = re::Tree {
            root: Some(dir),
            children: vec![],
        }
        .encode_to_vec();
        let tree_digest = digest_of(&tree);
        let trees: Trees = [(tree_digest.hash.clone(), tree)].into();
        let mut result = re::ActionResult {
            output_files: vec![output_file("o/a", &record().outputs["o/a"])],
            output_directories: vec![re::OutputDirectory {
                path: "o/d".into(),
                tree_digest: Some(tree_digest),
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = from_action_result(result.clone(), &key(), None, &trees).unwrap();
        let paths: Vec<&str> = r.outputs.keys().map(String::as_str).collect();
        assert_eq!(paths, ["o/a", "o/d", "o/d/b"]);
        assert!(r.outputs["o/d"].dir && r.image_id.is_empty());
        result.output_directories[0].path = "o".into();
        result.output_files[0].path = "o/b".into();
        let err = from_action_result(result, &key(), None, &trees).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn garbage_and_bad_digests_are_refused() {
        assert!(decode(b"\xff\xff\xff").is_err());
        let mut r = to_action_result(&record(), &key(), "", None);
        r.output_files[0].digest.as_mut().unwrap().hash = "../../etc/passwd".into();
        assert!(from_action_result(r, &key(), None, &none()).is_err());
    }
}
