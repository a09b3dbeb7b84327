//! An engine's refusal or failed status, told as what the user can act on: a platform no worker
//! offers is an image no worker holds; an input the engine lost is sent again.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;
use tonic::Code;

use crate::error::{Error, Result};

/// `google.rpc.PreconditionFailure`, which the engine attaches to FAILED_PRECONDITION when
/// inputs are missing (violations of type `MISSING`).
#[derive(Clone, PartialEq, prost::Message)]
struct PreconditionFailure {
    #[prost(message, repeated, tag = "1")]
    violations: Vec<Violation>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Violation {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    subject: String,
    #[prost(string, tag = "3")]
    description: String,
}

const PRECONDITION_FAILURE: &str = "type.googleapis.com/google.rpc.PreconditionFailure";

/// Whether the engine could not run the action because a blob it was sent went missing.
pub(super) fn inputs_missing(r: &re::ExecuteResponse) -> bool {
    let Some(s) = r
        .status
        .as_ref()
        .filter(|s| s.code == Code::FailedPrecondition as i32)
    else {
        return false;
    };
    s.details
        .iter()
        .filter(|d| d.type_url == PRECONDITION_FAILURE)
        .filter_map(|d| PreconditionFailure::decode(d.value.as_slice()).ok())
        .any(|f| f.violations.iter().any(|v| v.r#type == "MISSING"))
}

/// The response, when its status is OK; else the failure it tells.
pub(super) fn check(
    r: re::ExecuteResponse,
    task: &str,
    server: &str,
    image: &str,
) -> Result<re::ExecuteResponse> {
    let Some(s) = r.status.as_ref().filter(|s| s.code != 0) else {
        return Ok(r);
    };
    let code = Code::from_i32(s.code);
    let reason = match code {
        Code::DeadlineExceeded => format!("{server}: the execution timed out: {}", s.message),
        _ => refusal(server, code, &s.message, image),
    };
    Err(Error::RemoteExecution {
        task: task.to_string(),
        reason,
    })
}

/// A status that no retry mends, told.
pub(super) fn refusal(server: &str, code: Code, message: &str, image: &str) -> String {
    match code {
        Code::FailedPrecondition => format!(
            "no worker holds image {image}, or none can take the task: {server} says: {message}"
        ),
        Code::Unauthenticated | Code::PermissionDenied => {
            format!("{server} refused the credentials: {message}")
        }
        _ => format!("{server}: gRPC {code:?}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazel_remote_apis::google::protobuf::Any;
    use bazel_remote_apis::google::rpc::Status;

    fn response(code: Code, message: &str, violation: Option<&str>) -> re::ExecuteResponse {
        let details = violation
            .map(|t| Any {
                type_url: PRECONDITION_FAILURE.into(),
                value: PreconditionFailure {
                    violations: vec![Violation {
                        r#type: t.into(),
                        subject: "blobs/ab/3".into(),
                        description: String::new(),
                    }],
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect();
        re::ExecuteResponse {
            status: Some(Status {
                code: code as i32,
                message: message.into(),
                details,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_input_is_sent_again_and_anything_else_is_told() {
        assert!(inputs_missing(&response(
            Code::FailedPrecondition,
            "",
            Some("MISSING")
        )));
        assert!(!inputs_missing(&response(
            Code::FailedPrecondition,
            "",
            Some("OTHER")
        )));
        assert!(!inputs_missing(&response(
            Code::Internal,
            "",
            Some("MISSING")
        )));
        assert!(!inputs_missing(&re::ExecuteResponse::default()));
        let ok = check(
            re::ExecuteResponse::default(),
            "t",
            "grpc://e",
            "go@sha256:1",
        );
        assert!(ok.is_ok());
        let r = response(Code::FailedPrecondition, "no bot matches", None);
        let e = check(r, "t", "grpc://e", "go@sha256:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no worker holds image go@sha256:1"), "{e}");
        assert!(
            e.contains("no bot matches") && e.contains("grpc://e"),
            "{e}"
        );
        let r = response(Code::DeadlineExceeded, "1h", None);
        let e = check(r, "t", "grpc://e", "i").unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
    }
}
