//! Diagnostics: an error with a byte span in a named source, turned into `file:line:col`.
//!
//! Every stage of the jobspec (syntax, variables, lowering, canonicalize, validation) reports
//! through [`Diag`]s with byte offsets; [`Sources`] turns them into [`Diagnostic`]s (1-based
//! line and column, columns counted in characters) once, at the end, in source order.

use super::Diagnostic;
use std::ops::Range;

/// An error found at a byte range of one source (the jobspec or a var file).
#[derive(Clone, Debug)]
pub(crate) struct Diag {
    /// Index into [`Sources`]; 0 is the jobspec.
    pub source: usize,
    pub span: Range<usize>,
    pub message: String,
}

impl Diag {
    pub fn new(source: usize, span: Range<usize>, message: impl Into<String>) -> Diag {
        Diag { source, span, message: message.into() }
    }
}

/// The texts diagnostics point into, by index.
#[derive(Default)]
pub(crate) struct Sources {
    files: Vec<(String, String)>,
}

impl Sources {
    pub fn add(&mut self, name: &str, text: &str) -> usize {
        self.files.push((name.to_owned(), text.to_owned()));
        self.files.len() - 1
    }

    /// Resolves diagnostics to line and column, sorted by file, then position, then text.
    pub fn resolve(&self, diags: &[Diag]) -> Vec<Diagnostic> {
        let mut keyed: Vec<(usize, usize, Diagnostic)> = diags
            .iter()
            .map(|d| {
                let (file, text) = self.files.get(d.source).map_or(("", ""), |(n, t)| (n, t));
                let (line, column) = line_col(text, d.span.start);
                let diagnostic =
                    Diagnostic { file: file.to_owned(), line, column, message: d.message.clone() };
                (d.source, d.span.start, diagnostic)
            })
            .collect();
        keyed.sort_by(|a, b| (a.0, a.1, &a.2.message).cmp(&(b.0, b.1, &b.2.message)));
        keyed.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
        keyed.into_iter().map(|(_, _, d)| d).collect()
    }
}

/// 1-based line and column (in characters) of a byte offset; offsets past the end or inside
/// a character clamp to the nearest valid position before them.
pub fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
}

/// Byte offset of a 1-based line and column, as parser errors report them.
pub(crate) fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let line_text = &text[start..];
    let line_end = line_text.find('\n').unwrap_or(line_text.len());
    let byte = line_text[..line_end]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line_end, |(i, _)| i);
    start + byte
}

/// The valid name closest to `name` (Levenshtein distance at most a third of its length,
/// and at least 1), for "did you mean" hints.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit && *d < name.chars().count())
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Edit distance counting an adjacent transposition as one edit (optimal string
/// alignment), so "cuont" is one step from "count".
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let text = "ab\nçd\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 5), (2, 2));
        assert_eq!(offset_of(text, 2, 2), 5);
    }

    #[test]
    fn suggestions_are_close() {
        assert_eq!(suggest("cout", ["count", "constraint"]), Some("count"));
        assert_eq!(suggest("zzzzzz", ["count"]), None);
        assert_eq!(suggest("cuont", ["count"]), Some("count"));
    }
}
