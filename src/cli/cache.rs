//! `cache-status`, `clean-cache`, `clean-all`.

use std::collections::BTreeSet;

use crate::cache::{LocalStore, Storage};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::executor::DockerEngine;
use crate::fingerprint::InputFiles;
use crate::human;
use crate::remote::{RemoteArgs, RemoteSettings};
use crate::workspace::paths;

/// The seed's "Build Cache Status" block, a line per task, the limits, and the remote tier.
pub async fn status(config: &Config, json: bool, remote: &RemoteArgs) -> Result<()> {
    let remote = remote_status(config, remote).await?;
    let s = &config.settings;
    let dir = config.cache_dir();
    let status = if let Some(cache) = LocalStore::existing(&dir)? {
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
        let mut v = serde_json::to_value(&status).expect("status serialises");
        v["remote"] = remote
            .as_ref()
            .map_or(serde_json::Value::Null, |r| r.to_json());
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("status serialises")
        );
        return Ok(());
    }
    println!("Build Cache Status:");
    println!("  Targets cached: {}", status.targets_cached);
    println!("  Cache size: {}", human::size_exact(status.bytes));
    println!("  Location: {}", status.dir.display());
    println!(
        "  Limits: {} max size, entries unused for {} dropped",
        human::size_exact(status.max_size),
        human::duration(s.cache_max_age)
    );
    for t in &status.tasks {
        let used = t
            .last_used
            .map(|u| {
                let ago = crate::cache::now().saturating_sub(u);
                format!(
                    "{} ago",
                    human::duration(std::time::Duration::from_secs(ago))
                )
            })
            .unwrap_or_else(|| "never".into());
        println!(
            "  {:<16} {} {:<8} {:>12}  last used {used}, time saved {:.1}s",
            t.task,
            t.entries,
            if t.entries == 1 { "entry" } else { "entries" },
            human::size(t.bytes),
            t.saved_ms as f64 / 1000.0
        );
    }
    if let Some(r) = remote {
        r.print();
    }
    Ok(())
}

/// What `cache-status` says of the remote tier: where (no credentials), whether it answers and
/// what it supports, and how this machine uses it.
struct RemoteStatus {
    server: String,
    instance: String,
    answer: std::result::Result<String, String>,
    took_ms: u128,
    upload: bool,
    signed: bool,
}

impl RemoteStatus {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "server": self.server,
            "instance": self.instance,
            "reachable": self.answer.is_ok(),
            "detail": match &self.answer { Ok(s) | Err(s) => s },
            "took_ms": self.took_ms as u64,
            "upload": self.upload,
            "signed": self.signed,
        })
    }

    fn print(&self) {
        println!("Remote cache:");
        println!("  Server: {}", self.server);
        if !self.instance.is_empty() {
            println!("  Instance: {}", self.instance);
        }
        match &self.answer {
            Ok(s) => println!("  Reachable: yes, in {} ms ({s})", self.took_ms),
            Err(e) => println!("  Reachable: no ({e})"),
        }
        let onoff = |b: bool| if b { "on" } else { "off" };
        println!(
            "  Uploads: {}; signing: {}",
            onoff(self.upload),
            onoff(self.signed)
        );
    }
}

async fn remote_status(config: &Config, args: &RemoteArgs) -> Result<Option<RemoteStatus>> {
    let Some(settings) =
        RemoteSettings::resolve(&config.remote, args).map_err(Error::RemoteSetting)?
    else {
        return Ok(None);
    };
    let t = std::time::Instant::now();
    let quiet: crate::remote::Warn = std::sync::Arc::new(|_| {});
    let answer = match crate::remote::open_cache(&settings, quiet) {
        Ok(tier) => tier.probe().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    Ok(Some(RemoteStatus {
        server: settings.shown(),
        instance: settings.instance.clone(),
        answer,
        took_ms: t.elapsed().as_millis(),
        upload: settings.upload,
        signed: settings.sign_key.is_some(),
    }))
}

/// Removes what the cache holds, only in a cache folder of ours and only our own entries.
pub fn clean_cache(config: &Config) -> Result<()> {
    let dir = config.cache_dir();
    let Some(cache) = LocalStore::existing(&dir)? else {
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
        human::size_exact(bytes),
        dir.display()
    );
    Ok(())
}

/// The cache, every task's outputs in the workspace (but files git tracks), and the cache
/// volume. Whatever could stop the volume's removal is checked before anything is removed.
pub async fn clean_all(config: &Config, labels: &[(String, String)]) -> Result<()> {
    let engine = DockerEngine::connect(&super::run_id(), labels).await?;
    let volume = &config.settings.cache_volume;
    let present = engine.check_volume_removable(volume).await?;
    let tracked = git_tracked(config)?;
    clean_cache(config)?;
    let (mut files, mut bytes, mut kept) = (0u64, 0u64, 0usize);
    for task in config.tasks.values() {
        for f in InputFiles::from_outputs(&config.root, &task.outputs)? {
            if tracked.contains(&f.rel) {
                kept += 1;
                continue;
            }
            bytes += std::fs::symlink_metadata(&f.abs)
                .map(|m| m.len())
                .unwrap_or(0);
            files += 1;
            // Never through a symbolic link in a folder of the output's path.
            paths::remove(&config.root, &f.rel)?;
        }
        for out in task.outputs.iter().filter(|o| !o.is_glob()) {
            let p = config.root.join(&out.path);
            let below = format!("{}/", out.path);
            if !p.is_dir() {
                continue;
            }
            if tracked.iter().any(|t| t.starts_with(&below)) {
                remove_empty_dirs(&p);
            } else {
                paths::remove(&config.root, &out.path)?;
            }
        }
    }
    let kept = match kept {
        0 => String::new(),
        n => format!("; kept {n} files git tracks"),
    };
    println!(
        "Outputs: removed {files} files, {} from the workspace{kept}",
        human::size_exact(bytes)
    );
    if present && engine.remove_volume(volume).await? {
        println!("Volume: removed {volume}");
    } else {
        println!("Volume: {volume} did not exist");
    }
    Ok(())
}

/// The project-relative paths git tracks below the outputs: `clean-all` never removes those.
/// Empty when git is not installed or the project is not in a repository.
fn git_tracked(config: &Config) -> Result<BTreeSet<String>> {
    let mut prefixes: Vec<String> = config
        .tasks
        .values()
        .flat_map(|t| t.outputs.iter().map(|o| o.prefix()))
        .map(|p| if p.is_empty() { ".".to_string() } else { p })
        .collect();
    prefixes.sort();
    prefixes.dedup();
    if prefixes.is_empty() {
        return Ok(BTreeSet::new());
    }
    let out = match std::process::Command::new("git")
        .arg("-C")
        .arg(&config.root)
        .args(["--literal-pathspecs", "ls-files", "-z", "--"])
        .env("LC_ALL", "C")
        .args(&prefixes)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(Error::io("cannot run git ls-files", &config.root)(e)),
    };
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if why.contains("not a git repository") {
            return Ok(BTreeSet::new());
        }
        // Not knowing what git tracks, remove nothing.
        return Err(Error::io(
            "cannot ask git which output files it tracks",
            &config.root,
        )(std::io::Error::other(why)));
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// Removes the folders below `dir` (and `dir`) that are empty once the untracked files are gone;
/// never follows a link.
fn remove_empty_dirs(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
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
    let Some(cache) = LocalStore::existing(&dir)? else {
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
