//! What an upload is before it is parsed: a known binary format given as text (refused by its
//! signature), its text encoding (UTF-8 with or without a byte-order mark, UTF-16 with one), and
//! the delimiter of a delimited file (`,` `;` tab or `|`, as spreadsheet programs export them).
//!
//! What it leaves out: legacy 8-bit encodings (Windows-1252, Latin-1 are refused as invalid UTF-8
//! with the line of the first bad byte), UTF-16 without a byte-order mark (refused: its NUL bytes
//! give it away), and reading spreadsheets (an `.xlsx` is named and refused, not converted).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::DataError;

/// The text encoding an upload was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Encoding {
    /// UTF-8 without a byte-order mark.
    #[default]
    Utf8,
    /// UTF-8 with a byte-order mark (Excel's "CSV UTF-8").
    Utf8Bom,
    /// UTF-16, little-endian, with a byte-order mark (Excel's "Unicode text").
    Utf16Le,
    /// UTF-16, big-endian, with a byte-order mark.
    Utf16Be,
}

impl Encoding {
    /// The encoding's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Utf8 => "UTF-8",
            Self::Utf8Bom => "UTF-8 with BOM",
            Self::Utf16Le => "UTF-16 LE",
            Self::Utf16Be => "UTF-16 BE",
        }
    }
}

/// Signatures of binary formats that users give as data files, and what each is.
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"%PDF-", "a PDF document"),
    (
        b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1",
        "an old-format Office file (.xls or .doc)",
    ),
    (b"\x1F\x8B", "a gzip-compressed file"),
    (b"\x89PNG\r\n\x1A\n", "a PNG image"),
    (b"\xFF\xD8\xFF", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"SQLite format 3\0", "an SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive"),
    (b"Rar!\x1A\x07", "a RAR archive"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xFD7zXZ\0", "an xz-compressed file"),
    (b"\x28\xB5\x2F\xFD", "a zstd-compressed file"),
    (b"\0asm", "a WebAssembly module"),
    (b"\x7FELF", "an executable (ELF)"),
];

/// What a binary upload is, when its first bytes say so; `None` for anything that may be text.
pub fn binary_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        // The first entry's name follows the 30-byte local header.
        let head = &bytes[..bytes.len().min(4096)];
        let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
        return Some(
            if has(b"xl/") || has(b"[Content_Types].xml") && has(b"sheet") {
                "an Excel workbook (.xlsx); export it from the spreadsheet program as \"CSV UTF-8\""
            } else if has(b"word/") {
                "a Word document (.docx)"
            } else if has(b"opendocument.spreadsheet") {
                "an OpenDocument spreadsheet (.ods); export it as CSV"
            } else {
                "a zip archive; to restore a workspace or an adapter, use the import button"
            },
        );
    }
    SIGNATURES
        .iter()
        .find(|(sig, _)| bytes.starts_with(sig))
        .map(|(_, what)| *what)
}

/// Decodes an upload to text, stripping a byte-order mark.
pub fn decode(bytes: &[u8]) -> Result<(Cow<'_, str>, Encoding), DataError> {
    let (body, encoding) = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        (rest, Encoding::Utf8Bom)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return decode_utf16(rest, Encoding::Utf16Le, u16::from_le_bytes);
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return decode_utf16(rest, Encoding::Utf16Be, u16::from_be_bytes);
    } else {
        (bytes, Encoding::Utf8)
    };
    let text = std::str::from_utf8(body).map_err(|e| {
        let byte_offset = e.valid_up_to() + (bytes.len() - body.len());
        let line = 1 + bytes[..byte_offset].iter().filter(|&&b| b == b'\n').count();
        DataError::InvalidUtf8 { line, byte_offset }
    })?;
    if let Some(at) = text.find('\0') {
        return Err(DataError::NulBytes { byte_offset: at });
    }
    Ok((Cow::Borrowed(text), encoding))
}

fn decode_utf16(
    body: &[u8],
    encoding: Encoding,
    unit: fn([u8; 2]) -> u16,
) -> Result<(Cow<'static, str>, Encoding), DataError> {
    if body.len() % 2 != 0 {
        return Err(DataError::InvalidUtf16 {
            encoding: encoding.name(),
            byte_offset: body.len() + 1,
        });
    }
    let units = body.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    let mut text = String::with_capacity(body.len() / 2);
    for (i, c) in char::decode_utf16(units).enumerate() {
        match c {
            Ok('\0') => {
                return Err(DataError::NulBytes {
                    byte_offset: 2 + 2 * i,
                });
            }
            Ok(c) => text.push(c),
            Err(_) => {
                return Err(DataError::InvalidUtf16 {
                    encoding: encoding.name(),
                    byte_offset: 2 + 2 * i,
                });
            }
        }
    }
    Ok((Cow::Owned(text), encoding))
}

/// Candidate delimiters, in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// How many times `d` occurs outside double quotes in `line`.
fn count_outside_quotes(line: &str, d: u8) -> usize {
    let mut quoted = false;
    let mut n = 0;
    for &b in line.as_bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == d && !quoted {
            n += 1;
        }
    }
    n
}

/// Guesses the delimiter of a delimited file from its first (at most 20) lines: the candidate
/// that splits the first line and splits the most lines into as many fields as the first, then
/// the one occurring most in the first line; `,` when none occurs.
pub fn delimiter(text: &str) -> u8 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    let Some(first) = lines.first() else {
        return b',';
    };
    let mut best = (0usize, 0usize, b',');
    for d in DELIMITERS {
        let n = count_outside_quotes(first, d);
        if n == 0 {
            continue;
        }
        let agree = lines
            .iter()
            .filter(|l| count_outside_quotes(l, d) == n)
            .count();
        if (agree, n) > (best.0, best.1) {
            best = (agree, n, d);
        }
    }
    best.2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_as_spreadsheets_export_them() {
        assert_eq!(delimiter("text,label\na,b\n"), b',');
        assert_eq!(delimiter("text;label\n\"x, y\";pos\nz;neg\n"), b';');
        assert_eq!(delimiter("text\tlabel\na\tb\n"), b'\t');
        assert_eq!(delimiter("text|label\na|b\n"), b'|');
        // A comma inside quotes does not count; a semicolon in one text does not win.
        assert_eq!(delimiter("\"a;b\",x\n\"c\",y\n"), b',');
        assert_eq!(delimiter("just one column\n"), b',');
        assert_eq!(delimiter(""), b',');
    }

    #[test]
    fn encodings_with_and_without_bom() {
        let (t, e) = decode(b"\xEF\xBB\xBFtext,label").unwrap();
        assert_eq!((t.as_ref(), e), ("text,label", Encoding::Utf8Bom));
        let le: Vec<u8> = b"\xFF\xFE"
            .iter()
            .copied()
            .chain("tëxt,😀".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let (t, e) = decode(&le).unwrap();
        assert_eq!((t.as_ref(), e), ("tëxt,😀", Encoding::Utf16Le));
        let be: Vec<u8> = b"\xFE\xFF"
            .iter()
            .copied()
            .chain("ab".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode(&be).unwrap().0, "ab");
        // A lone surrogate, an odd length, UTF-16 without its mark.
        assert!(matches!(
            decode(b"\xFF\xFE\x00\xD8a\x00"),
            Err(DataError::InvalidUtf16 { byte_offset: 2, .. })
        ));
        assert!(matches!(
            decode(b"\xFF\xFEa"),
            Err(DataError::InvalidUtf16 { .. })
        ));
        assert!(matches!(
            decode(b"t\0e\0x\0t\0"),
            Err(DataError::NulBytes { byte_offset: 1 })
        ));
    }

    #[test]
    fn binary_formats_are_named() {
        assert!(binary_kind(b"%PDF-1.7\n...").unwrap().contains("PDF"));
        let xlsx =
            b"PK\x03\x04\x14\0\x06\0\x08\0\0\0!\0....[Content_Types].xml ... xl/workbook.xml";
        assert!(binary_kind(xlsx).unwrap().contains("Excel workbook"));
        assert!(
            binary_kind(b"PK\x03\x04 data.csv")
                .unwrap()
                .contains("zip archive")
        );
        assert!(
            binary_kind(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1")
                .unwrap()
                .contains(".xls")
        );
        assert_eq!(binary_kind(b"text,label\n"), None);
        assert_eq!(binary_kind(b"PDF,label\n"), None);
    }
}
