//! What the server says it supports (GetCapabilities): asked once, on the first blob transfer,
//! for the batch limit; and for `cache-status`.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use super::{GrpcStorage, batch};
use crate::remote::RemoteError;

impl GrpcStorage {
    /// The bytes one batch call may carry.
    pub(super) async fn batch_limit(&self) -> Result<u64, RemoteError> {
        let limit = self
            .batch_limit
            .get_or_try_init(|| async {
                let caps = self.capabilities().await?;
                let max = caps
                    .and_then(|c| c.cache_capabilities)
                    .map_or(0, |c| c.max_batch_total_size_bytes);
                Ok::<_, RemoteError>(batch::batch_limit(max))
            })
            .await?;
        Ok(*limit)
    }

    /// The server's capabilities; None when it has no Capabilities service (then nothing is
    /// known, and the defaults hold).
    async fn capabilities(&self) -> Result<Option<re::ServerCapabilities>, RemoteError> {
        let request = re::GetCapabilitiesRequest {
            instance_name: self.instance.clone(),
        };
        match self.capabilities_client()?.get_capabilities(request).await {
            Ok(c) => Ok(Some(c.into_inner())),
            Err(s) if s.code() == tonic::Code::Unimplemented => Ok(None),
            Err(s) => Err(self.status(s)),
        }
    }

    /// For `cache-status`: that the action cache answers, and what the server supports.
    pub(super) async fn support(&self) -> Result<String, RemoteError> {
        let caps = self.capabilities().await?;
        // A lookup too: the action cache may refuse what Capabilities allows (auth per service).
        let nothing = crate::fingerprint::TaskKey::new("0".repeat(64), 0);
        self.get(&nothing).await?;
        let Some(caps) = caps else {
            return Ok("answers lookups (REAPI, capabilities not told)".into());
        };
        let mut said = vec!["answers lookups".to_string()];
        if let Some(v) = caps.high_api_version {
            said.push(format!("REAPI up to v{}.{}", v.major, v.minor));
        }
        if let Some(c) = caps.cache_capabilities {
            if !c
                .digest_functions
                .contains(&(re::digest_function::Value::Sha256 as i32))
            {
                said.push("no SHA-256 listed".into());
            }
            let limit = c.max_batch_total_size_bytes;
            if limit > 0 {
                said.push(format!("batches up to {:.1} MB", limit as f64 / 1e6));
            }
            let updates = c
                .action_cache_update_capabilities
                .is_some_and(|u| u.update_enabled);
            let updates = if updates { "allowed" } else { "not allowed" };
            said.push(format!("action cache updates {updates}"));
        }
        Ok(said.join(", "))
    }
}
