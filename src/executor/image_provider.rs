//! Making a toolchain's pinned image available: present locally, else pulled, else built from its
//! Dockerfile; resolved to the image ID that enters task keys.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures_util::StreamExt;

use super::DockerEngine;
use crate::config::Toolchain;
use crate::error::{Error, Result};

/// How long a pull may try before we fall back to building.
const PULL_TIMEOUT: Duration = Duration::from_secs(120);

/// How a toolchain image was made available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    Present,
    Pulled,
    Built(Duration),
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provenance::Present => write!(f, "present"),
            Provenance::Pulled => write!(f, "pulled"),
            Provenance::Built(d) => write!(f, "built in {}", crate::report::secs(*d)),
        }
    }
}

/// Resolves toolchain images on one engine.
pub struct ImageProvider<'a> {
    engine: &'a DockerEngine,
    root: &'a Path,
    /// Stream image build output (`-v`).
    verbose: bool,
}

impl<'a> ImageProvider<'a> {
    pub fn new(engine: &'a DockerEngine, root: &'a Path, verbose: bool) -> Self {
        ImageProvider {
            engine,
            root,
            verbose,
        }
    }

    /// The image ID of a reference present on the engine, or None.
    pub async fn lookup(&self, image: &str) -> Result<Option<String>> {
        match self.engine.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.engine.ensure_is_docker().await?;
                Ok(None)
            }
            Err(e) => Err(self.engine.err(format!("inspecting image {image}"))(e)),
        }
    }

    /// Present → use it; else pull; else build from the toolchain's Dockerfile; else fail naming
    /// the image and the three ways to provide it.
    pub async fn ensure(&self, tc: &Toolchain) -> Result<(String, Provenance)> {
        if let Some(id) = self.lookup(&tc.image).await? {
            return Ok((id, Provenance::Present));
        }
        let mut attempts = vec![format!(
            "  - not present on the engine at {}",
            self.engine.host()
        )];
        match self.pull(&tc.image).await {
            Ok(()) => {
                if let Some(id) = self.lookup(&tc.image).await? {
                    return Ok((id, Provenance::Pulled));
                }
            }
            Err(why) => attempts.push(format!("  - pull failed: {why}")),
        }
        match &tc.dockerfile {
            Some(dockerfile) => {
                eprintln!(
                    "toolchain {}: building {} from {}",
                    tc.name,
                    tc.image,
                    dockerfile.display()
                );
                let started = Instant::now();
                match self.build(tc, dockerfile).await {
                    Ok(()) => {
                        if let Some(id) = self.lookup(&tc.image).await? {
                            return Ok((id, Provenance::Built(started.elapsed())));
                        }
                        attempts.push("  - the build finished but the image is not there".into());
                    }
                    Err(why) => attempts.push(format!(
                        "  - build from {} failed: {why}",
                        dockerfile.display()
                    )),
                }
            }
            None => attempts.push("  - no `dockerfile` is configured to build it from".into()),
        }
        Err(Error::ImageUnavailable {
            toolchain: tc.name.clone(),
            image: tc.image.clone(),
            why: match tc.why.contains(" in go.mod") {
                true => format!(" ({})", tc.why),
                false => String::new(),
            },
            script: make_command(&tc.image),
            attempts: attempts.join("\n"),
        })
    }

    async fn pull(&self, image: &str) -> std::result::Result<(), String> {
        let (repo, tag) = split_tag(image);
        let opts = CreateImageOptionsBuilder::new()
            .from_image(repo)
            .tag(tag)
            .build();
        let pull = async {
            let mut stream = self.engine.docker.create_image(Some(opts), None, None);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        if let Some(e) = info.error_detail.and_then(|d| d.message) {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(first_line(&e.to_string())),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(PULL_TIMEOUT, pull).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer from the registry within {}s",
                PULL_TIMEOUT.as_secs()
            )),
        }
    }

    async fn build(&self, tc: &Toolchain, dockerfile: &Path) -> std::result::Result<(), String> {
        let dockerfile = self.root.join(dockerfile);
        let context = self.root.join(
            tc.context
                .as_deref()
                .unwrap_or_else(|| dockerfile.parent().expect("a file")),
        );
        let (ctx_c, df_c) = (context.clone(), dockerfile.clone());
        let (tar, df_name) = tokio::task::spawn_blocking(move || context_tar(&ctx_c, &df_c))
            .await
            .expect("context tar panicked")
            .map_err(|e| format!("cannot pack the build context {}: {e}", context.display()))?;
        let mut labels = std::collections::HashMap::new();
        labels.insert("dev.flamenco-build.toolchain".to_string(), tc.name.clone());
        let args: std::collections::HashMap<String, String> =
            tc.build_args.clone().into_iter().collect();
        let opts = BuildImageOptionsBuilder::new()
            .dockerfile(&df_name)
            .t(&tc.image)
            .rm(true)
            .forcerm(true)
            .networkmode("host")
            .buildargs(&args)
            .labels(&labels)
            .build();
        let mut stream =
            self.engine
                .docker
                .build_image(opts, None, Some(bollard::body_full(tar.into())));
        let mut last = std::collections::VecDeque::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                        return Err(format!("{msg}\n{}", Vec::from(last).join("\n")));
                    }
                    if let Some(s) = info.stream {
                        for line in s.lines().filter(|l| !l.trim().is_empty()) {
                            if self.verbose {
                                eprintln!("{}| {line}", tc.name);
                            }
                            if last.len() == 20 {
                                last.pop_front();
                            }
                            last.push_back(format!("    {line}"));
                        }
                    }
                }
                Err(e) => {
                    return Err(format!(
                        "{}\n{}",
                        first_line(&e.to_string()),
                        Vec::from(last).join("\n")
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `repo:tag` → (`repo`, `tag`), minding registry ports (`host:5000/x`).
fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// The build context as a tar, with the Dockerfile added when it lies outside the context.
fn context_tar(context: &Path, dockerfile: &Path) -> std::io::Result<(Vec<u8>, String)> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", context)?;
    let context = context.canonicalize()?;
    let dockerfile = dockerfile.canonicalize()?;
    let name = match dockerfile.strip_prefix(&context) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => {
            let name = ".flamenco-build.Dockerfile".to_string();
            b.append_path_with_name(&dockerfile, &name)?;
            name
        }
    };
    Ok((b.into_inner()?, name))
}

/// How this repository makes an image: `scripts/toolchain-images.sh flamenco-build/go:1.26` for
/// one the script makes (it makes only the default set unless named), else the script's name.
fn make_command(image: &str) -> String {
    use crate::config::go_version::{NEWEST_MADE, OLDEST_MADE};
    let go = image
        .strip_prefix("flamenco-build/go:1.")
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| (OLDEST_MADE..=NEWEST_MADE).contains(&m));
    let others = [
        "flamenco-build/debian:bookworm",
        "flamenco-build/node:22",
        "flamenco-build/java:11",
    ];
    match go || others.contains(&image) {
        true => format!("scripts/toolchain-images.sh {image}"),
        false => "scripts/toolchain-images.sh".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_with_registry_ports() {
        assert_eq!(
            split_tag("flamenco-build/go:1.23"),
            ("flamenco-build/go", "1.23")
        );
        assert_eq!(
            split_tag("localhost:5000/go"),
            ("localhost:5000/go", "latest")
        );
        assert_eq!(split_tag("localhost:5000/go:1"), ("localhost:5000/go", "1"));
    }
}

#[cfg(test)]
mod make_command_tests {
    #[test]
    fn names_the_script_call_for_the_images_it_makes() {
        assert_eq!(
            super::make_command("flamenco-build/go:1.26"),
            "scripts/toolchain-images.sh flamenco-build/go:1.26"
        );
        assert_eq!(
            super::make_command("flamenco-build/go:1.30"),
            "scripts/toolchain-images.sh"
        );
        assert_eq!(
            super::make_command("flamenco-build/not-there:0.0"),
            "scripts/toolchain-images.sh"
        );
    }
}
