//! Tests of upload parsing and validation (the module's own tests, kept apart for length).

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

#[test]
fn excel_csv_exports_read_as_written() {
    // Excel in a German or French locale: UTF-8 BOM, `;`, CRLF, quoted `;` and line breaks.
    let file = "\u{FEFF}text;label\r\n\"Gut; wirklich\r\nsehr gut\";pos\r\nschlecht;neg\r\n";
    let p = parse(file.as_bytes(), "export.csv", &opts()).unwrap();
    assert_eq!(
        p.examples,
        vec![
            ex("Gut; wirklich\r\nsehr gut", "pos"),
            ex("schlecht", "neg")
        ]
    );
    assert_eq!(
        p.reading.describe(),
        "CSV, ';'-separated, UTF-8 with BOM, header row"
    );
    // Excel's "Unicode text": UTF-16 LE with a BOM, tab-separated, saved as .txt.
    let utf16: Vec<u8> = b"\xFF\xFE"
        .iter()
        .copied()
        .chain(
            "text\tlabel\r\nça va\tpos\r\nnon\tneg\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let p = parse(&utf16, "export.txt", &opts()).unwrap();
    assert_eq!(p.examples, vec![ex("ça va", "pos"), ex("non", "neg")]);
    assert_eq!(
        p.reading.describe(),
        "TSV, tab-separated, UTF-16 LE, header row"
    );
}

#[test]
fn delimiter_can_be_chosen() {
    let file = "text|label\na,b|x\nc|y\n";
    let p = parse(file.as_bytes(), "f.csv", &opts()).unwrap();
    assert_eq!(p.examples, vec![ex("a,b", "x"), ex("c", "y")]);
    let comma = ParseOptions {
        delimiter: Some(','),
        ..opts()
    };
    // Read with `,`, the header is one column `text|label`.
    assert!(matches!(
        parse(file.as_bytes(), "f.csv", &comma),
        Err(DataError::MissingColumn { .. })
    ));
    let quote = ParseOptions {
        delimiter: Some('"'),
        ..opts()
    };
    assert_eq!(
        parse(file.as_bytes(), "f.csv", &quote),
        Err(DataError::BadDelimiter { delimiter: '"' })
    );
}

#[test]
fn headerless_files_read_the_first_row_as_data() {
    let file = "great movie,pos\nawful,neg\n";
    // With a header expected, the error says the first row may be data.
    let msg = csv(file).unwrap_err().to_string();
    assert!(msg.contains("if the first row is data"), "{msg}");
    let no_header = ParseOptions {
        header: false,
        ..opts()
    };
    let p = parse(file.as_bytes(), "f.csv", &no_header).unwrap();
    assert_eq!(
        p.examples,
        vec![ex("great movie", "pos"), ex("awful", "neg")]
    );
    assert_eq!(p.columns, vec!["column 1", "column 2"]);
    // Columns chosen by number, the label first.
    let swapped = ParseOptions {
        header: false,
        text_column: "column 2".into(),
        label_column: "1".into(),
        ..opts()
    };
    let p = parse(b"pos,great\nneg,awful\n", "f.csv", &swapped).unwrap();
    assert_eq!(p.examples, vec![ex("great", "pos"), ex("awful", "neg")]);
    let third = ParseOptions {
        header: false,
        label_column: "3".into(),
        ..opts()
    };
    assert!(matches!(
        parse(file.as_bytes(), "f.csv", &third),
        Err(DataError::MissingColumn { .. })
    ));
}

#[test]
fn binary_files_given_as_csv_are_named() {
    let xlsx = b"PK\x03\x04\x14\0\x06\0\x08\0\0\0!\0[Content_Types].xml xl/workbook.xml";
    let msg = parse(xlsx, "data.csv", &opts()).unwrap_err().to_string();
    assert!(
        msg.starts_with("the file is an Excel workbook (.xlsx)"),
        "{msg}"
    );
    let msg = parse(b"%PDF-1.4\n%\xE2\xE3", "data.csv", &opts())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("a PDF document, not a CSV"), "{msg}");
    let msg = parse(b"t\0e\0x\0t\0", "data.csv", &opts())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("NUL byte"), "{msg}");
}

#[test]
fn many_classes_and_too_many() {
    let mut file = String::from("text,label\n");
    for i in 0..150 {
        file.push_str(&format!("example {i},intent_{i}\n"));
    }
    let p = csv(&file).unwrap();
    assert_eq!(validate_for_training(&p.examples).unwrap().len(), 150);
    let mut file = String::from("text,label\n");
    for i in 0..=crate::limits::MAX_CLASSES {
        file.push_str(&format!("example {i},{i}\n"));
    }
    let p = csv(&file).unwrap();
    let msg = validate_for_training(&p.examples).unwrap_err().to_string();
    assert!(
        msg.contains("1001 different labels, more than the limit of 1000"),
        "{msg}"
    );
}

#[test]
fn progress_is_reported_on_large_files() {
    let row = "a text of some length that repeats,pos\nanother one,neg\n";
    let file = format!("text,label\n{}", row.repeat(3 * PROGRESS_EVERY / row.len()));
    let mut seen = Vec::new();
    let p =
        parse_with_progress(file.as_bytes(), "big.csv", &opts(), &mut |f| seen.push(f)).unwrap();
    assert_eq!(p.examples.len(), 2 * (3 * PROGRESS_EVERY / row.len()));
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]) && seen.last() == Some(&1.0));
}
