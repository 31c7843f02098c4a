//! One read/write path for the crate's safetensors files: the base model's `model.safetensors`,
//! a task's `head.safetensors`, PEFT's `adapter_model.safetensors` and `fusion.safetensors`.
//!
//! [`TensorFile`] parses a byte buffer and reads named tensors as host `Vec<f32>`s, checking the
//! dtype (F32, or F16/BF16 widened to f32), that every value is finite and, where the caller knows it, the shape;
//! [`write`] turns named f32 arrays and string metadata into the bytes of a file. Before the
//! `safetensors` crate sees a file, its header is checked here: at most
//! [`crate::limits::MAX_SAFETENSORS_HEADER`] bytes, inside the file, and no tensor name twice (the
//! crate would keep the last silently). The crate then checks dtypes, shapes and that the offsets
//! tile the data exactly. Every error is the caller's [`Error`] variant with a message naming the
//! file and the tensor.
//!
//! What it leaves out: burn tensors (callers read them back with the async `crate::host` helpers
//! first, and build layers from the returned values), writing anything but F32, integer and F64
//! tensors (refused with a message naming the dtype), and key naming (each file
//! format keeps its own). burn-store is not used: it cannot keep every tensor read async, which
//! WebGPU requires.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::error::{Error, Result};
use crate::limits::MAX_SAFETENSORS_HEADER;

/// A parsed safetensors buffer; tensor data are decoded lazily, by name.
pub struct TensorFile<'a> {
    st: SafeTensors<'a>,
    file: String,
    err: fn(String) -> Error,
}

impl<'a> TensorFile<'a> {
    /// Parses the header of `bytes`, the contents of the file called `file` (used in messages).
    /// Errors are built with `err`, the caller's variant (e.g. `Error::Model`).
    pub fn parse(bytes: &'a [u8], file: &str, err: fn(String) -> Error) -> Result<Self> {
        check_header(bytes).map_err(|m| err(format!("{file} is not a safetensors file: {m}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| err(format!("{file} is not a safetensors file: {e}")))?;
        Ok(Self {
            st,
            file: file.to_string(),
            err,
        })
    }

    /// The tensor names in the file, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names = self.st.names();
        names.sort_unstable();
        names
    }

    /// Reads tensor `name` as f32 values (row-major) with its shape.
    ///
    /// F16 and BF16 tensors (a base model saved in half precision) are widened to f32 exactly.
    /// A missing tensor or another dtype is an error naming the file and the tensor.
    pub fn read(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let file = &self.file;
        let view = self
            .st
            .tensor(name)
            .map_err(|_| (self.err)(format!("{file} has no tensor {name:?}")))?;
        let values = match view.dtype() {
            Dtype::F32 => f32_from_le_bytes(view.data()),
            Dtype::F16 => widen(view.data(), |b| half::f16::from_le_bytes(b).to_f32()),
            Dtype::BF16 => widen(view.data(), |b| half::bf16::from_le_bytes(b).to_f32()),
            other => {
                return Err((self.err)(format!(
                    "{file}: tensor {name:?} has dtype {other:?}; only F32, F16 and BF16 are \
                     supported"
                )));
            }
        };
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            let first = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err((self.err)(format!(
                "{file}: tensor {name:?} holds {bad} NaN or infinite value{} (the first at index \
                 {first}); the file is damaged, or the training that wrote it diverged",
                if bad == 1 { "" } else { "s" }
            )));
        }
        Ok((values, view.shape().to_vec()))
    }

    /// Reads tensor `name` as f32 values, checking that its shape is `expected`.
    pub fn read_shaped(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (values, shape) = self.read(name)?;
        if shape != expected {
            return Err((self.err)(format!(
                "{}: tensor {name:?} has shape {shape:?}, expected {expected:?}",
                self.file
            )));
        }
        Ok(values)
    }
}

/// Serialises named f32 tensors `(name, shape, values)` and string `metadata` to the bytes of a
/// safetensors file called `file` (used in messages, with `err` the caller's error variant).
///
/// Tensors are stored as little-endian F32; the order they are given in does not matter (the
/// format sorts them by name), so the same tensors always give the same bytes.
pub fn write<'t>(
    tensors: impl IntoIterator<Item = (&'t str, &'t [usize], &'t [f32])>,
    metadata: &[(&str, &str)],
    file: &str,
    err: fn(String) -> Error,
) -> Result<Vec<u8>> {
    let bytes: Vec<(&str, &[usize], Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            (
                name,
                shape,
                values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, b)| {
            TensorView::new(Dtype::F32, shape.to_vec(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| err(format!("cannot write tensor {name:?} of {file}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(meta)).map_err(|e| err(format!("cannot write {file}: {e}")))
}

/// Checks a safetensors file's header before it is parsed: the declared length is within the file
/// and [`MAX_SAFETENSORS_HEADER`], the header is a JSON object, and no key appears twice.
fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(len) = bytes.get(..8) else {
        return Err(format!(
            "it has {} bytes, fewer than the 8 of a header length",
            bytes.len()
        ));
    };
    let len = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
    if len > MAX_SAFETENSORS_HEADER as u64 {
        return Err(format!(
            "its header declares {len} bytes, more than the limit of {MAX_SAFETENSORS_HEADER}"
        ));
    }
    let header = bytes.get(8..8 + len as usize).ok_or_else(|| {
        format!(
            "its header declares {len} bytes, but the file has only {} after the length",
            bytes.len() - 8
        )
    })?;
    let mut de = serde_json::Deserializer::from_slice(header);
    de.deserialize_map(UniqueKeys)
        .map_err(|e| format!("its header is not a JSON object of tensors: {e}"))
}

/// A serde visitor over a JSON object that fails on a repeated key.
struct UniqueKeys;

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the tensor name {key:?} appears twice"
                )));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Decodes little-endian f32 bytes (safetensors' byte order).
/// Little-endian 16-bit floats to f32.
fn widen(bytes: &[u8], f: impl Fn([u8; 2]) -> f32) -> Vec<f32> {
    bytes.chunks_exact(2).map(|c| f([c[0], c[1]])).collect()
}

fn f32_from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let (w, b) = (vec![1.0f32, -2.5, 3.0, 0.25, 5.0, 6.0], vec![0.5f32, -0.5]);
        let bytes = write(
            [
                ("weight", &[2usize, 3][..], &w[..]),
                ("bias", &[2][..], &b[..]),
            ],
            &[("format", "pt")],
            "t.safetensors",
            Error::Model,
        )
        .unwrap();
        // The same tensors in another order give the same bytes.
        let again = write(
            [
                ("bias", &[2usize][..], &b[..]),
                ("weight", &[2, 3][..], &w[..]),
            ],
            &[("format", "pt")],
            "t.safetensors",
            Error::Model,
        )
        .unwrap();
        assert_eq!(bytes, again);
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );

        let f = TensorFile::parse(&bytes, "t.safetensors", Error::Model).unwrap();
        assert_eq!(f.names(), vec!["bias", "weight"]);
        assert_eq!(f.read("weight").unwrap(), (w.clone(), vec![2, 3]));
        assert_eq!(f.read_shaped("bias", &[2]).unwrap(), b);
        let msg = f.read("nope").unwrap_err().to_string();
        assert!(
            msg.contains("t.safetensors") && msg.contains("\"nope\""),
            "{msg}"
        );
        let msg = f.read_shaped("weight", &[3, 2]).unwrap_err().to_string();
        assert!(msg.contains("shape") && msg.contains("\"weight\""), "{msg}");
        let msg = TensorFile::parse(b"garbage", "x.safetensors", Error::Fusion)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.starts_with("fusion: x.safetensors is not a safetensors file"),
            "{msg}"
        );
    }

    #[test]
    fn other_dtypes_are_an_error() {
        let data = [0u8; 8];
        let view = TensorView::new(Dtype::I32, vec![2], &data).unwrap();
        let bytes = safetensors::serialize([("h", view)], None).unwrap();
        let f = TensorFile::parse(&bytes, "h.safetensors", Error::Adapter).unwrap();
        let msg = f.read("h").unwrap_err().to_string();
        assert!(
            msg.contains("I32") && msg.contains("only F32, F16 and BF16"),
            "{msg}"
        );
    }

    #[test]
    fn half_precision_is_widened_exactly() {
        let vals = [1.0f32, -2.5, 0.099975586, 65504.0];
        let f16: Vec<u8> = vals
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = vals
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let a = TensorView::new(Dtype::F16, vec![2, 2], &f16).unwrap();
        let b = TensorView::new(Dtype::BF16, vec![4], &bf16).unwrap();
        let bytes = safetensors::serialize([("a", a), ("b", b)], None).unwrap();
        let f = TensorFile::parse(&bytes, "m.safetensors", Error::Model).unwrap();
        let (got, shape) = f.read("a").unwrap();
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(got, vals.map(|v| half::f16::from_f32(v).to_f32()).to_vec());
        assert_eq!(got[0], 1.0);
        assert_eq!(got[3], 65504.0);
        let (got, _) = f.read("b").unwrap();
        assert_eq!(got, vals.map(|v| half::bf16::from_f32(v).to_f32()).to_vec());
        // An f16 infinity is refused like an f32 one.
        let inf = half::f16::INFINITY.to_le_bytes();
        let c = TensorView::new(Dtype::F16, vec![1], &inf).unwrap();
        let bytes = safetensors::serialize([("c", c)], None).unwrap();
        let f = TensorFile::parse(&bytes, "m.safetensors", Error::Model).unwrap();
        assert!(f.read("c").unwrap_err().to_string().contains("infinite"));
    }

    /// A file with the given raw JSON header and data bytes.
    fn raw(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn hostile_headers_and_values_are_refused_by_name() {
        let parse = |b: &[u8]| {
            TensorFile::parse(b, "a.safetensors", Error::Adapter)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        // A repeated name: serde (and so the safetensors crate) would keep the last one.
        let dup = raw(
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            &[0; 4],
        );
        assert!(
            parse(&dup).contains("\"w\" appears twice"),
            "{}",
            parse(&dup)
        );
        // A header length beyond the limit, or beyond the file.
        let mut huge = (u64::MAX).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(
            parse(&huge).contains("more than the limit"),
            "{}",
            parse(&huge)
        );
        let mut short = 100u64.to_le_bytes().to_vec();
        short.extend_from_slice(b"{}");
        assert!(
            parse(&short).contains("the file has only 2"),
            "{}",
            parse(&short)
        );
        assert!(parse(b"\x02\0\0\0\0\0\0\0[]").contains("not a JSON object"));
        // Offsets that do not tile the data, and a shape larger than its bytes.
        let gap = raw(
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &[0; 8],
        );
        assert!(
            parse(&gap).contains("not a safetensors file"),
            "{}",
            parse(&gap)
        );
        let big = raw(
            r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
            &[0; 4],
        );
        assert!(
            parse(&big).contains("not a safetensors file"),
            "{}",
            parse(&big)
        );
        // NaN and infinity are read as damage, naming the tensor.
        let bytes = write(
            [("w", &[3usize][..], &[1.0, f32::NAN, f32::INFINITY][..])],
            &[],
            "n.safetensors",
            Error::Adapter,
        )
        .unwrap();
        let f = TensorFile::parse(&bytes, "n.safetensors", Error::Adapter).unwrap();
        let msg = f.read("w").unwrap_err().to_string();
        assert!(
            msg.contains(
                "n.safetensors: tensor \"w\" holds 2 NaN or infinite values (the first at index 1)"
            ),
            "{msg}"
        );
    }
}
