//! One read/write path for the crate's safetensors files: the base model's `model.safetensors`,
//! a task's `head.safetensors`, PEFT's `adapter_model.safetensors` and `fusion.safetensors`.
//!
//! [`TensorFile`] parses a byte buffer and reads named tensors as host `Vec<f32>`s, checking the
//! dtype (F32 only) and, where the caller knows it, the shape; [`write`] turns named f32 arrays
//! and string metadata into the bytes of a file. Every error is the caller's [`Error`] variant
//! with a message naming the file and the tensor.
//!
//! What it leaves out: burn tensors (callers read them back with the async `crate::host` helpers
//! first, and build layers from the returned values), dtypes other than F32 (F16/BF16 files are
//! refused with a message naming the dtype, as the loaders always did), and key naming (each file
//! format keeps its own). burn-store is not used: it cannot keep every tensor read async, which
//! WebGPU requires.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};

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
    /// A missing tensor or a dtype other than F32 is an error naming the file and the tensor.
    pub fn read(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let file = &self.file;
        let view = self
            .st
            .tensor(name)
            .map_err(|_| (self.err)(format!("{file} has no tensor {name:?}")))?;
        if view.dtype() != Dtype::F32 {
            return Err((self.err)(format!(
                "{file}: tensor {name:?} has dtype {:?}; only F32 is supported",
                view.dtype()
            )));
        }
        Ok((f32_from_le_bytes(view.data()), view.shape().to_vec()))
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

/// Decodes little-endian f32 bytes (safetensors' byte order).
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
    fn non_f32_is_an_error() {
        let data = [0u8; 4];
        let view = TensorView::new(Dtype::F16, vec![2], &data).unwrap();
        let bytes = safetensors::serialize([("h", view)], None).unwrap();
        let f = TensorFile::parse(&bytes, "h.safetensors", Error::Adapter).unwrap();
        let msg = f.read("h").unwrap_err().to_string();
        assert!(msg.contains("F16") && msg.contains("only F32"), "{msg}");
    }
}
