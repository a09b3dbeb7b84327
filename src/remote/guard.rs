//! The rule every remote tier lives under: it may only make a build faster. Each call has a
//! timeout; the first timeout, refused connection, server error or auth failure switches the tier
//! off for the rest of the run with one warning, after which every call answers at once as if the
//! tier were empty. (Retrying a sick server per task is what makes other tools' builds crawl.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::RemoteError;
use crate::cache::{ActionRecord, BlobRead, BlobRef, BlobWrite, CacheError, Storage};
use crate::fingerprint::TaskKey;

/// Where a tier's warnings go (the build's reporter).
pub(crate) type Warn = Arc<dyn Fn(String) + Send + Sync>;

/// A remote tier behind a timeout and a switch.
pub(crate) struct Guarded {
    inner: Arc<dyn Storage>,
    timeout: Duration,
    /// For blob transfers: the timeout per call grows with the bytes moved, at this rate.
    min_rate: u64,
    off: AtomicBool,
    warn: Warn,
    /// What this build asked of the tier: calls, and blob bytes each way.
    calls: AtomicU64,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn Storage>, timeout: Duration, warn: Warn) -> Guarded {
        Guarded {
            inner,
            timeout,
            min_rate: 1024 * 1024,
            off: AtomicBool::new(false),
            warn,
            calls: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
        }
    }

    /// What this build asked of the tier, for `--json`: the server (no credentials), calls made,
    /// blob bytes down and up, and whether it was switched off.
    pub(crate) fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "server": self.inner.describe(),
            "calls": self.calls.load(Ordering::Relaxed),
            "bytes_down": self.bytes_down.load(Ordering::Relaxed),
            "bytes_up": self.bytes_up.load(Ordering::Relaxed),
            "switched_off": self.is_off(),
        })
    }

    /// Whether the tier was switched off in this run.
    pub(crate) fn is_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }

    /// Runs one call under the timeout (longer for `bytes` to move) and keeps the score.
    async fn call<T>(
        &self,
        bytes: u64,
        f: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        if self.is_off() {
            return Err(CacheError::TierOff);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let limit = self.timeout + Duration::from_secs(bytes / self.min_rate);
        let result = match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Remote(RemoteError::Timeout {
                server: self.inner.describe(),
                secs: limit.as_secs_f64(),
            })),
        };
        if let Err(CacheError::Remote(e)) = &result
            && e.switches_off()
        {
            self.switch_off(e);
            return Err(CacheError::TierOff);
        }
        result
    }

    fn switch_off(&self, why: &RemoteError) {
        if !self.off.swap(true, Ordering::Relaxed) {
            (self.warn)(format!(
                "remote cache {why}; going on without it for the rest of this build"
            ));
        }
    }
}

fn size_of<'a>(blobs: impl Iterator<Item = &'a BlobRef>) -> u64 {
    blobs.map(|b| b.size).sum()
}

#[async_trait::async_trait]
impl Storage for Guarded {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn get_action(
        &self,
        task: &str,
        key: &TaskKey,
    ) -> Result<Option<ActionRecord>, CacheError> {
        self.call(0, self.inner.get_action(task, key)).await
    }

    async fn put_action(
        &self,
        task: &str,
        key: &TaskKey,
        record: &ActionRecord,
    ) -> Result<(), CacheError> {
        self.call(0, self.inner.put_action(task, key, record)).await
    }

    async fn find_missing(&self, blobs: Vec<BlobRef>) -> Result<Vec<BlobRef>, CacheError> {
        self.call(0, self.inner.find_missing(blobs)).await
    }

    async fn write_blobs(&self, blobs: Vec<BlobWrite>) -> Result<(), CacheError> {
        let bytes = size_of(blobs.iter().map(|b| &b.blob));
        self.call(bytes, self.inner.write_blobs(blobs)).await?;
        self.bytes_up.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    async fn probe(&self) -> Result<String, CacheError> {
        // Not through `call`: a status check reports the failure itself and switches nothing off.
        match tokio::time::timeout(self.timeout, self.inner.probe()).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Remote(RemoteError::Timeout {
                server: self.inner.describe(),
                secs: self.timeout.as_secs_f64(),
            })),
        }
    }

    async fn read_blobs(&self, blobs: Vec<BlobRead>) -> Result<(), CacheError> {
        let bytes = size_of(blobs.iter().map(|b| &b.blob));
        let targets: Vec<_> = blobs.iter().map(|b| b.to.clone()).collect();
        let r = self.call(bytes, self.inner.read_blobs(blobs)).await;
        if r.is_ok() {
            self.bytes_down.fetch_add(bytes, Ordering::Relaxed);
        } else {
            // A timeout drops the transfer mid-way: no file of it may stay.
            for t in targets {
                let _ = std::fs::remove_file(t);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A tier that never answers, or always fails as told.
    struct Broken(Option<RemoteError>);

    #[async_trait::async_trait]
    impl Storage for Broken {
        fn describe(&self) -> String {
            "http://cache.test".into()
        }
        async fn get_action(
            &self,
            _: &str,
            _: &TaskKey,
        ) -> Result<Option<ActionRecord>, CacheError> {
            match &self.0 {
                Some(e) => Err(CacheError::Remote(e.clone())),
                None => std::future::pending().await,
            }
        }
        async fn put_action(
            &self,
            _: &str,
            _: &TaskKey,
            _: &ActionRecord,
        ) -> Result<(), CacheError> {
            Ok(())
        }
        async fn find_missing(&self, b: Vec<BlobRef>) -> Result<Vec<BlobRef>, CacheError> {
            Ok(b)
        }
        async fn write_blobs(&self, _: Vec<BlobWrite>) -> Result<(), CacheError> {
            Ok(())
        }
        async fn read_blobs(&self, _: Vec<BlobRead>) -> Result<(), CacheError> {
            Ok(())
        }
    }

    fn guarded(e: Option<RemoteError>) -> (Guarded, Arc<Mutex<Vec<String>>>) {
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let warn: Warn = Arc::new(move |w| t.lock().unwrap().push(w));
        let g = Guarded::new(Arc::new(Broken(e)), Duration::from_millis(50), warn);
        (g, told)
    }

    fn key() -> TaskKey {
        TaskKey::new("ab".repeat(32), 1)
    }

    #[tokio::test]
    async fn one_timeout_switches_the_tier_off_with_one_warning() {
        let (g, told) = guarded(None);
        let t = std::time::Instant::now();
        for _ in 0..5 {
            assert!(matches!(
                g.get_action("t", &key()).await,
                Err(CacheError::TierOff)
            ));
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "one timeout, not five"
        );
        let told = told.lock().unwrap();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("did not answer within"), "{}", told[0]);
        assert_eq!(g.stats()["calls"], 1);
    }

    #[tokio::test]
    async fn the_first_failure_switches_it_off_and_auth_says_so() {
        let down = RemoteError::Unavailable {
            server: "http://cache.test".into(),
            reason: "connection refused".into(),
        };
        let (g, told) = guarded(Some(down));
        for _ in 0..3 {
            assert!(matches!(
                g.get_action("t", &key()).await,
                Err(CacheError::TierOff)
            ));
        }
        assert!(g.is_off());
        assert_eq!(told.lock().unwrap().len(), 1);
        assert_eq!(g.stats()["calls"], 1);
        let auth = RemoteError::Auth {
            server: "http://cache.test".into(),
            reason: "401 Unauthorized".into(),
        };
        let (g, told) = guarded(Some(auth));
        let _ = g.get_action("t", &key()).await;
        assert!(g.is_off());
        assert!(told.lock().unwrap()[0].contains("refused the credentials"));
    }

    #[tokio::test]
    async fn a_bad_answer_does_not_switch_it_off() {
        let bad = RemoteError::BadAnswer {
            server: "http://cache.test".into(),
            reason: "the result is not signed".into(),
        };
        let (g, told) = guarded(Some(bad));
        for _ in 0..5 {
            assert!(matches!(
                g.get_action("t", &key()).await,
                Err(CacheError::Remote(_))
            ));
        }
        assert!(!g.is_off());
        assert!(
            told.lock().unwrap().is_empty(),
            "the facade tells bad answers, per task"
        );
    }
}
