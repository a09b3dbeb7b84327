//! Removing containers: one task's when it ends, this run's after a failure or Ctrl-C, and those
//! of earlier runs that crashed before they could clean up ([`Reaper`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use super::DockerEngine;
use super::engine::{LABEL_HOST, LABEL_PID, LABEL_RUN, hostname};
use crate::error::Result;
use crate::executor::{RunEntry, RunRegistry};

/// Cleans up after runs that crashed (SIGKILL, a power cut) before removing their containers.
/// Two records of a run exist, and each catches what the other cannot:
/// - the run registry (a file per run in the project's cache folder, holding its process and
///   host) is read without any engine call, so it runs before every build, even one that runs
///   nothing, at no cost when nothing crashed; but it knows only this project's runs, is gone with
///   the cache folder (`clean-cache`), and a run that ended normally while its engine was away
///   removed its file without having removed its containers;
/// - the pid/host labels on every container find every crashed run of this host, whatever its
///   project or cache folder, but finding them costs a container listing, so that is done only
///   once a run is about to create a container anyway.
#[derive(Clone)]
pub(crate) struct Reaper {
    engine: DockerEngine,
    registry: RunRegistry,
}

impl Reaper {
    pub(crate) fn new(engine: &DockerEngine, registry: RunRegistry) -> Reaper {
        Reaper {
            engine: engine.clone(),
            registry,
        }
    }

    /// Before the run: removes the containers of this project's crashed runs (by the registry)
    /// and records this run, until the returned entry is dropped. The label sweep follows before
    /// the run's first container ([`Reaper::reap_before_first_container`]).
    pub(crate) async fn reap_before_run(&self) -> Result<RunEntry> {
        for stale in self.registry.stale() {
            let n = self.engine.remove_containers_of_run(&stale).await?;
            if n > 0 {
                eprintln!("removed {n} container(s) left by run {stale}, which did not finish");
            }
            self.registry.forget(&stale);
        }
        self.registry.register(self.engine.run_id())
    }

    /// Before the run's first container: removes every container of this host whose run's
    /// process is gone.
    pub(crate) async fn reap_before_first_container(&self) -> Result<()> {
        let reaped = self.engine.reap_dead_runs().await?;
        if reaped > 0 {
            eprintln!("removed {reaped} container(s) left by an earlier run that did not finish");
        }
        Ok(())
    }
}

impl DockerEngine {
    /// Every container (running or not) matching a label filter (`key` or `key=value`).
    async fn containers_labelled(&self, label: &str) -> Result<Vec<ContainerSummary>> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![label.to_string()]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        match self.docker.list_containers(Some(opts)).await {
            Ok(list) => Ok(list),
            // A Docker engine always has a container list: another server answered.
            Err(
                e @ BollardError::DockerResponseServerError {
                    status_code: 404, ..
                },
            ) => {
                self.ensure_is_docker().await?;
                Err(self.err("listing containers")(e))
            }
            Err(e) => Err(self.err("listing containers")(e)),
        }
    }

    /// Removes the containers left by other runs of this host whose process is gone; returns how
    /// many. A container whose pid label is missing or garbled counts as a dead run's.
    async fn reap_dead_runs(&self) -> Result<usize> {
        let me = hostname();
        let mut reaped = 0;
        for c in self.containers_labelled(LABEL_RUN).await? {
            let labels = c.labels.unwrap_or_default();
            if labels.get(LABEL_RUN).map(String::as_str) == Some(self.run_id())
                || labels.get(LABEL_HOST) != Some(&me)
            {
                continue;
            }
            let alive = labels
                .get(LABEL_PID)
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(process_alive);
            if let (false, Some(id)) = (alive, c.id) {
                tracing::info!(container = %id, run = ?labels.get(LABEL_RUN), "removing a container left by a crashed run");
                self.remove_container(&id).await;
                reaped += 1;
            }
        }
        Ok(reaped)
    }

    /// Removes the containers of a run that died without cleaning up; returns how many.
    async fn remove_containers_of_run(&self, run_id: &str) -> Result<usize> {
        let list = self
            .containers_labelled(&format!("{LABEL_RUN}={run_id}"))
            .await?;
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        futures_util::future::join_all(ids.iter().map(|id| self.remove_container(id))).await;
        Ok(ids.len())
    }

    /// Removes every container of this run (after Ctrl-C, or as a last sweep); returns how many.
    /// Best effort: an engine that does not answer leaves only the ones this run knows of.
    pub async fn remove_run_containers(&self) -> usize {
        if self.containers_created() == 0 {
            return 0;
        }
        let listed = self
            .containers_labelled(&format!("{LABEL_RUN}={}", self.run_id()))
            .await
            .unwrap_or_default();
        let ids: BTreeSet<String> = listed
            .into_iter()
            .filter_map(|c| c.id)
            .chain(self.active.lock().expect("lock").iter().cloned())
            .collect();
        futures_util::future::join_all(ids.iter().map(|id| self.remove_container(id))).await;
        ids.len()
    }

    /// Removes a container (forced, keeping volumes), and forgets it; only warns on failure.
    pub(super) async fn remove_container(&self, id: &str) {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        let removal = self.docker.remove_container(id, Some(opts));
        match tokio::time::timeout(Duration::from_secs(30), removal).await {
            Ok(Ok(()))
            | Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => {}
            Ok(Err(e)) => tracing::warn!(container = id, "could not remove container: {e}"),
            Err(_) => tracing::warn!(container = id, "removing the container timed out"),
        }
        self.active.lock().expect("lock").remove(id);
    }
}

/// Whether a process of this host with this pid exists (one we may not signal counts).
pub(crate) fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}
