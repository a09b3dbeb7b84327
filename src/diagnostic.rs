//! Where a configuration came from, and how byte offsets in it read as `file:line:column`.
//!
//! A leaf: it imports nothing from the crate, so that both `config` (which makes diagnostics) and
//! `error` (which carries them) can use it without importing each other. `config` re-exports it.

use std::fmt;
use std::ops::Range;

/// The text of a configuration and the name it is reported under.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// A diagnostic at `span`, with the line it points into.
    pub fn diagnostic(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        let (line, column, excerpt) = match span {
            Some(span) => {
                let start = span.start.min(self.text.len());
                let before = &self.text[..start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let column = self.text[line_start..start].chars().count() + 1;
                let line_end = self.text[line_start..]
                    .find('\n')
                    .map_or(self.text.len(), |i| line_start + i);
                (
                    line,
                    column,
                    Some(self.text[line_start..line_end].to_string()),
                )
            }
            None => (1, 1, None),
        };
        Diagnostic {
            file: self.name.clone(),
            line,
            column,
            message: message.into(),
            excerpt,
            warning: false,
        }
    }
}

/// One problem found in a configuration, located at `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub excerpt: Option<String>,
    pub warning: bool,
}

impl Diagnostic {
    pub fn as_warning(mut self) -> Self {
        self.warning = true;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.warning { "warning" } else { "error" };
        write!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(excerpt) = &self.excerpt {
            let gutter = self.line.to_string().len();
            write!(f, "\n{:gutter$} |\n{} | {excerpt}", "", self.line)?;
            let pad: String = excerpt
                .chars()
                .take(self.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{:gutter$} | {pad}^", "")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let src = Source::new("f.toml", "[a]\nkey = 1\n");
        let d = src.diagnostic(Some(10..11), "bad");
        assert_eq!((d.line, d.column), (2, 7));
        assert_eq!(d.excerpt.as_deref(), Some("key = 1"));
        assert_eq!(
            d.to_string(),
            "f.toml:2:7: error: bad\n  |\n2 | key = 1\n  |       ^"
        );
    }
}
