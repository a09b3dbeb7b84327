//! Names on a REAPI server: the address tonic dials for a `grpc://` or `grpcs://` URL, and the
//! ByteStream resource names of blobs (REAPI v2, "Uploads and downloads").

use crate::cache::BlobRef;

/// The URI tonic dials for `url`, and whether it is TLS. A gRPC URL names a server and nothing
/// else; the messages never repeat the URL (it may hold what must not be shown).
pub(crate) fn endpoint_uri(url: &str) -> Result<(String, bool), String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let tls = match scheme {
        "grpc" => false,
        "grpcs" => true,
        _ => return Err(format!("`{scheme}://` is not a gRPC scheme")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(
            "a gRPC URL holds no credentials: send them as a header (`headers_env`)".into(),
        );
    }
    if authority.is_empty() || authority.contains(['/', '?', '#']) {
        return Err(
            "a gRPC URL names a server only (`grpc://host:port`); the instance name goes in \
             `instance`"
                .into(),
        );
    }
    let http = if tls { "https" } else { "http" };
    Ok((format!("{http}://{authority}"), tls))
}

/// Where ByteStream.Read finds a blob: `{instance}/blobs/{hash}/{size}`.
pub(super) fn read_name(instance: &str, blob: &BlobRef) -> String {
    in_instance(instance, format!("blobs/{}/{}", blob.sha256, blob.size))
}

/// Where ByteStream.Write puts a blob: `{instance}/uploads/{uuid}/blobs/{hash}/{size}`, the
/// UUID new for every upload.
pub(super) fn upload_name(instance: &str, upload: uuid::Uuid, blob: &BlobRef) -> String {
    in_instance(
        instance,
        format!("uploads/{upload}/blobs/{}/{}", blob.sha256, blob.size),
    )
}

/// The default instance (empty) takes no prefix at all, not a bare `/`.
fn in_instance(instance: &str, rest: String) -> String {
    if instance.is_empty() {
        rest
    } else {
        format!("{instance}/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> BlobRef {
        BlobRef {
            sha256: "ab".repeat(32),
            size: 42,
        }
    }

    #[test]
    fn read_names_have_the_instance_only_when_there_is_one() {
        let hash = "ab".repeat(32);
        assert_eq!(read_name("", &blob()), format!("blobs/{hash}/42"));
        assert_eq!(
            read_name("main/ci", &blob()),
            format!("main/ci/blobs/{hash}/42")
        );
    }

    #[test]
    fn upload_names_carry_a_fresh_uuid() {
        let id = uuid::Uuid::nil();
        let hash = "ab".repeat(32);
        assert_eq!(
            upload_name("", id, &blob()),
            format!("uploads/{id}/blobs/{hash}/42")
        );
        assert_eq!(
            upload_name("inst", id, &blob()),
            format!("inst/uploads/{id}/blobs/{hash}/42")
        );
    }

    #[test]
    fn urls_become_http2_uris() {
        assert_eq!(
            endpoint_uri("grpc://127.0.0.1:9092").unwrap(),
            ("http://127.0.0.1:9092".to_string(), false)
        );
        assert_eq!(
            endpoint_uri("grpcs://cache.example:443/").unwrap(),
            ("https://cache.example:443".to_string(), true)
        );
    }

    #[test]
    fn urls_with_credentials_or_paths_are_refused_without_repeating_them() {
        let e = endpoint_uri("grpcs://ci:s3cret@cache.example").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(endpoint_uri("grpc://cache:9092/instance").is_err());
        assert!(endpoint_uri("grpc://").is_err());
        assert!(endpoint_uri("http://cache:80").is_err());
    }
}
