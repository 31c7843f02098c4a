//! A data upload, read every way the page offers (detected format, CSV/TSV/JSONL forced, a chosen
//! delimiter, no header row): any bytes give examples or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lorafuse::data::{self, Format, ParseOptions};

fuzz_target!(|bytes: &[u8]| {
    let (first, rest) = bytes.split_first().unwrap_or((&0, bytes));
    let opts = ParseOptions {
        format: [None, Some(Format::Csv), Some(Format::Tsv), Some(Format::Jsonl)][*first as usize % 4],
        delimiter: [None, Some(';'), Some('|'), Some('"')][(*first as usize / 4) % 4],
        header: first & 0x10 == 0,
        max_text_chars: 64,
        ..ParseOptions::default()
    };
    if let Ok(parsed) = data::parse(rest, "fuzz.csv", &opts) {
        assert!(!parsed.examples.is_empty());
        let _ = data::validate_for_training(&parsed.examples);
    }
});
