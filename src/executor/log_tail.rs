//! The last lines of a task's log, which a failed task shows.

use std::collections::VecDeque;

/// Keeps the last [`LogTail::LINES`] lines pushed to it.
#[derive(Debug, Default, Clone)]
pub(crate) struct LogTail {
    lines: VecDeque<String>,
}

impl LogTail {
    /// How many log lines a failed task shows.
    pub(crate) const LINES: usize = 50;

    pub(crate) fn push(&mut self, line: String) {
        if self.lines.len() == Self::LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The last lines of `text` (a stored log), without their line ends.
    pub(crate) fn of_text(text: &str) -> LogTail {
        let mut tail = LogTail::default();
        for line in text.lines() {
            tail.push(line.trim_end_matches('\r').to_string());
        }
        tail
    }

    pub(crate) fn into_lines(self) -> Vec<String> {
        self.lines.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_lines() {
        let mut tail = LogTail::default();
        for i in 0..LogTail::LINES + 7 {
            tail.push(i.to_string());
        }
        let lines = tail.into_lines();
        assert_eq!(lines.len(), LogTail::LINES);
        assert_eq!(lines[0], "7");
        assert_eq!(lines.last().unwrap(), &(LogTail::LINES + 6).to_string());
    }

    #[test]
    fn a_stored_log_loses_its_carriage_returns() {
        assert_eq!(LogTail::of_text("a\r\nb\n").into_lines(), ["a", "b"]);
    }
}
