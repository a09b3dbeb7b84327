//! The settings' headers (an `authorization` token, say) as metadata on every gRPC request.
//! Values are marked sensitive, and no message ever holds one.

use std::sync::Arc;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::Interceptor;

/// The headers to send, checked once.
#[derive(Clone)]
pub(crate) struct Headers(Arc<[(AsciiMetadataKey, AsciiMetadataValue)]>);

impl Headers {
    /// Fails, naming the header but not its value, when one cannot be gRPC metadata.
    pub(super) fn new(pairs: &[(String, String)]) -> Result<Headers, String> {
        let mut v = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            // gRPC metadata keys are lowercase (HTTP/2); `Authorization` in a config is fine.
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("header `{name}` is not a valid gRPC metadata name"))?;
            let mut value = AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| format!("the value of header `{name}` is not valid gRPC metadata"))?;
            value.set_sensitive(true);
            v.push((key, value));
        }
        Ok(Headers(v.into()))
    }
}

impl Interceptor for Headers {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in self.0.iter() {
            req.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_carries_the_headers() {
        let pairs = [("Authorization".to_string(), "Bearer t0ken".to_string())];
        let mut h = Headers::new(&pairs).unwrap();
        let req = h.call(tonic::Request::new(())).unwrap();
        let got = req.metadata().get("authorization").unwrap();
        assert_eq!(got.to_str().unwrap(), "Bearer t0ken");
        assert!(got.is_sensitive());
    }

    #[test]
    fn a_bad_header_is_named_without_its_value() {
        let pairs = [("x-token".to_string(), "s3cret\n".to_string())];
        let Err(e) = Headers::new(&pairs) else {
            panic!("a newline is not metadata")
        };
        assert!(e.contains("x-token") && !e.contains("s3cret"), "{e}");
        assert!(Headers::new(&[("bad name".into(), "v".into())]).is_err());
    }
}
