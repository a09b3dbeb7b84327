//! (stub, filled in by the backend work)

use std::path::Path;

use super::kv::{ByteStream, KvBackend};
use super::{RemoteError, RemoteSettings};

pub(crate) struct OpendalBackend {
    server: String,
}

impl OpendalBackend {
    pub(crate) fn new(settings: &RemoteSettings) -> Result<OpendalBackend, RemoteError> {
        Err(RemoteError::Unavailable {
            server: settings.shown(),
            reason: "not built yet".into(),
        })
    }
}

#[async_trait::async_trait]
impl KvBackend for OpendalBackend {
    fn describe(&self) -> String {
        self.server.clone()
    }
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        Ok(None)
    }
    async fn get_stream(&self, _: &str) -> Result<Option<ByteStream>, RemoteError> {
        Ok(None)
    }
    async fn exists(&self, _: &str) -> Result<bool, RemoteError> {
        Ok(false)
    }
    async fn put(&self, _: &str, _: Vec<u8>) -> Result<(), RemoteError> {
        Ok(())
    }
    async fn put_file(&self, _: &str, _: &Path, _: u64) -> Result<(), RemoteError> {
        Ok(())
    }
}
