//! One cache entry's outputs as a zstd-compressed tar of project-relative paths, and its restore,
//! which checks every file against the recorded manifest before the caller places anything.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::fingerprint::Manifest;

/// Writes the files of `manifest` from `staging` as a tar.zst into `out`.
pub fn write(staging: &Path, manifest: &Manifest, out: impl Write) -> std::io::Result<()> {
    let mut enc = zstd::Encoder::new(out, 3)?;
    {
        let mut b = tar::Builder::new(&mut enc);
        for (rel, d) in manifest {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            match &d.link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, rel, target)?;
                }
                None => {
                    let f = std::fs::File::open(staging.join(rel))?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(if d.executable { 0o755 } else { 0o644 });
                    h.set_size(d.size);
                    b.append_data(&mut h, rel, f.take(d.size))?;
                }
            }
        }
        b.finish()?;
    }
    enc.finish()?.flush()
}

/// Extracts an archive into `staging`, refusing anything not in `manifest` and any file whose
/// SHA-256, size or mode differs; every manifest file must be there. The error says what is wrong.
pub fn restore(archive: impl Read, manifest: &Manifest, staging: &Path) -> Result<(), String> {
    let dec = zstd::Decoder::new(archive).map_err(|e| format!("cannot decompress: {e}"))?;
    let mut ar = tar::Archive::new(dec);
    let mut seen = std::collections::BTreeSet::new();
    for entry in ar.entries().map_err(|e| format!("cannot read: {e}"))? {
        // A stopped build does not finish a restore: the caller throws the staging away.
        if crate::interrupt::requested() {
            return Err("was not restored: the build was interrupted".into());
        }
        let mut entry = entry.map_err(|e| format!("cannot read an entry: {e}"))?;
        let rel = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(want) = manifest.get(&rel) else {
            return Err(format!("holds `{rel}`, which the manifest does not list"));
        };
        if !seen.insert(rel.clone()) {
            return Err(format!("holds `{rel}` twice"));
        }
        // The manifest's paths were checked when the entry was saved; stay inside staging anyway.
        if rel.starts_with('/') || rel.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(format!("holds an unsafe path `{rel}`"));
        }
        let dest = staging.join(&rel);
        std::fs::create_dir_all(dest.parent().expect("inside staging"))
            .map_err(|e| e.to_string())?;
        match (&want.link, entry.header().entry_type()) {
            (Some(target), tar::EntryType::Symlink) => {
                let got = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.to_string_lossy().into_owned());
                if got.as_deref() != Some(target.as_str()) {
                    return Err(format!("`{rel}` links elsewhere than recorded"));
                }
                std::os::unix::fs::symlink(target, &dest).map_err(|e| e.to_string())?;
            }
            (None, tar::EntryType::Regular) => {
                let mut f = std::fs::File::create(&dest).map_err(|e| e.to_string())?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 128 * 1024];
                let mut size = 0u64;
                loop {
                    let n = entry
                        .read(&mut buf)
                        .map_err(|e| format!("`{rel}` cannot be read: {e}"))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    f.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                    size += n as u64;
                }
                if size != want.size || hex::encode(h.finalize()) != want.sha256 {
                    return Err(format!("`{rel}` does not match its recorded SHA-256"));
                }
                let mode = if want.executable { 0o755 } else { 0o644 };
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| e.to_string())?;
            }
            (_, kind) => return Err(format!("`{rel}` is a {kind:?}, not what was recorded")),
        }
    }
    if let Some(missing) = manifest.keys().find(|k| !seen.contains(*k)) {
        return Err(format!("lacks `{missing}`"));
    }
    Ok(())
}
