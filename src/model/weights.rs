//! Reading tensors out of a `model.safetensors` file into burn tensors.
//!
//! Only F32 tensors are read (what sentence-transformers ships). PyTorch `Linear` weights are
//! `[out, in]`; burn's `Linear` stores `[in, out]`, so [`Weights::linear`] transposes them.
//! Checkpoints whose keys carry a `bert.` prefix are accepted too. Parsing and decoding go
//! through [`crate::tensorfile`].

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::tensorfile::TensorFile;

/// A parsed safetensors file with helpers that build burn layers from it.
pub struct Weights<'a> {
    file: TensorFile<'a>,
    prefix: &'static str,
}

impl<'a> Weights<'a> {
    /// Parses the safetensors header; tensor data are read lazily by name.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let file = TensorFile::parse(bytes, "model.safetensors", Error::Model)?;
        let prefix = if file
            .names()
            .iter()
            .any(|n| n.starts_with("bert.embeddings."))
        {
            "bert."
        } else {
            ""
        };
        Ok(Self { file, prefix })
    }

    /// Reads tensor `name` (without the optional `bert.` prefix) as f32 values and its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        self.file.read(&format!("{}{}", self.prefix, name))
    }

    /// Reads tensor `name` with an expected shape onto `device`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        let values = self
            .file
            .read_shaped(&format!("{}{}", self.prefix, name), &shape)?;
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
        let w = self
            .file
            .read_shaped(&format!("{}{}.weight", self.prefix, prefix), &[d_out, d_in])?;
        let weight = torch_linear_weight(TensorData::new(w, [d_out, d_in]), device);
        let bias: Tensor<1> = self.tensor(&format!("{prefix}.bias"), [d_out], device)?;
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(bias)),
        })
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
        // Built directly: `EmbeddingConfig::init` would first draw n × d normal random values
        // (11.7 M for BERT's vocabulary) only to overwrite them.
        Ok(Embedding {
            weight: Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [n, d], device)?),
        })
    }
}

/// A matrix in PyTorch's `Linear` layout (`[out, in]`) as burn's `[in, out]`, transposed here into
/// a contiguous buffer. A transposed view would be copied again on every call: burn's `linear`
/// reshapes its weight (7 % of an encoder inference pass on the CPU backend).
pub fn torch_linear_weight(w: TensorData, device: &Device) -> Tensor<2> {
    let (d_out, d_in) = (w.shape()[0], w.shape()[1]);
    let Ok(values) = w.as_slice::<f32>() else {
        // Other dtypes: burn's transposed view, right but copied on use.
        return Tensor::<2>::from_data(w, device).transpose();
    };
    let mut t = vec![0f32; values.len()];
    for (o, row) in values.chunks_exact(d_in.max(1)).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            t[i * d_out + o] = v;
        }
    }
    Tensor::<2>::from_data(TensorData::new(t, [d_in, d_out]), device)
}
