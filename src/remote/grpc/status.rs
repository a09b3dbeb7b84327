//! A gRPC status as a [`RemoteError`]: what switches the tier off (the server is down, failing,
//! refusing the credentials, too slow) and what only makes an answer untrustworthy.

use std::time::Duration;

use tonic::{Code, Status};

use super::RemoteError;

/// The longest server message kept in a reason.
const MAX_MESSAGE: usize = 300;

/// `status`, from `server`, as a remote error. NOT_FOUND means a miss or a missing blob; the
/// callers that expect it handle it before this.
pub(super) fn to_remote(server: &str, timeout: Duration, status: &Status) -> RemoteError {
    let server = server.to_string();
    let reason = reason(status);
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => RemoteError::Auth { server, reason },
        Code::DeadlineExceeded => RemoteError::Timeout {
            server,
            secs: timeout.as_secs_f64(),
        },
        // Unavailable, Unknown (transport errors), Internal, ResourceExhausted, and what says
        // the server cannot serve us at all (Unimplemented, InvalidArgument for an unknown
        // instance, ...): the guard switches the tier off after a few in a row.
        _ => RemoteError::Unavailable { server, reason },
    }
}

/// A per-blob status of a batch call (`google.rpc.Status`) as a remote error.
pub(super) fn blob_status(
    server: &str,
    timeout: Duration,
    hash: &str,
    code: i32,
    message: &str,
) -> RemoteError {
    let code = Code::from_i32(code);
    if code == Code::NotFound {
        return RemoteError::BadAnswer {
            server: server.to_string(),
            reason: format!("blob {hash} is missing"),
        };
    }
    to_remote(
        server,
        timeout,
        &Status::new(code, format!("blob {hash}: {message}")),
    )
}

/// The code, the server's message, and the transport's causes (a refused connection, say).
fn reason(status: &Status) -> String {
    let mut r = format!("gRPC {:?}", status.code());
    let message = status.message();
    if !message.is_empty() {
        r.push_str(": ");
        r.push_str(clip(message));
    }
    let mut cause = std::error::Error::source(status);
    while let Some(e) = cause {
        let text = e.to_string();
        if !r.contains(&text) {
            r.push_str(": ");
            r.push_str(clip(&text));
        }
        cause = e.source();
    }
    r
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn codes_map_onto_what_the_guard_acts_on() {
        let e = to_remote("grpc://s", T, &Status::unauthenticated("no token"));
        assert!(matches!(e, RemoteError::Auth { .. }), "{e:?}");
        let e = to_remote("grpc://s", T, &Status::permission_denied("read only"));
        assert!(matches!(e, RemoteError::Auth { .. }), "{e:?}");
        let e = to_remote("grpc://s", T, &Status::deadline_exceeded("slow"));
        assert!(matches!(e, RemoteError::Timeout { .. }), "{e:?}");
        for s in [
            Status::unavailable("down"),
            Status::unknown("transport"),
            Status::internal("bug"),
            Status::resource_exhausted("full"),
        ] {
            let e = to_remote("grpc://s", T, &s);
            assert!(matches!(e, RemoteError::Unavailable { .. }), "{e:?}");
            assert!(e.switches_off());
        }
    }

    #[test]
    fn a_missing_blob_in_a_batch_is_a_bad_answer_naming_it() {
        let e = blob_status("grpc://s", T, "abc", Code::NotFound as i32, "");
        assert!(matches!(e, RemoteError::BadAnswer { .. }));
        assert!(e.to_string().contains("blob abc is missing"), "{e}");
        let e = blob_status("grpc://s", T, "abc", Code::Internal as i32, "disk");
        assert!(
            e.to_string().contains("abc") && e.to_string().contains("disk"),
            "{e}"
        );
    }

    #[test]
    fn long_messages_are_clipped() {
        let e = to_remote("grpc://s", T, &Status::internal("é".repeat(5000)));
        assert!(e.to_string().len() < 1000);
    }
}
