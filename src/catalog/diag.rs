//! Catalog diagnostics: a problem at a file, line and column, rendered like rustc.

use serde::Serialize;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// One catalog file's name and text, kept so that later checks (duplicate ids across
/// files, [`super::Catalog::extend`]) can still quote the offending line.
#[derive(Clone, Debug)]
pub(crate) struct SourceFile {
    pub(crate) name: String,
    pub(crate) text: Arc<str>,
    /// Byte offset of the start of every line, for line numbers in O(log n).
    pub(crate) line_starts: Vec<usize>,
}

impl SourceFile {
    pub(crate) fn new(name: &str, text: &str) -> SourceFile {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            name: name.to_owned(),
            text: text.into(),
            line_starts,
        }
    }

    /// 1-based line of byte offset `at`.
    pub(crate) fn line_of(&self, at: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= at)
            .max(1)
    }
}

/// One problem in a catalog file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// File name as given (`rules/apple.toml` for the built-in catalog).
    pub file: String,
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The entry the problem is in, when known: `requirement "apple.apns.device"`.
    pub entry: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
    /// The source line the position is on, without its line break.
    pub source_line: String,
    /// Width of the caret underline, in characters (at least 1).
    pub width: usize,
}

impl Diagnostic {
    /// A diagnostic for the byte range `span` of `text`.
    pub(crate) fn at(
        file: &str,
        text: &str,
        span: Range<usize>,
        entry: Option<String>,
        message: String,
    ) -> Diagnostic {
        let start = floor_boundary(text, span.start.min(text.len()));
        let end = floor_boundary(text, span.end.clamp(start, text.len()));
        let (line, column) = line_col(text, start);
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let source_line = text[line_start..line_end].trim_end_matches('\r').to_owned();
        let width = text[start..end.min(line_end).max(start)]
            .chars()
            .count()
            .max(1);
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            entry,
            message,
            source_line,
            width,
        }
    }

    /// The first line of the rendering: `file:line:col: message (entry)`.
    pub fn headline(&self) -> String {
        match &self.entry {
            Some(entry) => format!(
                "{}:{}:{}: {} (in {})",
                self.file, self.line, self.column, self.message, entry
            ),
            None => format!(
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            ),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        // Tabs are shown as four spaces so that the carets line up.
        let shown = self.source_line.replace('\t', "    ");
        let lead: usize = self
            .source_line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { 4 } else { 1 })
            .sum();
        writeln!(f, "{gutter} |")?;
        writeln!(f, "{number} | {shown}")?;
        write!(
            f,
            "{gutter} | {}{}",
            " ".repeat(lead),
            "^".repeat(self.width.max(1))
        )
    }
}

/// Every problem found while loading a catalog: all errors of every file, not only
/// the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CatalogError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_diagnostics(f, &self.diagnostics, "the catalog")
    }
}

/// Diagnostics one after another, then the count when there are several
/// (`N errors in WHERE`). Shared by catalog and site-file errors.
pub(crate) fn write_diagnostics(
    f: &mut fmt::Formatter<'_>,
    diagnostics: &[Diagnostic],
    place: &str,
) -> fmt::Result {
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            f.write_str("\n\n")?;
        }
        write!(f, "{d}")?;
    }
    if diagnostics.len() > 1 {
        write!(f, "\n\n{} errors in {place}", diagnostics.len())?;
    }
    Ok(())
}

impl std::error::Error for CatalogError {}

/// 1-based line and character column of byte offset `at` in `text`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = floor_boundary(text, at.min(text.len()));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let prefix = word.len() >= 3 && (c.starts_with(word) || word.starts_with(c));
        let d = if prefix { 1 } else { edit_distance(word, c) };
        let better = match best {
            Some((bd, _)) => d < bd,
            None => true,
        };
        if d <= 2.max(word.len() / 4) && better {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "ab\ncé d\n";
        let file = SourceFile::new("t", text);
        for at in 0..=text.len() {
            assert_eq!(file.line_of(at), line_col(text, at).0, "offset {at}");
        }
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        // 'é' is two bytes: byte 6 is the space after it, column 3.
        assert_eq!(line_col(text, 6), (2, 3));
        assert_eq!(line_col(text, text.len()), (3, 1));
    }

    #[test]
    fn renders_like_rustc() {
        let text = "a = 1\nports = [\"70000\"]\n";
        let d = Diagnostic::at(
            "x.toml",
            text,
            15..22,
            Some("requirement \"a.b\"".into()),
            "bad port".into(),
        );
        assert_eq!(
            d.to_string(),
            "x.toml:2:10: bad port (in requirement \"a.b\")\n  |\n2 | ports = [\"70000\"]\n  |          ^^^^^^^"
        );
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(suggest("prots", ["ports", "hosts"]), Some("ports"));
        assert_eq!(suggest("zzzzz", ["ports", "hosts"]), None);
    }
}
