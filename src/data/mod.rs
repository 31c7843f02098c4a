//! Parsing and validation of uploaded training data, label vocabularies and splits.
//!
//! What it does:
//! - [`parse`] reads a CSV, TSV or JSONL upload (docs/design.md §3 "Formats") into [`Example`]s. Every row that
//!   cannot be used becomes a [`RejectedRow`] with its 1-based line number and a reason; a file that
//!   cannot be used at all (empty, too large, not UTF-8, no text/label column, no usable row) is a
//!   [`DataError`] whose message says what is wrong.
//! - [`LabelVocab`] fixes the order of the label names (sorted), [`validate_for_training`] checks that a
//!   data set can train a classifier (at least one example, at least two classes).
//! - [`stratified_subset`], [`per_class_subset`] and [`stratified_split`] draw deterministic,
//!   class-stratified subsets and train/holdout splits from a seed (no `rand`: a small FNV-1a + splitmix64 hash orders the rows;
//!   [`rng`] holds splitmix64).
//! - [`normalise_for_overlap`] and [`remove_overlap`] implement the train/test de-duplication of docs/design.md §1.5.
//!
//! - Before parsing, [`sniff`] refuses a known binary format given as text (an `.xlsx`, a PDF, a zip:
//!   named in the error), decodes UTF-8 (with or without a byte-order mark) or UTF-16 with a mark,
//!   and guesses a CSV's delimiter (`,` `;` tab `|`; [`ParseOptions::delimiter`] overrides it). A
//!   file without a header row is read with [`ParseOptions::header`] `false`.
//!
//! What it leaves out: tokenisation and batching into tensors (see `model`), reading files from disk or
//! IndexedDB (callers hand in bytes, so the module is the same natively and on wasm32), reading
//! spreadsheet formats (xlsx is refused by name) and JSON arrays (a `.json` upload is read as JSON
//! Lines), 8-bit encodings (Windows-1252 is refused as invalid UTF-8), and de-duplication of
//! repeated rows inside one upload.

pub mod holdout;
mod labels;
mod parse;
pub mod rng;
mod sniff;
mod split;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use labels::{LabelVocab, class_counts, validate_for_training};
pub use sniff::Encoding;
pub use split::{
    normalise_for_overlap, per_class_subset, remove_overlap, stratified_split, stratified_subset,
};

/// The file formats an upload can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// Comma-separated values with a header row, RFC 4180 quoting.
    Csv,
    /// Tab-separated values with a header row (`"` quoting as in CSV).
    Tsv,
    /// JSON Lines: one object per line, e.g. `{"text": "…", "label": "…"}`.
    Jsonl,
}

impl Format {
    /// Guesses the format of an upload.
    ///
    /// The file extension decides when it is known (`.csv`, `.tsv`, `.jsonl`, `.json`, `.ndjson`, any
    /// case). Otherwise the content is sniffed: a first non-space byte `{` means JSONL, a tab in the first
    /// line means TSV, anything else is read as CSV.
    pub fn detect(file_name: &str, bytes: &[u8]) -> Format {
        let extension = file_name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase());
        match extension.as_deref() {
            Some("csv") => return Format::Csv,
            Some("tsv") => return Format::Tsv,
            Some("jsonl" | "json" | "ndjson") => return Format::Jsonl,
            _ => {}
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return Format::Jsonl;
        }
        let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        if first_line.contains(&b'\t') {
            Format::Tsv
        } else {
            Format::Csv
        }
    }
}

/// How to read an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParseOptions {
    /// The format, or `None` to detect it with [`Format::detect`].
    pub format: Option<Format>,
    /// Header name (CSV/TSV) or key (JSONL) of the text. Default `"text"`.
    pub text_column: String,
    /// Header name (CSV/TSV) or key (JSONL) of the label. Default `"label"`.
    pub label_column: String,
    /// Largest accepted file size in bytes. Default [`crate::limits::MAX_DATA_BYTES`] (128 MiB).
    pub max_bytes: usize,
    /// Longest accepted text, in characters; longer rows are rejected. Default 10 000.
    pub max_text_chars: usize,
    /// The field delimiter of a CSV file (an ASCII character), or `None` to guess it from the first
    /// lines (`,` `;` tab or `|`). A TSV file's default is tab. Default `None`.
    pub delimiter: Option<char>,
    /// Whether the first row of a CSV/TSV file names the columns. When `false` every row is data,
    /// the columns are called `column 1`, `column 2`, …, and the text and label are the columns
    /// that `text_column` / `label_column` number (`"2"` or `"column 2"`), else the first and the
    /// second. Default `true`.
    pub header: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            format: None,
            text_column: "text".to_owned(),
            label_column: "label".to_owned(),
            max_bytes: crate::limits::MAX_DATA_BYTES,
            max_text_chars: 10_000,
            delimiter: None,
            header: true,
        }
    }
}

/// One labelled text (both trimmed, neither empty when it comes from [`parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Example {
    /// The text to classify.
    pub text: String,
    /// Its class name.
    pub label: String,
}

/// A row of an upload that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// 1-based line number in the file where the row starts.
    pub line: usize,
    /// Human-readable reason.
    pub reason: String,
}

/// The result of parsing an upload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ParsedDataset {
    /// The usable rows, in file order.
    pub examples: Vec<Example>,
    /// The rows that were left out, in file order.
    pub rejected: Vec<RejectedRow>,
    /// The header names (CSV/TSV) or the JSON keys seen (JSONL, in order of first appearance).
    pub columns: Vec<String>,
    /// How the file was read.
    pub reading: Reading,
}

/// How an upload was read: what was detected or chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reading {
    /// The format.
    pub format: Option<Format>,
    /// The text encoding.
    pub encoding: Encoding,
    /// The field delimiter (CSV/TSV).
    pub delimiter: Option<char>,
    /// Whether the first row was read as column names (CSV/TSV).
    pub header: bool,
}

impl Reading {
    /// In words, e.g. `CSV, ';'-separated, UTF-8 with BOM, header row`.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            match self.format {
                Some(Format::Csv) => "CSV",
                Some(Format::Tsv) => "TSV",
                Some(Format::Jsonl) => "JSON Lines",
                None => "unknown format",
            }
            .to_string(),
        ];
        if let Some(d) = self.delimiter {
            parts.push(match d {
                '\t' => "tab-separated".to_string(),
                d => format!("'{d}'-separated"),
            });
        }
        parts.push(self.encoding.name().to_string());
        if self.format != Some(Format::Jsonl) {
            parts.push(
                if self.header {
                    "header row"
                } else {
                    "no header row"
                }
                .to_string(),
            );
        }
        parts.join(", ")
    }
}

/// Why an upload (or a data set) cannot be used as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DataError {
    /// The file is empty or holds only whitespace.
    #[error("the file is empty")]
    Empty,
    /// The file is larger than [`ParseOptions::max_bytes`].
    #[error("the file is {bytes} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Size of the upload.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The file is not valid UTF-8.
    #[error(
        "the file is not valid UTF-8 (first invalid byte on line {line}, byte offset {byte_offset}); save it as UTF-8 and upload it again"
    )]
    InvalidUtf8 {
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 0-based byte offset of the first invalid byte.
        byte_offset: usize,
    },
    /// The file is a known binary format (a spreadsheet, a PDF, an archive), not text.
    #[error("the file is {kind}, not a CSV, TSV or JSON Lines text file")]
    NotText {
        /// What the file's signature says it is.
        kind: &'static str,
    },
    /// The decoded text holds a NUL character: a binary file, or UTF-16 without a byte-order mark.
    #[error(
        "the file holds a NUL byte (byte offset {byte_offset}): it is binary, or UTF-16 without a byte-order mark; save it as UTF-8 and upload it again"
    )]
    NulBytes {
        /// 0-based byte offset of the first NUL.
        byte_offset: usize,
    },
    /// A UTF-16 file (with a byte-order mark) holds an invalid code unit sequence.
    #[error(
        "the file starts with a {encoding} byte-order mark but is not valid {encoding} (byte offset {byte_offset}); save it as UTF-8 and upload it again"
    )]
    InvalidUtf16 {
        /// `UTF-16 LE` or `UTF-16 BE`.
        encoding: &'static str,
        /// 0-based byte offset of the problem.
        byte_offset: usize,
    },
    /// The chosen delimiter is not a single ASCII character other than a quote or a line break.
    #[error(
        "the delimiter {delimiter:?} cannot be used; choose one ASCII character such as , ; | or tab"
    )]
    BadDelimiter {
        /// The delimiter asked for.
        delimiter: char,
    },
    /// The first row of a CSV/TSV file names no columns.
    #[error(
        "the first row has no column names; the file needs a header row naming the text and label columns"
    )]
    NoHeader,
    /// The text or label column is not in the header (CSV/TSV) or in any object (JSONL).
    #[error(
        "there is no column named `{column}`; the columns are: {}. The first row must be a header naming the text and label columns, or, if the first row is data, read the file without a header row",
        describe_columns(.available)
    )]
    MissingColumn {
        /// The column that was asked for.
        column: String,
        /// The columns the file has.
        available: Vec<String>,
    },
    /// The file was understood but none of its rows can be used.
    #[error("{}", describe_no_rows(*.rejected, .first_reasons))]
    NoUsableRows {
        /// How many rows were rejected.
        rejected: usize,
        /// The first few reasons, as `line N: reason`.
        first_reasons: Vec<String>,
    },
    /// Every example has the same label, so there is nothing to tell apart.
    #[error(
        "every example has the label `{label}`; a classifier needs examples of at least two classes"
    )]
    OneClass {
        /// The only label.
        label: String,
    },
    /// More classes than a task may have.
    #[error(
        "the data has {classes} different labels, more than the limit of {max}; is the label column the right one?"
    )]
    TooManyClasses {
        /// Distinct labels in the data.
        classes: usize,
        /// The limit.
        max: usize,
    },
    /// The CSV reader failed on the header row.
    #[error("line {line}: cannot read the file: {message}")]
    Malformed {
        /// 1-based line of the problem.
        line: usize,
        /// The reader's message.
        message: String,
    },
}

/// How many rejection reasons [`DataError::NoUsableRows`] carries.
const MAX_REASONS: usize = 5;

fn describe_columns(columns: &[String]) -> String {
    if columns.is_empty() {
        return "(none)".to_owned();
    }
    let quoted: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
    quoted.join(", ")
}

fn describe_no_rows(rejected: usize, first_reasons: &[String]) -> String {
    if rejected == 0 {
        return "the file has no data rows".to_owned();
    }
    let more = if rejected > first_reasons.len() {
        "; …"
    } else {
        ""
    };
    format!(
        "no usable rows: all {rejected} rows were rejected ({}{more})",
        first_reasons.join("; ")
    )
}

/// Parses an upload into examples, rejected rows and column names.
///
/// `file_name` is used only to detect the format when `opts.format` is `None`. Texts and labels are
/// trimmed. Rows with the wrong number of fields, an empty text or label, a text longer than
/// `opts.max_text_chars`, or (JSONL) invalid JSON, a non-object, a missing key or a label that is not a
/// string, number or boolean are rejected with their line number; blank JSONL lines are skipped. The
/// whole file fails when it is empty, too large, a binary format, not UTF-8 or UTF-16 with a
/// byte-order mark, lacks the text or label column, or has no usable row.
pub fn parse(
    bytes: &[u8],
    file_name: &str,
    opts: &ParseOptions,
) -> Result<ParsedDataset, DataError> {
    parse_with_progress(bytes, file_name, opts, &mut |_| {})
}

/// [`parse`], calling `progress` with the fraction of the text read (0 to 1) about every
/// [`PROGRESS_EVERY`] bytes, for uploads large enough to need a progress bar.
pub fn parse_with_progress(
    bytes: &[u8],
    file_name: &str,
    opts: &ParseOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<ParsedDataset, DataError> {
    if bytes.len() > opts.max_bytes {
        return Err(DataError::TooLarge {
            bytes: bytes.len(),
            max: opts.max_bytes,
        });
    }
    if let Some(kind) = sniff::binary_kind(bytes) {
        return Err(DataError::NotText { kind });
    }
    let (text, encoding) = sniff::decode(bytes)?;
    if text.trim().is_empty() {
        return Err(DataError::Empty);
    }
    let format = opts
        .format
        .unwrap_or_else(|| Format::detect(file_name, text.as_bytes()));
    let delimiter = match (format, opts.delimiter) {
        (Format::Jsonl, _) => None,
        (_, Some(d)) if d.is_ascii() && !matches!(d, '"' | '\n' | '\r') => Some(d as u8),
        (_, Some(d)) => return Err(DataError::BadDelimiter { delimiter: d }),
        (Format::Tsv, None) => Some(b'\t'),
        (Format::Csv, None) => Some(sniff::delimiter(&text)),
    };
    let total = text.len().max(1) as f64;
    let mut at = |done: usize| progress(done as f64 / total);
    let mut parsed = match delimiter {
        Some(d) => parse::parse_delimited(&text, d, opts, &mut at)?,
        None => parse::parse_jsonl(&text, opts, &mut at)?,
    };
    progress(1.0);
    parsed.reading = Reading {
        format: Some(format),
        encoding,
        delimiter: delimiter.map(char::from),
        header: opts.header || format == Format::Jsonl,
    };
    if parsed.examples.is_empty() {
        return Err(DataError::NoUsableRows {
            rejected: parsed.rejected.len(),
            first_reasons: parsed
                .rejected
                .iter()
                .take(MAX_REASONS)
                .map(|r| format!("line {}: {}", r.line, r.reason))
                .collect(),
        });
    }
    Ok(parsed)
}

/// How often (in bytes of text) [`parse_with_progress`] reports.
pub const PROGRESS_EVERY: usize = 1 << 20;

#[cfg(test)]
mod tests;
