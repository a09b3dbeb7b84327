//! Where the remote executor is and how long a task may wait for a worker: from `[remote]`,
//! `--remote-executor` and `FLAMENCO_BUILD_REMOTE_EXECUTOR`. The instance name, timeout and
//! headers are the cache's.

use std::time::Duration;

use crate::config::RemoteConfig;
use crate::config::remote::check_executor_url;
use crate::remote::{RemoteArgs, RemoteSettings};

/// A remote executor, ready to connect. `Debug` shows no secret (see [`RemoteSettings`]).
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The execution service, whose CAS takes the inputs and holds the outputs (`cache` holds
    /// its URL: REAPI puts both on one endpoint).
    pub server: RemoteSettings,
    pub queue_timeout: Duration,
}

impl ExecutorSettings {
    /// The remote executor of this build, if one is named. A URL given on the command line or
    /// in the environment is checked here (the file's was checked with the config).
    pub fn resolve(
        config: &RemoteConfig,
        args: &RemoteArgs,
    ) -> Result<Option<ExecutorSettings>, String> {
        let Some(url) = args
            .remote_executor
            .clone()
            .or_else(|| config.executor.clone())
        else {
            return Ok(None);
        };
        check_executor_url(&url)?;
        let server = RemoteSettings {
            cache: url,
            instance: config.instance.clone(),
            upload: false,
            timeout: config.timeout,
            headers: crate::remote::settings::headers(config),
            // Results come from the engine's workers, which hold no sign key.
            sign_key: None,
            s3_endpoint: None,
            s3_region: None,
        };
        Ok(Some(ExecutorSettings {
            server,
            queue_timeout: config.queue_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_wins_and_is_checked() {
        let config = RemoteConfig {
            executor: Some("grpc://file:8980".into()),
            instance: "main".into(),
            ..RemoteConfig::default()
        };
        let mut args = RemoteArgs::default();
        let s = ExecutorSettings::resolve(&config, &args).unwrap().unwrap();
        assert_eq!(
            (s.server.cache.as_str(), s.server.instance.as_str()),
            ("grpc://file:8980", "main")
        );
        args.remote_executor = Some("grpcs://cli:443".into());
        let s = ExecutorSettings::resolve(&config, &args).unwrap().unwrap();
        assert_eq!(s.server.cache, "grpcs://cli:443");
        args.remote_executor = Some("https://cli:443".into());
        assert!(ExecutorSettings::resolve(&config, &args).is_err());
        let none = ExecutorSettings::resolve(&RemoteConfig::default(), &RemoteArgs::default());
        assert!(none.unwrap().is_none());
    }
}
