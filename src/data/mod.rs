//! Parsing and validation of uploaded training data, label vocabularies and splits.
//!
//! What it does:
//! - [`parse`] reads a CSV, TSV or JSONL upload (docs/design.md §3 "Formats") into [`Example`]s. Every row that
//!   cannot be used becomes a [`RejectedRow`] with its 1-based line number and a reason; a file that
//!   cannot be used at all (empty, too large, not UTF-8, no text/label column, no usable row) is a
//!   [`DataError`] whose message says what is wrong.
//! - [`LabelVocab`] fixes the order of the label names (sorted), [`validate_for_training`] checks that a
//!   data set can train a classifier (at least one example, at least two classes).
//! - [`stratified_subset`] and [`stratified_split`] draw deterministic, class-stratified subsets and
//!   train/holdout splits from a seed (no `rand`: a small FNV-1a + splitmix64 hash orders the rows;
//!   [`rng`] holds splitmix64).
//! - [`normalise_for_overlap`] and [`remove_overlap`] implement the train/test de-duplication of docs/design.md §1.5.
//!
//! What it leaves out: tokenisation and batching into tensors (see `model`), reading files from disk or
//! IndexedDB (callers hand in bytes, so the module is the same natively and on wasm32), spreadsheet
//! formats (xlsx) and JSON arrays (a `.json` upload is read as JSON Lines), encodings other than UTF-8,
//! and de-duplication of repeated rows inside one upload.

pub mod holdout;
mod labels;
mod parse;
pub mod rng;
mod split;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use labels::{LabelVocab, class_counts, validate_for_training};
pub use split::{normalise_for_overlap, remove_overlap, stratified_split, stratified_subset};

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
        let bytes = strip_bom(bytes);
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
    /// Largest accepted file size in bytes. Default 50 MiB.
    pub max_bytes: usize,
    /// Longest accepted text, in characters; longer rows are rejected. Default 10 000.
    pub max_text_chars: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            format: None,
            text_column: "text".to_owned(),
            label_column: "label".to_owned(),
            max_bytes: 50 * 1024 * 1024,
            max_text_chars: 10_000,
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
    /// The first row of a CSV/TSV file names no columns.
    #[error(
        "the first row has no column names; the file needs a header row naming the text and label columns"
    )]
    NoHeader,
    /// The text or label column is not in the header (CSV/TSV) or in any object (JSONL).
    #[error(
        "there is no column named `{column}`; the columns are: {}. The first row must be a header naming the text and label columns",
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

/// Strips a UTF-8 byte-order mark, as spreadsheet programs write one.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Parses an upload into examples, rejected rows and column names.
///
/// `file_name` is used only to detect the format when `opts.format` is `None`. Texts and labels are
/// trimmed. Rows with the wrong number of fields, an empty text or label, a text longer than
/// `opts.max_text_chars`, or (JSONL) invalid JSON, a non-object, a missing key or a label that is not a
/// string, number or boolean are rejected with their line number; blank JSONL lines are skipped. The
/// whole file fails when it is empty, too large, not UTF-8, lacks the text or label column, or has no
/// usable row.
pub fn parse(
    bytes: &[u8],
    file_name: &str,
    opts: &ParseOptions,
) -> Result<ParsedDataset, DataError> {
    if bytes.len() > opts.max_bytes {
        return Err(DataError::TooLarge {
            bytes: bytes.len(),
            max: opts.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let byte_offset = e.valid_up_to();
        let line = 1 + bytes[..byte_offset].iter().filter(|&&b| b == b'\n').count();
        DataError::InvalidUtf8 { line, byte_offset }
    })?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(DataError::Empty);
    }
    let format = opts
        .format
        .unwrap_or_else(|| Format::detect(file_name, bytes));
    let parsed = match format {
        Format::Csv => parse::parse_delimited(text, b',', opts)?,
        Format::Tsv => parse::parse_delimited(text, b'\t', opts)?,
        Format::Jsonl => parse::parse_jsonl(text, opts)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ParseOptions {
        ParseOptions::default()
    }

    fn csv(s: &str) -> Result<ParsedDataset, DataError> {
        parse(s.as_bytes(), "up.csv", &opts())
    }

    fn ex(text: &str, label: &str) -> Example {
        Example {
            text: text.to_owned(),
            label: label.to_owned(),
        }
    }

    #[test]
    fn detect_by_extension_and_content() {
        assert_eq!(Format::detect("a.CSV", b"{"), Format::Csv);
        assert_eq!(Format::detect("a.tsv", b"x,y"), Format::Tsv);
        assert_eq!(Format::detect("a.json", b"x,y"), Format::Jsonl);
        assert_eq!(Format::detect("a.ndjson", b""), Format::Jsonl);
        assert_eq!(Format::detect("a.jsonl", b""), Format::Jsonl);
        assert_eq!(
            Format::detect("upload", b"  \n {\"text\":1}"),
            Format::Jsonl
        );
        assert_eq!(
            Format::detect("upload.txt", b"text\tlabel\na,b\n"),
            Format::Tsv
        );
        assert_eq!(
            Format::detect("upload", b"text,label\na\tb,c\n"),
            Format::Csv
        );
        assert_eq!(Format::detect("", b""), Format::Csv);
        assert_eq!(Format::detect("x", b"\xEF\xBB\xBF{}"), Format::Jsonl);
    }

    #[test]
    fn csv_happy_path_with_line_numbers() {
        let ds = csv("text,label\nhello world,pos\n  bad day ,neg\n").unwrap();
        assert_eq!(
            ds.examples,
            vec![ex("hello world", "pos"), ex("bad day", "neg")]
        );
        assert!(ds.rejected.is_empty());
        assert_eq!(ds.columns, vec!["text", "label"]);
    }

    #[test]
    fn real_sst2_sample_parses() {
        let sample = "text,label\n\"birthday girl lucks out with chaplin and kidman , who are capable\",positive\nneed agile performers,negative\n's the sweet cinderella story that `` pretty woman '' wanted to be,positive\n";
        let ds = csv(sample).unwrap();
        assert_eq!(ds.examples.len(), 3);
        assert_eq!(ds.examples[1], ex("need agile performers", "negative"));
        assert!(ds.examples[0].text.contains("kidman , who"));
    }

    #[test]
    fn csv_quoting_commas_newlines_doubled_quotes() {
        let s = "label,text,extra\npos,\"a, b\",x\nneg,\"line one\nline two\",y\npos,\"she said \"\"hi\"\"\",z\nneg,short\n";
        let ds = csv(s).unwrap();
        assert_eq!(
            ds.examples,
            vec![
                ex("a, b", "pos"),
                ex("line one\nline two", "neg"),
                ex("she said \"hi\"", "pos"),
            ]
        );
        // The short row starts on line 6 because the quoted newline takes up line 4.
        assert_eq!(ds.rejected.len(), 1);
        assert_eq!(ds.rejected[0].line, 6);
        assert!(
            ds.rejected[0].reason.contains("expected 3 fields"),
            "{:?}",
            ds.rejected
        );
    }

    #[test]
    fn csv_crlf_bom_and_case_insensitive_columns() {
        let ds = parse(
            b"\xEF\xBB\xBFText,Label\r\nfoo,a\r\nbar,b\r\n",
            "x.csv",
            &opts(),
        )
        .unwrap();
        assert_eq!(ds.examples, vec![ex("foo", "a"), ex("bar", "b")]);
        assert_eq!(ds.columns, vec!["Text", "Label"]);
    }

    #[test]
    fn custom_column_names() {
        let o = ParseOptions {
            text_column: "sentence".into(),
            label_column: "y".into(),
            ..opts()
        };
        let ds = parse(b"y,sentence\n1,good\n0,bad\n", "a.csv", &o).unwrap();
        assert_eq!(ds.examples, vec![ex("good", "1"), ex("bad", "0")]);
    }

    #[test]
    fn wrong_field_count_is_a_rejected_row() {
        let ds = csv("text,label\ngood,pos\nonly one field\ntoo,many,fields\n").unwrap();
        assert_eq!(ds.examples, vec![ex("good", "pos")]);
        let lines: Vec<usize> = ds.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4]);
        assert!(ds.rejected[0].reason.contains("found 1"));
        assert!(ds.rejected[1].reason.contains("found 3"));
    }

    #[test]
    fn empty_text_and_label_and_long_text_are_rejected() {
        let o = ParseOptions {
            max_text_chars: 5,
            ..opts()
        };
        let s = "text,label\n,pos\n   ,neg\nok,\nabcdef,pos\nabcde,neg\n\"\",pos\n";
        let ds = parse(s.as_bytes(), "a.csv", &o).unwrap();
        assert_eq!(ds.examples, vec![ex("abcde", "neg")]);
        let got: Vec<(usize, &str)> = ds
            .rejected
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0].0, 2);
        assert!(got[0].1.contains("text is empty"));
        assert!(got[1].1.contains("text is empty"));
        assert!(got[2].1.contains("label is empty"));
        assert!(got[3].1.contains("6 characters"));
        assert_eq!(got[4].0, 7);
    }

    #[test]
    fn empty_file() {
        assert_eq!(csv(""), Err(DataError::Empty));
        assert_eq!(csv(" \n\t\r\n"), Err(DataError::Empty));
        assert_eq!(
            parse(b"\xEF\xBB\xBF", "a.jsonl", &opts()),
            Err(DataError::Empty)
        );
    }

    #[test]
    fn too_large() {
        let o = ParseOptions {
            max_bytes: 10,
            ..opts()
        };
        assert_eq!(
            parse(b"text,label\na,b\n", "a.csv", &o),
            Err(DataError::TooLarge { bytes: 15, max: 10 })
        );
    }

    #[test]
    fn invalid_utf8_reports_line() {
        let err = parse(b"text,label\ngood,pos\nb\xFFd,neg\n", "a.csv", &opts()).unwrap_err();
        assert_eq!(
            err,
            DataError::InvalidUtf8 {
                line: 3,
                byte_offset: 21
            }
        );
        assert!(err.to_string().contains("line 3"));
    }

    #[test]
    fn no_header_or_unknown_column() {
        let err = csv("great movie,positive\nbad movie,negative\n").unwrap_err();
        assert_eq!(
            err,
            DataError::MissingColumn {
                column: "text".into(),
                available: vec!["great movie".into(), "positive".into()],
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("`text`") && msg.contains("`great movie`"),
            "{msg}"
        );

        let err = csv("text,category\na,b\n").unwrap_err();
        assert!(matches!(&err, DataError::MissingColumn { column, .. } if column == "label"));
        assert_eq!(csv(",\na,b\n"), Err(DataError::NoHeader));
    }

    #[test]
    fn header_only_or_all_rows_bad() {
        let err = csv("text,label\n").unwrap_err();
        assert_eq!(
            err,
            DataError::NoUsableRows {
                rejected: 0,
                first_reasons: vec![]
            }
        );
        assert!(err.to_string().contains("no data rows"));
        let err = csv("text,label\n,a\n,b\n").unwrap_err();
        match &err {
            DataError::NoUsableRows {
                rejected,
                first_reasons,
            } => {
                assert_eq!(*rejected, 2);
                assert_eq!(first_reasons[0], "line 2: the text is empty");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("all 2 rows were rejected"));
    }

    #[test]
    fn tsv_happy_path() {
        let s = "text\tlabel\nit 's a funny, sad film\tpos\nmeh\tneg\n";
        let ds = parse(s.as_bytes(), "train.tsv", &opts()).unwrap();
        assert_eq!(
            ds.examples,
            vec![ex("it 's a funny, sad film", "pos"), ex("meh", "neg")]
        );
        // Detected from content too.
        assert_eq!(parse(s.as_bytes(), "upload", &opts()).unwrap(), ds);
    }

    #[test]
    fn jsonl_happy_path() {
        let s = "{\"text\": \" good \", \"label\": \"pos\"}\n\n{\"label\": 1, \"text\": \"bad\", \"id\": 7}\r\n{\"text\":\"x\",\"label\":true}\n{\"text\":\"y\",\"label\":2.5}\n";
        let ds = parse(s.as_bytes(), "up.jsonl", &opts()).unwrap();
        assert_eq!(
            ds.examples,
            vec![
                ex("good", "pos"),
                ex("bad", "1"),
                ex("x", "true"),
                ex("y", "2.5")
            ]
        );
        assert!(ds.rejected.is_empty());
        assert_eq!(ds.columns, vec!["label", "text", "id"]);
    }

    #[test]
    fn jsonl_bad_lines_are_rejected() {
        let s = concat!(
            "{\"text\":\"ok\",\"label\":\"a\"}\n",
            "[1,2]\n",
            "{\"text\": \"unterminated\n",
            "{\"label\":\"a\"}\n",
            "{\"text\":\"t\"}\n",
            "{\"text\":\"t\",\"label\":null}\n",
            "{\"text\":\"t\",\"label\":[\"a\"]}\n",
            "{\"text\":5,\"label\":\"a\"}\n",
            "{\"text\":\"  \",\"label\":\"a\"}\n",
            "\"just a string\"\n",
        );
        let ds = parse(s.as_bytes(), "x.jsonl", &opts()).unwrap();
        assert_eq!(ds.examples, vec![ex("ok", "a")]);
        let got: Vec<(usize, &str)> = ds
            .rejected
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            (2..=10).collect::<Vec<_>>()
        );
        assert!(
            got[0].1.contains("not a JSON object") && got[0].1.contains("array"),
            "{got:?}"
        );
        assert!(got[1].1.contains("not valid JSON"), "{got:?}");
        assert!(got[2].1.contains("no `text` key"), "{got:?}");
        assert!(got[3].1.contains("no `label` key"), "{got:?}");
        assert!(got[4].1.contains("null"), "{got:?}");
        assert!(got[5].1.contains("array"), "{got:?}");
        assert!(got[6].1.contains("text must be a string"), "{got:?}");
        assert!(got[7].1.contains("text is empty"), "{got:?}");
        assert!(got[8].1.contains("string"), "{got:?}");
    }

    #[test]
    fn jsonl_without_the_keys_is_missing_column() {
        let err = parse(
            b"{\"sentence\":\"a\",\"label\":\"x\"}\n",
            "a.jsonl",
            &opts(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            DataError::MissingColumn {
                column: "text".into(),
                available: vec!["label".into(), "sentence".into()]
            }
        );
        let err = parse(b"not json at all\n", "a.jsonl", &opts()).unwrap_err();
        assert!(matches!(err, DataError::NoUsableRows { rejected: 1, .. }));
    }

    #[test]
    fn explicit_format_overrides_detection() {
        let o = ParseOptions {
            format: Some(Format::Tsv),
            ..opts()
        };
        let ds = parse(b"text\tlabel\na,b\tc\n", "data.csv", &o).unwrap();
        assert_eq!(ds.examples, vec![ex("a,b", "c")]);
    }

    #[test]
    fn fuzz_parse_never_panics() {
        const ALPHABET: &[u8] = b"text,label\t\n\r\" {}[]:1a\xFF\xC3\xA9";
        let formats = [
            None,
            Some(Format::Csv),
            Some(Format::Tsv),
            Some(Format::Jsonl),
        ];
        let mut rng = super::rng::SplitMix64::new(42);
        for round in 0..2000 {
            let len = (rng.next_u64() % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next_u64();
                    if round % 2 == 0 {
                        (r & 0xFF) as u8
                    } else {
                        ALPHABET[(r % ALPHABET.len() as u64) as usize]
                    }
                })
                .collect();
            let mut with_header = b"text,label\n".to_vec();
            with_header.extend_from_slice(&bytes);
            for format in formats {
                let o = ParseOptions {
                    format,
                    max_text_chars: 8,
                    ..opts()
                };
                for input in [&bytes, &with_header] {
                    if let Ok(ds) = parse(input, "fuzz", &o) {
                        assert!(!ds.examples.is_empty());
                        for e in &ds.examples {
                            assert!(!e.text.is_empty() && !e.label.is_empty());
                            assert!(e.text.chars().count() <= 8);
                        }
                    }
                }
            }
        }
    }
}
