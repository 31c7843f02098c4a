//! The CSV/TSV and JSONL readers behind [`super::parse`]. Input is already checked to be UTF-8 and
//! non-empty; these functions never fail on a single bad row, only on a missing column.

use super::{DataError, Example, PROGRESS_EVERY, ParseOptions, ParsedDataset, RejectedRow};
use serde_json::Value;

/// Index of `wanted` in `names`: an exact match first, else one that differs only in ASCII case.
fn find_column(names: &[String], wanted: &str) -> Option<usize> {
    names
        .iter()
        .position(|n| n == wanted)
        .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(wanted)))
}

/// Checks a trimmed text/label pair, giving the example or the reason it is rejected.
fn make_example(text: &str, label: &str, opts: &ParseOptions) -> Result<Example, String> {
    let text = text.trim();
    let label = label.trim();
    if text.is_empty() {
        return Err("the text is empty".to_owned());
    }
    if label.is_empty() {
        return Err("the label is empty".to_owned());
    }
    let chars = text.chars().count();
    if chars > opts.max_text_chars {
        return Err(format!(
            "the text has {chars} characters, more than the limit of {}",
            opts.max_text_chars
        ));
    }
    Ok(Example {
        text: text.to_owned(),
        label: label.to_owned(),
    })
}

/// The 0-based index a header-less column choice names: `"2"` or `"column 2"` is 1.
fn column_number(choice: &str) -> Option<usize> {
    let c = choice.trim();
    let c = c.strip_prefix("column").map_or(c, str::trim);
    c.parse::<usize>().ok().filter(|&n| n >= 1).map(|n| n - 1)
}

/// Reads a delimited file (`delimiter` `b','`, `b';'`, `b'\t'`, …), with a header row unless
/// `opts.header` is false. `at` is called with the byte offset reached about every
/// [`PROGRESS_EVERY`] bytes.
pub(super) fn parse_delimited(
    text: &str,
    delimiter: u8,
    opts: &ParseOptions,
    at: &mut dyn FnMut(usize),
) -> Result<ParsedDataset, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(opts.header)
        .from_reader(text.as_bytes());
    // Without a header, `headers()` is the first record (still read as data below).
    let first: Vec<String> = reader
        .headers()
        .map_err(|e| DataError::Malformed {
            line: e.position().map_or(1, |p| p.line() as usize),
            message: e.to_string(),
        })?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let (columns, text_idx, label_idx) = if opts.header {
        if first.iter().all(String::is_empty) {
            return Err(DataError::NoHeader);
        }
        let missing = |column: &str| DataError::MissingColumn {
            column: column.to_owned(),
            available: first.clone(),
        };
        let t = find_column(&first, &opts.text_column).ok_or_else(|| missing(&opts.text_column))?;
        let l =
            find_column(&first, &opts.label_column).ok_or_else(|| missing(&opts.label_column))?;
        (first, t, l)
    } else {
        let columns: Vec<String> = (1..=first.len()).map(|i| format!("column {i}")).collect();
        let t = column_number(&opts.text_column).unwrap_or(0);
        let l = column_number(&opts.label_column).unwrap_or(1);
        for (i, wanted) in [(t, &opts.text_column), (l, &opts.label_column)] {
            if i >= columns.len() {
                return Err(DataError::MissingColumn {
                    column: format!("column {} ({wanted})", i + 1),
                    available: columns,
                });
            }
        }
        (columns, t, l)
    };

    let mut out = ParsedDataset {
        columns,
        ..ParsedDataset::default()
    };
    let mut next_report = PROGRESS_EVERY;
    for record in reader.records() {
        let byte = reader_position(&record);
        if byte >= next_report {
            at(byte);
            next_report = byte + PROGRESS_EVERY;
        }
        let record = match record {
            Ok(record) => record,
            Err(e) => match e.position() {
                Some(pos) => {
                    out.rejected.push(RejectedRow {
                        line: pos.line() as usize,
                        reason: e.to_string(),
                    });
                    continue;
                }
                // An error without a position is not tied to a row; stop rather than loop on it.
                None => {
                    return Err(DataError::Malformed {
                        line: 0,
                        message: e.to_string(),
                    });
                }
            },
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.len() != out.columns.len() {
            out.rejected.push(RejectedRow {
                line,
                reason: format!(
                    "expected {} fields (as in the header), found {}",
                    out.columns.len(),
                    record.len()
                ),
            });
            continue;
        }
        let text = record.get(text_idx).unwrap_or_default();
        let label = record.get(label_idx).unwrap_or_default();
        match make_example(text, label, opts) {
            Ok(example) => out.examples.push(example),
            Err(reason) => out.rejected.push(RejectedRow { line, reason }),
        }
    }
    Ok(out)
}

/// The byte offset a record (or the error in reading it) starts at.
fn reader_position(record: &Result<csv::StringRecord, csv::Error>) -> usize {
    let pos = match record {
        Ok(r) => r.position(),
        Err(e) => e.position(),
    };
    pos.map_or(0, |p| p.byte() as usize)
}

/// Name of a JSON value's type, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Looks up `key` in an object: exact first, else ignoring ASCII case.
fn get_key<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Reads one JSONL line into an example, or the reason it is rejected.
fn jsonl_example(
    obj: &serde_json::Map<String, Value>,
    opts: &ParseOptions,
) -> Result<Example, String> {
    let text = match get_key(obj, &opts.text_column) {
        None => return Err(format!("no `{}` key", opts.text_column)),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(format!(
                "the text must be a string, found {}",
                json_type(other)
            ));
        }
    };
    let label = match get_key(obj, &opts.label_column) {
        None => return Err(format!("no `{}` key", opts.label_column)),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => {
            return Err(format!(
                "the label must be a string, number or boolean, found {}",
                json_type(other)
            ));
        }
    };
    make_example(text, &label, opts)
}

/// Reads JSON Lines: one object per line, blank lines skipped. `at` is called with the byte
/// offset reached about every [`PROGRESS_EVERY`] bytes.
pub(super) fn parse_jsonl(
    text: &str,
    opts: &ParseOptions,
    at: &mut dyn FnMut(usize),
) -> Result<ParsedDataset, DataError> {
    let mut out = ParsedDataset::default();
    let mut objects = 0usize;
    let (mut saw_text, mut saw_label) = (false, false);
    let (mut byte, mut next_report) = (0usize, PROGRESS_EVERY);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        byte += raw.len() + 1;
        if byte >= next_report {
            at(byte);
            next_report = byte + PROGRESS_EVERY;
        }
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(raw) {
            Ok(value) => value,
            Err(e) => {
                out.rejected.push(RejectedRow {
                    line,
                    reason: format!("not valid JSON ({e}); expected one JSON object per line"),
                });
                continue;
            }
        };
        let Value::Object(obj) = value else {
            out.rejected.push(RejectedRow {
                line,
                reason: format!("not a JSON object (found {})", json_type(&value)),
            });
            continue;
        };
        objects += 1;
        // Sorted within an object so the order does not depend on serde_json's `preserve_order`.
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort();
        for key in keys {
            if !out.columns.contains(key) {
                out.columns.push(key.clone());
            }
        }
        saw_text |= get_key(&obj, &opts.text_column).is_some();
        saw_label |= get_key(&obj, &opts.label_column).is_some();
        match jsonl_example(&obj, opts) {
            Ok(example) => out.examples.push(example),
            Err(reason) => out.rejected.push(RejectedRow { line, reason }),
        }
    }
    // Objects that never carry the text (or label) key point at a column-name mismatch, not bad rows.
    if objects > 0 && out.examples.is_empty() {
        for (seen, column) in [
            (saw_text, &opts.text_column),
            (saw_label, &opts.label_column),
        ] {
            if !seen {
                return Err(DataError::MissingColumn {
                    column: column.clone(),
                    available: out.columns,
                });
            }
        }
    }
    Ok(out)
}
