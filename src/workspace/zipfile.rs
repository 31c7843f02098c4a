//! Zip archives of named files, for downloads and uploads (one task's adapter folder, a whole
//! workspace bundle), using the `zip` crate with deflate.
//!
//! Reading is defensive: at most [`MAX_ENTRIES`] entries and [`MAX_TOTAL_BYTES`] uncompressed
//! bytes (a zip bomb is an error, not an out-of-memory), no directory entries kept, and a single
//! top-level folder shared by every entry (as when a user zips the folder itself) is stripped.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::error::{Error, Result};

/// Most entries read from an upload.
pub const MAX_ENTRIES: usize = 10_000;
/// Most uncompressed bytes read from an upload (1 GiB).
pub const MAX_TOTAL_BYTES: u64 = 1 << 30;

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
    let mut za = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Error::Bundle(format!("not a zip file: {e}")))?;
    if za.len() > MAX_ENTRIES {
        return Err(Error::Bundle(format!(
            "the zip has {} entries (at most {MAX_ENTRIES})",
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
        let name = f
            .enclosed_name()
            .ok_or_else(|| Error::Bundle(format!("entry {:?} has an unsafe path", f.name())))?;
        let name = name.to_string_lossy().replace('\\', "/");
        if name.starts_with("__MACOSX/") || name.ends_with(".DS_Store") {
            continue;
        }
        let mut buf = Vec::new();
        let remaining = MAX_TOTAL_BYTES.saturating_sub(total);
        (&mut f)
            .take(remaining + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Bundle(format!("reading {name}: {e}")))?;
        total += buf.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(Error::Bundle(format!(
                "the zip unpacks to more than {MAX_TOTAL_BYTES} bytes"
            )));
        }
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
}
