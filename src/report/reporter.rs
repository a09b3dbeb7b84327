//! Progress in the seed's form (`Parallel: [1/6] Starting generate-go`), as plain lines or, on a
//! terminal, above a live view with a line per running task. One reporter is shared by all tasks.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::secs;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Progress {
    /// A live view on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines only.
    Plain,
    /// The live view, even when stdout is not a terminal.
    Tty,
}

/// Prints a build's progress; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Mutex<Inner>>,
    /// The prefix of every line: `Build`, `Incremental` or `Parallel`.
    mode: &'static str,
    verbose: bool,
    started: Instant,
    live: Option<MultiProgress>,
}

struct Inner {
    out: Box<dyn Write + Send>,
    bars: HashMap<String, ProgressBar>,
}

impl Reporter {
    /// A reporter whose lines go to `out` (stdout normally; stderr when stdout carries --json).
    pub fn with_writer(mode: &'static str, verbose: bool, out: Box<dyn Write + Send>) -> Self {
        Reporter {
            inner: Arc::new(Mutex::new(Inner {
                out,
                bars: HashMap::new(),
            })),
            mode,
            verbose,
            started: Instant::now(),
            live: None,
        }
    }

    /// Switches to the live view when `progress` asks for it (and, for `auto`, stdout is a
    /// terminal).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        use std::io::IsTerminal;
        let live = match progress {
            Progress::Plain => false,
            Progress::Tty => true,
            Progress::Auto => std::io::stdout().is_terminal(),
        };
        if live {
            self.live = Some(MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        }
        self
    }

    pub fn mode(&self) -> &'static str {
        self.mode
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn line(&self, text: &str) {
        let mut inner = self.inner.lock().expect("reporter lock");
        if let Some(live) = self.live.as_ref().filter(|l| !l.is_hidden()) {
            let _ = live.println(text);
        } else {
            let _ = writeln!(inner.out, "{text}");
            let _ = inner.out.flush();
        }
    }

    pub fn start(&self, tasks: usize, concurrency: usize) {
        self.line(&format!(
            "{}: Starting build with {tasks} tasks (max concurrency: {concurrency})",
            self.mode
        ));
    }

    pub fn task_started(&self, index: usize, total: usize, task: &str) {
        self.line(&format!("{}: [{index}/{total}] Starting {task}", self.mode));
        if let Some(live) = &self.live {
            let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let template = if color {
                "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {wide_msg:.dim}"
            } else {
                "{spinner} {prefix} {elapsed:>4} {wide_msg}"
            };
            let bar = live.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
            bar.set_prefix(format!("{task:<16}"));
            bar.enable_steady_tick(Duration::from_millis(120));
            self.inner
                .lock()
                .expect("reporter lock")
                .bars
                .insert(task.to_string(), bar);
        }
    }

    fn end_bar(&self, task: &str) {
        if let Some(bar) = self.inner.lock().expect("reporter lock").bars.remove(task) {
            bar.finish_and_clear();
            if let Some(live) = &self.live {
                live.remove(&bar);
            }
        }
    }

    /// A task that ran; `worker` names the remote worker that ran it, when one did.
    pub fn task_completed(
        &self,
        index: usize,
        total: usize,
        task: &str,
        took: Duration,
        worker: Option<&str>,
    ) {
        self.end_bar(task);
        let on = worker.map(|w| format!(" on {w}")).unwrap_or_default();
        self.line(&format!(
            "{}: [{index}/{total}] Completed {task}{on} ({}, total elapsed: {})",
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
        self.end_bar(task);
        self.line(&format!(
            "{}: [{index}/{total}] Failed {task} ({}, total elapsed: {})",
            self.mode,
            secs(took),
            secs(self.elapsed())
        ));
    }

    /// A task stopped because another failed, or because of Ctrl-C.
    pub fn task_cancelled(&self, task: &str) {
        self.end_bar(task);
    }

    /// The end of a successful build: its time, and `efficiency` (see
    /// [`super::efficiency`]) with the tasks' time added up.
    pub fn finished(&self, task_time: Duration, efficiency: f64) {
        let wall = self.elapsed();
        self.line(&format!("{}: Build completed in {}", self.mode, secs(wall)));
        self.line(&format!(
            "{}: Parallel efficiency: {efficiency:.1}% ({} total task time)",
            self.mode,
            secs(task_time)
        ));
    }

    /// A line of a task's log: streamed with `-v`; on the live view it becomes the task's
    /// latest line. Failures show their tail anyway.
    pub fn log(&self, task: &str, line: &str) {
        if self.verbose {
            self.line(&format!("{task}| {line}"));
        }
        if self.live.is_some()
            && let Some(bar) = self.inner.lock().expect("reporter lock").bars.get(task)
        {
            bar.set_message(line.to_string());
        }
    }

    pub fn warn(&self, text: &str) {
        if let Some(live) = &self.live {
            live.suspend(|| eprintln!("warning: {text}"));
        } else {
            eprintln!("warning: {text}");
        }
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
