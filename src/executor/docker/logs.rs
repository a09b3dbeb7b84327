//! A container's log: streamed line by line to the task's sink while it runs, and read back
//! whole once it has exited.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::{StreamExt, TryStreamExt};

use super::DockerEngine;
use crate::executor::LogSink;
use crate::executor::log_tail::LogTail;

impl DockerEngine {
    /// Streams the container's log to `log` line by line until it ends; returns the last lines.
    pub(super) async fn stream_logs(&self, id: &str, log: &LogSink) -> LogTail {
        let opts = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut lines = Lines {
            log,
            tail: LogTail::default(),
            partial: [Vec::new(), Vec::new()],
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(LogOutput::StdErr { message }) => lines.add(1, &message),
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    lines.add(0, &message)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("log stream ended: {e}");
                    break;
                }
            }
        }
        lines.finish()
    }

    /// The last lines of an exited container's stored log.
    pub(super) async fn stored_log_tail(&self, id: &str) -> Option<LogTail> {
        let opts = LogsOptionsBuilder::new()
            .follow(false)
            .stdout(true)
            .stderr(true)
            .tail(&LogTail::LINES.to_string())
            .build();
        let chunks: Vec<LogOutput> = self.docker.logs(id, Some(opts)).try_collect().await.ok()?;
        let mut text = Vec::new();
        for c in chunks {
            text.extend_from_slice(&c.into_bytes());
        }
        Some(LogTail::of_text(&String::from_utf8_lossy(&text)))
    }
}

/// Log frames are arbitrary chunks: a partial line is kept per stream (stdout, stderr) until its
/// end arrives.
struct Lines<'a> {
    log: &'a LogSink,
    tail: LogTail,
    partial: [Vec<u8>; 2],
}

impl Lines<'_> {
    fn add(&mut self, stream: usize, bytes: &[u8]) {
        self.partial[stream].extend_from_slice(bytes);
        while let Some(pos) = self.partial[stream].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[stream].drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
    }

    fn emit(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string();
        (self.log)(&line);
        self.tail.push(line);
    }

    /// What is left of each stream is a last line without an end.
    fn finish(mut self) -> LogTail {
        for stream in 0..2 {
            let rest = std::mem::take(&mut self.partial[stream]);
            if !rest.is_empty() {
                self.emit(&rest);
            }
        }
        self.tail
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn lines_split_across_frames_and_streams_come_out_whole() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: LogSink = {
            let seen = seen.clone();
            Arc::new(move |l: &str| seen.lock().unwrap().push(l.to_string()))
        };
        let mut lines = Lines {
            log: &sink,
            tail: LogTail::default(),
            partial: [Vec::new(), Vec::new()],
        };
        lines.add(0, b"hel");
        lines.add(1, b"err\r\n");
        lines.add(0, b"lo\nwor");
        lines.add(1, b"last");
        let tail = lines.finish().into_lines();
        assert_eq!(*seen.lock().unwrap(), ["err", "hello", "wor", "last"]);
        assert_eq!(tail, ["err", "hello", "wor", "last"]);
    }
}
