//! A cache URL taken apart for the backends that speak URLs themselves (HTTP, Redis): the
//! `user:password@` comes out, decoded, so the rest can be used and shown without it.

/// A URL's `user:password`, percent-decoded. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Credentials {
    pub(super) user: String,
    pub(super) password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = self.password.as_ref().map(|_| "***");
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &password)
            .finish()
    }
}

/// A URL in parts: `scheme://[credentials@]host/path`, `path` starting with `/` or empty, any
/// query left on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UrlParts {
    pub(super) scheme: String,
    pub(super) credentials: Option<Credentials>,
    pub(super) host: String,
    pub(super) path: String,
}

impl UrlParts {
    /// Splits `url`; None without a `scheme://`.
    pub(super) fn parse(url: &str) -> Option<UrlParts> {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (credentials, host) = match authority.rfind('@') {
            Some(i) => (Some(credentials(&authority[..i])), &authority[i + 1..]),
            None => (None, authority),
        };
        Some(UrlParts {
            scheme: scheme.to_string(),
            credentials,
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// The URL without its credentials.
    pub(super) fn without_credentials(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }
}

fn credentials(userinfo: &str) -> Credentials {
    match userinfo.split_once(':') {
        Some((user, password)) => Credentials {
            user: percent_decode(user),
            password: Some(percent_decode(password)),
        },
        None => Credentials {
            user: percent_decode(userinfo),
            password: None,
        },
    }
}

/// `%XX` escapes decoded; a malformed escape is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_out_decoded() {
        let p = UrlParts::parse("https://ci:p%40ss%3Aw0rd@cache.example:8080/base/").unwrap();
        assert_eq!(p.host, "cache.example:8080");
        assert_eq!(p.path, "/base/");
        let c = p.credentials.clone().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_deref()),
            ("ci", Some("p@ss:w0rd"))
        );
        assert_eq!(p.without_credentials(), "https://cache.example:8080/base/");
        assert!(!format!("{p:?}").contains("p@ss"));
    }

    #[test]
    fn urls_without_credentials_or_path() {
        let p = UrlParts::parse("redis://:pw@127.0.0.1:6379").unwrap();
        let c = p.credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_deref()), ("", Some("pw")));
        assert_eq!(p.path, "");
        let p = UrlParts::parse("ghac://").unwrap();
        assert_eq!((p.host.as_str(), p.path.as_str()), ("", ""));
        let p = UrlParts::parse("http://h?x=1").unwrap();
        assert_eq!((p.host.as_str(), p.path.as_str()), ("h", "?x=1"));
        assert_eq!(UrlParts::parse("no-scheme"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
