//! Reading tensors out of a `model.safetensors` file into burn tensors.
//!
//! Only F32 tensors are read (what sentence-transformers ships). PyTorch `Linear` weights are
//! `[out, in]`; burn's `Linear` stores `[in, out]`, so [`Weights::linear`] transposes them.
//! Checkpoints whose keys carry a `bert.` prefix are accepted too.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A parsed safetensors file with helpers that build burn layers from it.
pub struct Weights<'a> {
    st: SafeTensors<'a>,
    prefix: &'static str,
}

impl<'a> Weights<'a> {
    /// Parses the safetensors header; tensor data are read lazily by name.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            Error::Model(format!("model.safetensors is not a safetensors file: {e}"))
        })?;
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.embeddings.")) {
            "bert."
        } else {
            ""
        };
        Ok(Self { st, prefix })
    }

    /// Reads tensor `name` (without the optional `bert.` prefix) as f32 values and its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let full = format!("{}{}", self.prefix, name);
        let view = self
            .st
            .tensor(&full)
            .map_err(|_| Error::Model(format!("model.safetensors has no tensor {full:?}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(Error::Model(format!(
                "tensor {full:?} has dtype {:?}; only F32 is supported",
                view.dtype()
            )));
        }
        Ok((f32_from_le_bytes(view.data()), view.shape().to_vec()))
    }

    /// Reads tensor `name` with an expected shape onto `device`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        let (values, got) = self.read_f32(name)?;
        if got.as_slice() != shape.as_slice() {
            return Err(Error::Model(format!(
                "tensor {name:?} has shape {got:?}, expected {shape:?}"
            )));
        }
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// Builds a burn `Linear` from `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
    pub fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Linear> {
        let w: Tensor<2> = self.tensor(&format!("{prefix}.weight"), [d_out, d_in], device)?;
        let b: Tensor<1> = self.tensor(&format!("{prefix}.bias"), [d_out], device)?;
        let mut linear = LinearConfig::new(d_in, d_out).init(device);
        linear.weight = Param::from_tensor(w.transpose());
        linear.bias = Some(Param::from_tensor(b));
        Ok(linear)
    }

    /// Builds a burn `LayerNorm` from `{prefix}.weight` and `{prefix}.bias`.
    pub fn layer_norm(
        &self,
        prefix: &str,
        d: usize,
        eps: f64,
        device: &Device,
    ) -> Result<LayerNorm> {
        let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init(device);
        ln.gamma = Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [d], device)?);
        ln.beta = Some(Param::from_tensor(self.tensor(
            &format!("{prefix}.bias"),
            [d],
            device,
        )?));
        Ok(ln)
    }

    /// Builds a burn `Embedding` from `{prefix}.weight` `[n, d]`.
    pub fn embedding(
        &self,
        prefix: &str,
        n: usize,
        d: usize,
        device: &Device,
    ) -> Result<Embedding> {
        let mut emb = EmbeddingConfig::new(n, d).init(device);
        emb.weight =
            Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [n, d], device)?);
        Ok(emb)
    }
}

/// Decodes little-endian f32 bytes (safetensors' byte order).
pub fn f32_from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
