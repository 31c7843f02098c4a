//! Zip archives of named files, for downloads and uploads (one task's adapter folder, a whole
//! workspace bundle), using the `zip` crate with deflate.
//!
//! Reading is defensive, every limit from [`crate::limits`] checked before the bytes it guards are
//! allocated: the zip's own size, its entry count, each entry's path (relative, no `..`, no control
//! characters, not too long, not twice), each entry's declared size against what is left of the
//! total, its compression ratio (a zip bomb is an error, not an out-of-memory), and that it unpacks
//! to no more than it declared. Directory entries and macOS metadata are skipped, and a single
//! top-level folder shared by every entry (as when a user zips the folder itself) is stripped.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::error::{Error, Result};
use crate::limits::{
    MAX_COMPRESSION_RATIO, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES, MAX_ZIP_PATH, MAX_ZIP_TOTAL_BYTES,
    RATIO_CHECK_ABOVE,
};

/// Writes `files` (path → bytes) into a deflate-compressed zip.
pub fn write(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    let mut zw = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, bytes) in files {
        zw.start_file(name.as_str(), opts)
            .map_err(|e| Error::Bundle(format!("writing {name}: {e}")))?;
        zw.write_all(bytes)
            .map_err(|e| Error::Bundle(format!("writing {name}: {e}")))?;
    }
    let cursor = zw
        .finish()
        .map_err(|e| Error::Bundle(format!("finishing the zip: {e}")))?;
    Ok(cursor.into_inner())
}

/// Reads every file of a zip (path → bytes), stripping one shared top-level folder.
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    if bytes.len() > MAX_ZIP_BYTES {
        return Err(Error::Bundle(format!(
            "the zip is {} MB, more than the limit of {} MB",
            bytes.len() >> 20,
            MAX_ZIP_BYTES >> 20
        )));
    }
    let mut za = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Error::Bundle(format!("not a zip file: {e}")))?;
    if za.len() > MAX_ZIP_ENTRIES {
        return Err(Error::Bundle(format!(
            "the zip has {} entries, more than the limit of {MAX_ZIP_ENTRIES}",
            za.len()
        )));
    }
    // The zip crate keeps one entry per name, so a repeated name (which other tools resolve
    // differently) shows only as fewer entries than the end record declares.
    if let Some(declared) = declared_entries(bytes)
        && declared > za.len()
    {
        return Err(Error::Bundle(format!(
            "the zip declares {declared} entries but has only {} distinct names: an entry name appears twice",
            za.len()
        )));
    }
    let mut out = BTreeMap::new();
    let mut total: u64 = 0;
    for i in 0..za.len() {
        let mut f = za
            .by_index(i)
            .map_err(|e| Error::Bundle(format!("entry {i}: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let raw = f
            .name()
            .map_err(|e| Error::Bundle(format!("entry {i} has an unreadable name: {e}")))?
            .to_string();
        if raw.len() > MAX_ZIP_PATH || raw.chars().any(char::is_control) {
            return Err(Error::Bundle(format!(
                "entry {i} has an unusable path ({} bytes{}; at most {MAX_ZIP_PATH}, no control characters)",
                raw.len(),
                if raw.chars().any(char::is_control) {
                    ", with control characters"
                } else {
                    ""
                }
            )));
        }
        if raw.starts_with(['/', '\\']) || raw.contains(':') {
            return Err(Error::Bundle(format!(
                "entry {raw:?} has an unsafe path (absolute or with `..`)"
            )));
        }
        let name = f.enclosed_name().ok_or_else(|| {
            Error::Bundle(format!(
                "entry {raw:?} has an unsafe path (absolute or with `..`)"
            ))
        })?;
        let name = name.to_string_lossy().replace('\\', "/");
        if name.starts_with("__MACOSX/") || name.ends_with(".DS_Store") {
            continue;
        }
        if out.contains_key(&name) {
            return Err(Error::Bundle(format!(
                "entry {name:?} appears twice in the zip"
            )));
        }
        let declared = f.size();
        if declared > MAX_ZIP_TOTAL_BYTES - total {
            return Err(Error::Bundle(format!(
                "entry {name:?} declares {} MB; with the entries before it the zip would unpack to more than the limit of {} MB",
                declared >> 20,
                MAX_ZIP_TOTAL_BYTES >> 20
            )));
        }
        let packed = f.compressed_size().max(1);
        if declared > RATIO_CHECK_ABOVE && declared / packed > MAX_COMPRESSION_RATIO {
            return Err(Error::Bundle(format!(
                "entry {name:?} is compressed {}:1 ({declared} bytes from {packed}), more than the limit of {MAX_COMPRESSION_RATIO}:1; it looks like a zip bomb",
                declared / packed
            )));
        }
        let mut buf = Vec::new();
        (&mut f)
            .take(declared + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Bundle(format!("reading {name}: {e}")))?;
        if buf.len() as u64 > declared {
            return Err(Error::Bundle(format!(
                "entry {name:?} unpacks to more than the {declared} bytes it declares"
            )));
        }
        total += buf.len() as u64;
        out.insert(name, buf);
    }
    // Strip a top-level folder shared by all entries.
    let prefix = out
        .keys()
        .next()
        .and_then(|k| k.split_once('/').map(|(p, _)| format!("{p}/")));
    if let Some(p) = prefix
        && out.keys().all(|k| k.starts_with(&p))
    {
        out = out
            .into_iter()
            .map(|(k, v)| (k[p.len()..].to_string(), v))
            .collect();
    }
    Ok(out)
}

/// The entry count of the zip's end-of-central-directory record, when it has a plain (not zip64)
/// one: the last `PK\x05\x06` in the final 64 KiB + 22 bytes.
fn declared_entries(bytes: &[u8]) -> Option<usize> {
    let tail = bytes.len().saturating_sub(0xFFFF + 22);
    let at = (tail..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..i + 4] == *b"PK\x05\x06")?;
    let n = u16::from_le_bytes([bytes[at + 10], bytes[at + 11]]);
    (n != u16::MAX).then_some(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_folder_stripping() {
        let files: BTreeMap<String, Vec<u8>> = [
            ("a.json".to_string(), b"{}".to_vec()),
            ("b.bin".to_string(), vec![7u8; 1000]),
        ]
        .into();
        assert_eq!(read(&write(&files).unwrap()).unwrap(), files);
        let nested: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(k, v)| (format!("my_adapter/{k}"), v.clone()))
            .collect();
        assert_eq!(read(&write(&nested).unwrap()).unwrap(), files);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(read(b"").is_err());
        assert!(read(b"PK\x03\x04 definitely not a zip").is_err());
        let mut z = write(&[("x".to_string(), vec![1u8; 100])].into()).unwrap();
        let n = z.len();
        z.truncate(n / 2);
        assert!(read(&z).is_err());
    }

    /// A zip holding `entries` (name, bytes), stored with `method`.
    fn zip_with(entries: &[(&str, Vec<u8>)], method: CompressionMethod) -> Vec<u8> {
        let mut zw = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default()
            .compression_method(method)
            .large_file(false);
        for (name, bytes) in entries {
            zw.start_file(*name, opts).unwrap();
            zw.write_all(bytes).unwrap();
        }
        zw.finish().unwrap().into_inner()
    }

    #[test]
    fn hostile_zips_are_refused_by_name() {
        let err = |z: &[u8]| read(z).unwrap_err().to_string();
        // A bomb: 64 MiB of zeros deflate to about 64 KB.
        let bomb = zip_with(
            &[("x.jsonl", vec![0u8; 64 << 20])],
            CompressionMethod::Deflated,
        );
        assert!(
            err(&bomb).contains("looks like a zip bomb"),
            "{}",
            err(&bomb)
        );
        // Too many entries.
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_ZIP_ENTRIES)
            .map(|i| (format!("f{i}"), vec![]))
            .collect();
        let many: Vec<(&str, Vec<u8>)> =
            many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let z = zip_with(&many, CompressionMethod::Stored);
        assert!(
            err(&z).contains("more than the limit of 1000"),
            "{}",
            err(&z)
        );
        // Unsafe, control-character and repeated paths.
        let z = zip_with(
            &[("../../etc/passwd", b"x".to_vec())],
            CompressionMethod::Stored,
        );
        assert!(err(&z).contains("unsafe path"), "{}", err(&z));
        let z = zip_with(&[("a\u{7}b", b"x".to_vec())], CompressionMethod::Stored);
        assert!(err(&z).contains("control characters"), "{}", err(&z));
        // The writer refuses a repeated name, so rename the second entry in the bytes.
        let z = zip_with(
            &[("a.json", b"1".to_vec()), ("b.json", b"2".to_vec())],
            CompressionMethod::Stored,
        );
        let mut z = z;
        for i in 0..z.len() - 6 {
            if &z[i..i + 6] == b"b.json" {
                z[i] = b'a';
            }
        }
        assert!(err(&z).contains("appears twice"), "{}", err(&z));
    }
}
