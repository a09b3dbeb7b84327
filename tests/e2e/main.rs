//! End-to-end tests: the real `flamenco-build` binary against the real Docker engine.
//! They fail, never skip, when no engine answers (or, for the remote-cache tests, a server is missing).

mod servers;
mod support;

mod boundary_archive;
mod boundary_config;
mod boundary_paths;
mod boundary_runtime;
mod cache;
mod core_loop;
mod dockerfile_dev;
mod faults;
mod flamenco_today;
mod new_user;
mod parallel;
mod reliability;
mod remote_cache;
mod remote_engine;
mod remote_exec;
mod remote_exec_client;
mod remote_exec_distributed;
mod reproducible;
mod servers_smoke;
mod workflow;
