//! Bazel's HTTP cache protocol: `GET`, `HEAD` and `PUT` on `{base}/ac/<hash>` and
//! `{base}/cas/<sha256>`, as bazel-remote and any WebDAV server (nginx) serve it. One client
//! (one connection pool) per build; credentials from the URL go as basic auth, never shown.

use std::path::Path;

use futures_util::TryStreamExt;
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio_util::io::ReaderStream;

use super::kv::{ByteStream, KvBackend};
use super::userinfo::{Credentials, UrlParts};
use super::{RemoteError, RemoteSettings};

/// The size of the pieces a file is sent in: large enough for few syscalls, small for memory.
const SEND_PIECE: usize = 256 * 1024;

pub(crate) struct HttpBackend {
    client: reqwest::Client,
    /// The base URL without credentials, without a trailing `/`.
    base: Url,
    credentials: Option<Credentials>,
    headers: HeaderMap,
    server: String,
}

impl HttpBackend {
    pub(crate) fn new(settings: &RemoteSettings) -> Result<HttpBackend, RemoteError> {
        let server = settings.shown();
        let unusable = |reason: String| RemoteError::Unavailable {
            server: server.clone(),
            reason,
        };
        let parts =
            UrlParts::parse(&settings.cache).ok_or_else(|| unusable("not a URL".to_string()))?;
        let base = Url::parse(&parts.without_credentials())
            .map_err(|e| unusable(format!("not a valid URL: {e}")))?;
        let headers = header_map(&settings.headers).map_err(unusable)?;
        // Only the connection gets its own timeout: the guard times every call as a whole.
        let client = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| unusable(format!("cannot set up an HTTP client: {}", reason(&e))))?;
        Ok(HttpBackend {
            client,
            base,
            credentials: parts.credentials,
            headers,
            server,
        })
    }

    /// `{base}/{name}`, any query of the base kept.
    fn url(&self, name: &str) -> Url {
        let mut url = self.base.clone();
        let path = format!("{}/{name}", self.base.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    fn request(&self, method: Method, name: &str) -> RequestBuilder {
        let request = self
            .client
            .request(method, self.url(name))
            .headers(self.headers.clone());
        match &self.credentials {
            Some(c) => request.basic_auth(&c.user, c.password.as_ref()),
            None => request,
        }
    }

    /// Sends; Some(response) on success, None on 404, else the failure.
    async fn send(
        &self,
        request: RequestBuilder,
        what: &str,
    ) -> Result<Option<Response>, RemoteError> {
        let response = request.send().await.map_err(|e| RemoteError::Unavailable {
            server: self.server.clone(),
            reason: format!("{what}: {}", reason(&e)),
        })?;
        if !classify(response.status(), &self.server, what)? {
            // Read the short "not found" page so the connection goes back to the pool.
            let _ = response.bytes().await;
            return Ok(None);
        }
        Ok(Some(response))
    }
}

/// A body that broke off: this answer cannot be used, though the server may still be fine.
fn broken(server: &str, name: &str, e: &reqwest::Error) -> RemoteError {
    RemoteError::BadAnswer {
        server: server.to_string(),
        reason: format!("the body of {name} broke off: {}", reason(e)),
    }
}

/// What an answer's status means: true for success, false for 404 (absent), else the failure.
fn classify(status: StatusCode, server: &str, what: &str) -> Result<bool, RemoteError> {
    if status.is_success() {
        return Ok(true);
    }
    if status == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    let server = server.to_string();
    let reason = format!("{what}: HTTP {status}");
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(RemoteError::Auth { server, reason })
        }
        _ => Err(RemoteError::Unavailable { server, reason }),
    }
}

/// A request error in words: what failed and its deepest cause, never the URL.
fn reason(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the body failed"
    } else {
        "the request failed"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if std::ptr::addr_eq(cause, e as &dyn std::error::Error) {
        return what.to_string();
    }
    format!("{what} ({cause})")
}

/// The configured headers; a value that cannot be a header is refused without being shown.
fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
        value.set_sensitive(true);
        map.append(key, value);
    }
    Ok(map)
}

#[async_trait::async_trait]
impl KvBackend for HttpBackend {
    fn describe(&self) -> String {
        self.server.clone()
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let what = format!("GET {name}");
        let Some(response) = self.send(self.request(Method::GET, name), &what).await? else {
            return Ok(None);
        };
        let bytes = response
            .bytes()
            .await
            .map_err(|e| broken(&self.server, name, &e))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn get_stream(&self, name: &str) -> Result<Option<ByteStream>, RemoteError> {
        let what = format!("GET {name}");
        let Some(response) = self.send(self.request(Method::GET, name), &what).await? else {
            return Ok(None);
        };
        let server = self.server.clone();
        let name = name.to_string();
        let body = response
            .bytes_stream()
            .map_err(move |e| broken(&server, &name, &e));
        Ok(Some(Box::pin(body)))
    }

    async fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        let what = format!("HEAD {name}");
        let found = self.send(self.request(Method::HEAD, name), &what).await?;
        Ok(found.is_some())
    }

    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), RemoteError> {
        let what = format!("PUT {name}");
        let request = self.request(Method::PUT, name).body(bytes);
        self.stored(self.send(request, &what).await?, &what)
    }

    async fn put_file(&self, name: &str, file: &Path, size: u64) -> Result<(), RemoteError> {
        let what = format!("PUT {name}");
        let opened = tokio::fs::File::open(file)
            .await
            .map_err(|e| RemoteError::Local(format!("cannot read {}: {e}", file.display())))?;
        // Streamed with its length: no chunked encoding, and a server can refuse a size at once.
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(opened, SEND_PIECE));
        let request = self
            .request(Method::PUT, name)
            .header(CONTENT_LENGTH, size)
            .body(body);
        self.stored(self.send(request, &what).await?, &what)
    }
}

impl HttpBackend {
    /// A PUT answered 404 (a server with no such folder that does not create it): not stored.
    fn stored(&self, response: Option<Response>, what: &str) -> Result<(), RemoteError> {
        match response {
            Some(_) => Ok(()),
            None => Err(RemoteError::Unavailable {
                server: self.server.clone(),
                reason: format!("{what}: HTTP 404 Not Found"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(url: &str) -> RemoteSettings {
        RemoteSettings {
            cache: url.to_string(),
            instance: String::new(),
            upload: false,
            timeout: Duration::from_secs(1),
            headers: vec![("X-Token".to_string(), "s3cret".to_string())],
            sign_key: None,
            s3_endpoint: None,
            s3_region: None,
        }
    }

    #[test]
    fn names_go_under_the_base_and_credentials_stay_out() {
        let b = HttpBackend::new(&settings("http://ci:pw@127.0.0.1:8080/cache/")).unwrap();
        assert_eq!(
            b.url("ac/ab12").as_str(),
            "http://127.0.0.1:8080/cache/ac/ab12"
        );
        assert_eq!(b.describe(), "http://***@127.0.0.1:8080/cache/");
        assert_eq!(b.credentials.as_ref().unwrap().user, "ci");
        let b = HttpBackend::new(&settings("https://cache.example")).unwrap();
        assert_eq!(b.url("cas/00").as_str(), "https://cache.example/cas/00");
        assert!(b.credentials.is_none());
    }

    #[test]
    fn a_bad_header_value_is_refused_without_showing_it() {
        let mut s = settings("http://127.0.0.1:1/");
        s.headers = vec![("Authorization".to_string(), "Bearer s3cret\n".to_string())];
        let Err(e) = HttpBackend::new(&s) else {
            panic!("a newline in a header value was accepted")
        };
        let text = e.to_string();
        assert!(
            text.contains("Authorization") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn statuses_map_to_failures() {
        let check = |code: u16| match classify(StatusCode::from_u16(code).unwrap(), "s", "GET ac/x")
        {
            Ok(true) => "ok".to_string(),
            Ok(false) => "absent".to_string(),
            Err(RemoteError::Auth { reason, .. }) => format!("auth {reason}"),
            Err(RemoteError::Unavailable { reason, .. }) => format!("unavailable {reason}"),
            Err(other) => format!("{other}"),
        };
        assert_eq!(check(200), "ok");
        assert_eq!(check(201), "ok");
        assert_eq!(check(404), "absent");
        assert_eq!(check(401), "auth GET ac/x: HTTP 401 Unauthorized");
        assert_eq!(check(403), "auth GET ac/x: HTTP 403 Forbidden");
        assert_eq!(
            check(503),
            "unavailable GET ac/x: HTTP 503 Service Unavailable"
        );
        assert_eq!(check(400), "unavailable GET ac/x: HTTP 400 Bad Request");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_without_the_url() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://ci:pw@127.0.0.1:{port}/base");
        let b = HttpBackend::new(&settings(&url)).unwrap();
        let e = b.exists("cas/00").await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, RemoteError::Unavailable { .. }), "{text}");
        assert!(
            text.contains("cannot connect") && !text.contains("pw@"),
            "{text}"
        );
    }
}
