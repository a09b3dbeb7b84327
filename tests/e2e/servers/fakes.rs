//! Fake servers for fault tests, on std threads: `Silent` accepts connections and never answers;
//! `Flaky` answers every HTTP request with one status. Both count what they see and stop on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A listener whose accept loop runs `serve` per connection until dropped.
struct Listener {
    port: u16,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(mut serve: impl FnMut(TcpStream) + Send + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (stop2, count2) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    count2.fetch_add(1, Ordering::SeqCst);
                    serve(conn);
                }
            }
        });
        Listener {
            port,
            stop,
            count,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections and holds them open without a byte: a server that hangs.
pub(crate) struct Silent {
    listener: Listener,
}

impl Silent {
    pub(crate) fn start() -> Silent {
        let mut held = Vec::new();
        // The accept thread owns the sockets; they close when it ends, on drop.
        let listener = Listener::start(move |conn| held.push(conn));
        Silent { listener }
    }

    pub(crate) fn url_grpc(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.listener.port)
    }

    pub(crate) fn url_http(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.listener.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.listener.port
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.listener.count.load(Ordering::SeqCst)
    }
}

/// Answers every HTTP request with `status` (and closes the connection).
pub(crate) struct Flaky {
    listener: Listener,
    requests: Arc<AtomicUsize>,
}

impl Flaky {
    pub(crate) fn start(status: u16) -> Flaky {
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        let listener = Listener::start(move |mut conn| {
            let seen = seen.clone();
            // A thread per connection: a slow upload does not hold up the others.
            std::thread::spawn(move || {
                // Counted before the answer, so a client that has it sees the count.
                if read_request(&mut conn).is_ok() {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let _ = answer(conn, status);
                }
            });
        });
        Flaky { listener, requests }
    }

    /// `http://127.0.0.1:PORT/cache`.
    pub(crate) fn url_http(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.listener.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.listener.port
    }

    /// Requests read so far (each gets the status).
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The answer, with the connection closed after it.
fn answer(mut conn: TcpStream, status: u16) -> std::io::Result<()> {
    let reason = match status {
        401 => "Unauthorized\r\nWWW-Authenticate: Basic realm=\"cache\"",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let body = format!("fake server: {status}\n");
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes())
}

/// Reads one request to its end (so the client sees the answer, not a reset): a Content-Length
/// body, or a chunked one to its last chunk. A client that expects 100-continue gets the final
/// answer instead and sends no body.
fn read_request(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut seen = Vec::new();
    let mut head: Option<(usize, String)> = None;
    let mut buf = [0u8; 64 * 1024];
    loop {
        if let Some((end, h)) = &head {
            let body = seen.len() - end - 4;
            let chunked = h.contains("transfer-encoding: chunked");
            let done = if chunked {
                seen.ends_with(b"0\r\n\r\n")
            } else {
                body >= content_length(h)
            };
            if done || h.contains("expect: 100-continue") {
                return Ok(());
            }
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        if head.is_none()
            && let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n")
        {
            head = Some((
                end,
                String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase(),
            ));
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
