//! The local artifact cache under `.build-cache/`: one archive per saved key in
//! `artifacts/<task>/`, what was recorded in `metadata/<task>.meta.json`, a `CACHEDIR.TAG` and a
//! format version at the root. Writes are atomic (temp name, fsync, rename) under a file lock;
//! every restore re-checks each file's SHA-256.

mod archive;
mod local_cache;
mod metadata;

use std::io::Write;
use std::path::Path;

pub use local_cache::{CacheStatus, Corrupt, GcReport, LocalCache, TaskStatus, now as now_secs};
pub use metadata::{Entry, TaskMetadata};

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename, fsync of
/// the folder. A crash leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a file in a folder");
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable; a failure here only weakens durability, so it is not an error.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `47185920` → `45 MB (47,185,920 bytes)`, as the seed prints sizes (binary megabytes).
pub fn human_size(bytes: u64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    let short = if bytes >= 1024 * 1024 * 1024 {
        format!("{:.1} GB", mb / 1024.0)
    } else if mb >= 10.0 || bytes == 0 {
        format!("{mb:.0} MB")
    } else {
        format!("{mb:.1} MB")
    };
    format!("{short} ({} bytes)", thousands(bytes))
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_the_seed() {
        assert_eq!(super::human_size(47_185_920), "45 MB (47,185,920 bytes)");
        assert_eq!(super::human_size(0), "0 MB (0 bytes)");
        assert_eq!(super::human_size(1_572_864), "1.5 MB (1,572,864 bytes)");
    }
}
