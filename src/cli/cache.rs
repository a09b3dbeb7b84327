//! `cache-status`, `clean-cache`, `clean-all`.

use crate::cache::{LocalCache, human_size};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::executor::DockerEngine;
use crate::fingerprint::InputFiles;

/// The seed's "Build Cache Status" block, a line per task, and the limits.
pub fn status(config: &Config, json: bool) -> Result<()> {
    let s = &config.settings;
    let dir = config.cache_dir();
    let status = if let Some(cache) = LocalCache::existing(&dir)? {
        cache.status(s.cache_max_size, s.cache_max_age)
    } else {
        crate::cache::CacheStatus {
            dir: dir.clone(),
            targets_cached: 0,
            bytes: 0,
            max_size: s.cache_max_size,
            max_age_secs: s.cache_max_age.as_secs(),
            tasks: Vec::new(),
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serialises")
        );
        return Ok(());
    }
    println!("Build Cache Status:");
    println!("  Targets cached: {}", status.targets_cached);
    println!("  Cache size: {}", human_size(status.bytes));
    println!("  Location: {}", status.dir.display());
    println!(
        "  Limits: {} max size, entries unused for {} dropped",
        human_size(status.max_size),
        humantime::format_duration(s.cache_max_age)
    );
    for t in &status.tasks {
        let used = t
            .last_used
            .map(|u| {
                let ago = crate::cache::now_secs().saturating_sub(u);
                format!(
                    "{} ago",
                    humantime::format_duration(std::time::Duration::from_secs(ago))
                )
            })
            .unwrap_or_else(|| "never".into());
        println!(
            "  {:<16} {} {:<8} {:>12}  last used {used}, time saved {:.1}s",
            t.task,
            t.entries,
            if t.entries == 1 { "entry" } else { "entries" },
            human_size(t.bytes).split(" (").next().unwrap_or_default(),
            t.saved_ms as f64 / 1000.0
        );
    }
    Ok(())
}

/// Removes what the cache holds, only in a cache folder of ours and only our own entries.
pub fn clean_cache(config: &Config) -> Result<()> {
    let dir = config.cache_dir();
    let Some(cache) = LocalCache::existing(&dir)? else {
        println!(
            "Cache: nothing to remove ({} {})",
            dir.display(),
            absent(&dir)
        );
        return Ok(());
    };
    let (files, bytes) = cache.clear()?;
    println!(
        "Cache: removed {files} files, {} from {}",
        human_size(bytes),
        dir.display()
    );
    Ok(())
}

/// The cache, every task's outputs in the workspace, and the cache volume.
pub async fn clean_all(config: &Config, labels: &[(String, String)]) -> Result<()> {
    clean_cache(config)?;
    let (mut files, mut bytes) = (0u64, 0u64);
    for task in config.tasks.values() {
        for f in InputFiles::from_outputs(&config.root, &task.outputs)? {
            bytes += std::fs::symlink_metadata(&f.abs)
                .map(|m| m.len())
                .unwrap_or(0);
            files += 1;
            std::fs::remove_file(&f.abs).map_err(Error::io("cannot remove output", &f.abs))?;
        }
        for out in task.outputs.iter().filter(|o| !o.is_glob()) {
            let p = config.root.join(&out.path);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(Error::io("cannot remove output", &p))?;
            }
        }
    }
    println!(
        "Outputs: removed {files} files, {} from the workspace",
        human_size(bytes)
    );
    let engine = DockerEngine::connect(&super::run_id(), labels).await?;
    let volume = &config.settings.cache_volume;
    if engine.remove_volume(volume).await? {
        println!("Volume: removed {volume}");
    } else {
        println!("Volume: {volume} did not exist");
    }
    Ok(())
}

/// Why there is no cache at `dir`.
fn absent(dir: &std::path::Path) -> &'static str {
    if dir.exists() {
        "is empty"
    } else {
        "does not exist"
    }
}

/// Re-hashes every entry; reports and evicts the bad ones. Fails when any was bad.
pub fn verify(config: &Config) -> Result<()> {
    let dir = config.cache_dir();
    let Some(cache) = LocalCache::existing(&dir)? else {
        println!("Cache: empty ({} {})", dir.display(), absent(&dir));
        return Ok(());
    };
    let (checked, bad) = cache.verify()?;
    for c in &bad {
        println!(
            "bad: {} (key {}): {}; evicted",
            c.task,
            c.key.short(),
            c.reason
        );
    }
    println!("Cache: verified {checked} entries, {} bad", bad.len());
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::CacheCorrupt { count: bad.len() })
    }
}
