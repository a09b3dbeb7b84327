//! The cache volume tasks mount at `/cache`: made (writable by any task user) before the first
//! container that needs it, and removed by `clean-all` only when it is ours and unused.

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveVolumeOptions};

use super::DockerEngine;
use super::engine::{LABEL_PID, LABEL_ROOT, LABEL_RUN};
use crate::error::{Error, Result};

/// Where tasks see the cache volume.
const CACHE_MOUNT: &str = "/cache";

impl DockerEngine {
    /// Makes sure the cache volume exists and any task user can write to it; true when it was
    /// created now.
    pub async fn ensure_volume(&self, name: &str, init_image: &str) -> Result<bool> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(false),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.err(format!("inspecting volume {name}"))(e)),
        }
        // The volume outlives the run: it carries no run or process.
        let mut labels = self.labels().clone();
        labels.remove(LABEL_RUN);
        labels.remove(LABEL_PID);
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(self.err(format!("creating volume {name}")))?;
        self.open_up_volume(name, init_image).await?;
        Ok(true)
    }

    /// A new volume belongs to root; tasks run as the invoking user, so it is opened up once
    /// (sticky, like /tmp) by a short container.
    async fn open_up_volume(&self, name: &str, init_image: &str) -> Result<()> {
        let body = ContainerCreateBody {
            image: Some(init_image.to_string()),
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("chmod 1777 {CACHE_MOUNT}"),
            ]),
            user: Some("0:0".into()),
            labels: Some(self.labels_for("init-cache-volume")),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![cache_mount(name)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.create_container(body).await?;
        let result = async {
            self.docker
                .start_container(&id, None)
                .await
                .map_err(self.err("starting the volume init container"))?;
            self.wait_container(&id).await
        }
        .await;
        self.remove_container(&id).await;
        match result? {
            0 => Ok(()),
            code => Err(Error::Docker {
                host: self.host().to_string(),
                context: format!("preparing volume {name}"),
                source: BollardError::DockerContainerWaitError {
                    error: "chmod failed".into(),
                    code,
                },
            }),
        }
    }

    /// Whether the volume `name` exists; an error when `clean-all` may not remove it: it was
    /// not created by flamenco-build (it lacks our label), or a container uses it.
    pub async fn check_volume_removable(&self, name: &str) -> Result<bool> {
        let volume = match self.docker.inspect_volume(name).await {
            Ok(v) => v,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.ensure_is_docker().await?;
                return Ok(false);
            }
            Err(e) => return Err(self.err(format!("inspecting volume {name}"))(e)),
        };
        if volume.labels.get(LABEL_ROOT).map(String::as_str) != Some("1") {
            return Err(Error::ForeignVolume {
                volume: name.to_string(),
            });
        }
        self.fail_if_in_use(name).await?;
        Ok(true)
    }

    /// An error naming the containers (running or not: the engine counts both) that use the
    /// volume `name`, if any do.
    async fn fail_if_in_use(&self, name: &str) -> Result<()> {
        let mut filters = std::collections::HashMap::new();
        filters.insert("volume".to_string(), vec![name.to_string()]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let users: Vec<String> = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(self.err(format!("listing the containers using volume {name}")))?
            .into_iter()
            .map(describe)
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(Error::VolumeInUse {
            volume: name.to_string(),
            users: users.join(", "),
        })
    }

    /// Removes a volume (`clean-all`); false when there was none.
    pub async fn remove_volume(&self, name: &str) -> Result<bool> {
        match self
            .docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            // A container started using it since the check: say which.
            Err(
                e @ BollardError::DockerResponseServerError {
                    status_code: 409, ..
                },
            ) => {
                self.fail_if_in_use(name).await?;
                Err(self.err(format!("removing volume {name}"))(e))
            }
            Err(e) => Err(self.err(format!("removing volume {name}"))(e)),
        }
    }
}

/// `container `name` (state, image …)`, for the volume-in-use error.
fn describe(c: bollard::models::ContainerSummary) -> String {
    let id = c.id.unwrap_or_default();
    let who = c
        .names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.chars().take(12).collect());
    let state = c.state.map(|s| s.to_string()).unwrap_or_default();
    format!(
        "container `{who}` ({state}, image {})",
        c.image.unwrap_or_default()
    )
}

/// The cache volume, mounted where tasks expect it.
pub(super) fn cache_mount(volume: &str) -> Mount {
    Mount {
        target: Some(CACHE_MOUNT.into()),
        source: Some(volume.to_string()),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    }
}
