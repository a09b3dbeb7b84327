//! `cache-status`, `clean-cache`, `clean-all`.

use crate::cache::{LocalStore, human_size};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::executor::DockerEngine;
use crate::workspace::paths;
use crate::fingerprint::InputFiles;

/// The seed's "Build Cache Status" block, a line per task, and the limits.
pub fn status(config: &Config, json: bool) -> Result<()> {
    let s = &config.settings;
    let dir = config.cache_dir();
    let status = if dir.join("VERSION").exists() {
        LocalStore::open(&dir)?.status(s.cache_max_size, s.cache_max_age)
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
                let ago = crate::cache::now().saturating_sub(u);
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

pub fn clean_cache(config: &Config) -> Result<()> {
    let dir = config.cache_dir();
    if !dir.exists() {
        println!(
            "Cache: nothing to remove ({} does not exist)",
            dir.display()
        );
        return Ok(());
    }
    let (files, bytes) = LocalStore::open(&dir)?.clear()?;
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
            // Never through a symbolic link in a folder of the output's path.
            paths::remove(&config.root, &f.rel)?;
        }
        for out in task.outputs.iter().filter(|o| !o.is_glob()) {
            if config.root.join(&out.path).is_dir() {
                paths::remove(&config.root, &out.path)?;
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

/// Re-hashes every entry; reports and evicts the bad ones. Fails when any was bad.
pub fn verify(config: &Config) -> Result<()> {
    let dir = config.cache_dir();
    if !dir.join("VERSION").exists() {
        println!("Cache: empty ({} does not exist)", dir.display());
        return Ok(());
    }
    let (checked, bad) = LocalStore::open(&dir)?.verify()?;
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
