//! Diagnostics with file, line and column, rendered `FILE:LINE:COL: error: …`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::Serialize;

/// A manifest's text and the name it is shown under, with its line starts
/// precomputed so a byte offset turns into a line and a column.
#[derive(Debug, Clone)]
pub struct Source {
    name: Arc<str>,
    text: Arc<str>,
    line_starts: Vec<usize>,
}

impl Source {
    /// Wraps a manifest's text; `name` is how diagnostics name the file.
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> Source {
        let text: Arc<str> = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The name diagnostics use for the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared.
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line_idx).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (to_u32(line_idx + 1), to_u32(col + 1))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifest is unusable until this is fixed.
    Error,
    /// The manifest works, but probably not as meant (e.g. a shadowed rule).
    Warning,
}

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
    /// What is wrong, lowercase, naming the key or value.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Collects diagnostics against one source.
#[derive(Debug)]
pub(crate) struct Sink<'s> {
    pub(crate) source: &'s Source,
    pub(crate) items: Vec<(Range<usize>, Severity, String)>,
}

impl<'s> Sink<'s> {
    pub(crate) fn new(source: &'s Source) -> Sink<'s> {
        Sink {
            source,
            items: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.items.push((span, Severity::Error, msg.into()));
    }

    pub(crate) fn warn(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.items.push((span, Severity::Warning, msg.into()));
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.items.iter().any(|(_, s, _)| *s == Severity::Error)
    }

    /// The diagnostics in file order (errors before warnings at one place).
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|a| (a.0.start, a.1));
        self.items
            .dedup_by(|a, b| a.0.start == b.0.start && a.2 == b.2);
        self.items
            .into_iter()
            .map(|(span, severity, message)| {
                let (line, col) = self.source.line_col(span.start);
                Diagnostic {
                    severity,
                    file: self.source.name().to_owned(),
                    line,
                    col,
                    message,
                }
            })
            .collect()
    }
}

/// The closest of `candidates` to `got`, when it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(got, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
