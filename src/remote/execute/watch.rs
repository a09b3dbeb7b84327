//! `-v` during a remote run: what the engine tells of an execution while it runs. Each change of
//! stage is a line (queued on the engine, executing on a worker, completed), and when the engine
//! names log streams (`ExecuteOperationMetadata.stdout_stream_name` / `stderr_stream_name`) they
//! are read with ByteStream.Read as they grow, line by line. BuildGrid 0.4.4 names streams only
//! when its scheduler is given an external LogStream service, and `flamenco-build worker` does
//! not write to one, so with our worker the log comes from the result once the task ends.

use std::collections::HashSet;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::ReadRequest;
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use re::execution_stage::Value as Stage;
use tokio::task::JoinHandle;

use crate::executor::LogSink;
use crate::remote::grpc::{GrpcStorage, Service};

/// How long a log stream may take to reach its end once the operation is done.
const STREAM_END: Duration = Duration::from_secs(5);

/// Which of the task's logs were shown whole from a stream (then not again from the result).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Streamed {
    pub(super) stdout: bool,
    pub(super) stderr: bool,
}

/// The stage lines and log streams of one task's execution.
pub(super) struct Watch {
    log: LogSink,
    server: String,
    stage: Option<Stage>,
    worker: String,
    started: HashSet<String>,
    streams: Vec<(bool, JoinHandle<bool>)>,
}

impl Watch {
    pub(super) fn new(log: LogSink, server: &str) -> Watch {
        Watch {
            log,
            server: server.to_string(),
            stage: None,
            worker: String::new(),
            started: HashSet::new(),
            streams: Vec::new(),
        }
    }

    /// One update of the operation: a line when its stage (or worker) changed, and any log
    /// stream it names for the first time starts being read.
    pub(super) fn update(&mut self, meta: &re::ExecuteOperationMetadata, storage: &GrpcStorage) {
        let stage = Stage::try_from(meta.stage).ok();
        let worker = meta
            .partial_execution_metadata
            .as_ref()
            .map(|m| m.worker.clone())
            .unwrap_or_default();
        if stage.is_some() && (stage != self.stage || worker != self.worker) {
            if let Some(line) = stage_line(stage, &worker, &self.server) {
                (self.log)(&line);
            }
            self.stage = stage;
            self.worker = worker;
        }
        for (stdout, name) in [
            (true, &meta.stdout_stream_name),
            (false, &meta.stderr_stream_name),
        ] {
            if name.is_empty() || !self.started.insert(name.clone()) {
                continue;
            }
            let Ok(client) = storage.bytestream() else {
                continue;
            };
            let handle = tokio::spawn(read_stream(client, name.clone(), self.log.clone()));
            self.streams.push((stdout, handle));
        }
    }

    /// Waits a little for the streams to end; says which were read to their end.
    pub(super) async fn finish(self) -> Streamed {
        let mut streamed = Streamed::default();
        for (stdout, mut handle) in self.streams {
            let whole = match tokio::time::timeout(STREAM_END, &mut handle).await {
                Ok(Ok(whole)) => whole,
                _ => {
                    handle.abort();
                    false
                }
            };
            if stdout {
                streamed.stdout |= whole;
            } else {
                streamed.stderr |= whole;
            }
        }
        streamed
    }
}

/// The line a stage change is shown as.
fn stage_line(stage: Option<Stage>, worker: &str, server: &str) -> Option<String> {
    let on = |w: &str| {
        if w.is_empty() {
            String::new()
        } else {
            format!(" on {w}")
        }
    };
    Some(match stage? {
        Stage::Unknown => return None,
        Stage::CacheCheck => format!("remote: checking {server}'s action cache"),
        Stage::Queued => format!("remote: queued on {server}"),
        Stage::Executing => format!("remote: executing{}", on(worker)),
        Stage::Completed => format!("remote: completed{}", on(worker)),
    })
}

/// Reads a log stream to its end, a line at a time into `log`; whether it got to the end.
async fn read_stream(mut client: ByteStreamClient<Service>, name: String, log: LogSink) -> bool {
    let request = ReadRequest {
        resource_name: name.clone(),
        read_offset: 0,
        read_limit: 0,
    };
    let mut body = match client.read(request).await {
        Ok(b) => b.into_inner(),
        Err(s) => {
            tracing::debug!(stream = %name, status = %s, "the log stream cannot be read");
            return false;
        }
    };
    let mut lines = Lines::default();
    loop {
        match body.message().await {
            Ok(Some(m)) => lines.push(&m.data, |l| log(l)),
            Ok(None) => {
                lines.end(|l| log(l));
                return true;
            }
            Err(s) => {
                tracing::debug!(stream = %name, status = %s, "the log stream broke off");
                return false;
            }
        }
    }
}

/// Bytes arriving in chunks, cut into lines (a line may span chunks; `\r\n` ends one too).
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, data: &[u8], mut each: impl FnMut(&str)) {
        self.partial.extend_from_slice(data);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..i]);
            each(text.trim_end_matches('\r'));
        }
    }

    fn end(&mut self, mut each: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            each(String::from_utf8_lossy(&self.partial).trim_end_matches('\r'));
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_is_told_with_the_worker_when_known() {
        let s = "grpc://grid:1";
        assert_eq!(
            stage_line(Some(Stage::Queued), "", s).unwrap(),
            "remote: queued on grpc://grid:1"
        );
        assert_eq!(
            stage_line(Some(Stage::Executing), "bot-a", s).unwrap(),
            "remote: executing on bot-a"
        );
        assert_eq!(
            stage_line(Some(Stage::Executing), "", s).unwrap(),
            "remote: executing"
        );
        assert_eq!(
            stage_line(Some(Stage::Completed), "bot-a", s).unwrap(),
            "remote: completed on bot-a"
        );
        assert!(
            stage_line(Some(Stage::CacheCheck), "", s)
                .unwrap()
                .contains("action cache")
        );
        assert_eq!(stage_line(Some(Stage::Unknown), "", s), None);
        assert_eq!(stage_line(None, "", s), None);
    }

    /// A ByteStream server whose every read is a log stream, sent in awkward chunks.
    struct LogServer;

    type Chunks = std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<
                        bazel_remote_apis::google::bytestream::ReadResponse,
                        tonic::Status,
                    >,
                > + Send,
        >,
    >;

    #[async_trait::async_trait]
    impl bazel_remote_apis::google::bytestream::byte_stream_server::ByteStream for LogServer {
        type ReadStream = Chunks;

        async fn read(
            &self,
            request: tonic::Request<ReadRequest>,
        ) -> Result<tonic::Response<Chunks>, tonic::Status> {
            if request.get_ref().resource_name != "logs/stdout" {
                return Err(tonic::Status::not_found("no such stream"));
            }
            let chunks = [&b"compiling\nlin"[..], b"king\n", b"done"].map(|c| {
                Ok(bazel_remote_apis::google::bytestream::ReadResponse { data: c.to_vec() })
            });
            Ok(tonic::Response::new(Box::pin(futures_util::stream::iter(
                chunks,
            ))))
        }

        async fn write(
            &self,
            _: tonic::Request<
                tonic::Streaming<bazel_remote_apis::google::bytestream::WriteRequest>,
            >,
        ) -> Result<
            tonic::Response<bazel_remote_apis::google::bytestream::WriteResponse>,
            tonic::Status,
        > {
            Err(tonic::Status::unimplemented("read only"))
        }

        async fn query_write_status(
            &self,
            _: tonic::Request<bazel_remote_apis::google::bytestream::QueryWriteStatusRequest>,
        ) -> Result<
            tonic::Response<bazel_remote_apis::google::bytestream::QueryWriteStatusResponse>,
            tonic::Status,
        > {
            Err(tonic::Status::unimplemented("read only"))
        }
    }

    #[tokio::test]
    async fn a_named_log_stream_is_shown_as_it_comes_and_a_missing_one_is_not_counted() {
        use bazel_remote_apis::google::bytestream::byte_stream_server::ByteStreamServer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            Some((l.accept().await.map(|(s, _)| s), l))
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ByteStreamServer::new(LogServer))
                .serve_with_incoming(incoming),
        );
        let settings = crate::remote::RemoteSettings {
            cache: format!("grpc://127.0.0.1:{port}"),
            instance: String::new(),
            upload: false,
            timeout: Duration::from_secs(5),
            headers: Vec::new(),
            sign_key: None,
            s3_endpoint: None,
            s3_region: None,
        };
        let storage = GrpcStorage::connect(&settings).unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let log: LogSink = std::sync::Arc::new(move |l: &str| sink.lock().unwrap().push(l.into()));
        let mut watch = Watch::new(log, "grpc://engine");
        let meta = re::ExecuteOperationMetadata {
            stage: Stage::Executing as i32,
            stdout_stream_name: "logs/stdout".into(),
            stderr_stream_name: "logs/gone".into(),
            ..Default::default()
        };
        watch.update(&meta, &storage);
        watch.update(&meta, &storage); // the same names again: read once
        let streamed = watch.finish().await;
        assert_eq!(
            streamed,
            Streamed {
                stdout: true,
                stderr: false
            },
            "stderr could not be read: it comes from the result"
        );
        assert_eq!(
            *lines.lock().unwrap(),
            ["remote: executing", "compiling", "linking", "done"]
        );
    }

    #[test]
    fn chunks_become_lines_whatever_their_cuts() {
        let mut got = Vec::new();
        let mut lines = Lines::default();
        for chunk in [&b"one\ntw"[..], b"o\r\n", b"", b"thr", b"ee"] {
            lines.push(chunk, |l| got.push(l.to_string()));
        }
        lines.end(|l| got.push(l.to_string()));
        assert_eq!(got, ["one", "two", "three"]);
    }
}
