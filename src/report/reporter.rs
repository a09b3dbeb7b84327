//! Plain progress lines (`Build: [1/6] Starting generate-go`), one writer shared by all tasks.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::secs;

/// Prints a build's progress; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Mutex<Inner>>,
    /// The prefix of every line: `Build` or `Parallel`, as the seed names its modes.
    mode: &'static str,
    verbose: bool,
    started: Instant,
}

struct Inner {
    out: Box<dyn Write + Send>,
}

impl Reporter {
    pub fn new(mode: &'static str, verbose: bool) -> Self {
        Self::with_writer(mode, verbose, Box::new(std::io::stdout()))
    }

    pub fn with_writer(mode: &'static str, verbose: bool, out: Box<dyn Write + Send>) -> Self {
        Reporter {
            inner: Arc::new(Mutex::new(Inner { out })),
            mode,
            verbose,
            started: Instant::now(),
        }
    }

    pub fn mode(&self) -> &'static str {
        self.mode
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn line(&self, text: &str) {
        let mut inner = self.inner.lock().expect("reporter lock");
        let _ = writeln!(inner.out, "{text}");
        let _ = inner.out.flush();
    }

    pub fn start(&self, tasks: usize, concurrency: usize) {
        self.line(&format!(
            "{}: Starting build with {tasks} tasks (max concurrency: {concurrency})",
            self.mode
        ));
    }

    pub fn task_started(&self, index: usize, total: usize, task: &str) {
        self.line(&format!("{}: [{index}/{total}] Starting {task}", self.mode));
    }

    pub fn task_completed(&self, index: usize, total: usize, task: &str, took: Duration) {
        self.line(&format!(
            "{}: [{index}/{total}] Completed {task} ({}, total elapsed: {})",
            self.mode,
            secs(took),
            secs(self.elapsed())
        ));
    }

    /// A task the cache answered: up to date in the workspace, or restored from the cache.
    pub fn task_cached(
        &self,
        index: usize,
        total: usize,
        task: &str,
        restored: bool,
        took: Duration,
    ) {
        let what = if restored { "Restored" } else { "Up to date" };
        self.line(&format!(
            "{}: [{index}/{total}] {what} {task} (cache hit, {}, total elapsed: {})",
            self.mode,
            secs(took),
            secs(self.elapsed())
        ));
    }

    pub fn task_failed(&self, index: usize, total: usize, task: &str, took: Duration) {
        self.line(&format!(
            "{}: [{index}/{total}] Failed {task} ({}, total elapsed: {})",
            self.mode,
            secs(took),
            secs(self.elapsed())
        ));
    }

    pub fn finished(&self, task_time: Duration) {
        let wall = self.elapsed();
        self.line(&format!("{}: Build completed in {}", self.mode, secs(wall)));
        let efficiency = if wall.is_zero() {
            100.0
        } else {
            task_time.as_secs_f64() / wall.as_secs_f64() * 100.0
        };
        self.line(&format!(
            "{}: Parallel efficiency: {efficiency:.1}% ({} total task time)",
            self.mode,
            secs(task_time)
        ));
    }

    /// A line of a task's log: shown with `-v` only (failures show their tail anyway).
    pub fn log(&self, task: &str, line: &str) {
        if self.verbose {
            self.line(&format!("{task}| {line}"));
        }
    }

    pub fn warn(&self, text: &str) {
        eprintln!("warning: {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_follow_the_seed() {
        let buf = Buf::default();
        let r = Reporter::with_writer("Parallel", false, Box::new(buf.clone()));
        r.start(6, 4);
        r.task_started(1, 6, "generate-go");
        r.log("generate-go", "hidden without -v");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "Parallel: Starting build with 6 tasks (max concurrency: 4)\nParallel: [1/6] Starting generate-go\n"
        );
    }
}
