//! A task's classifier head: dropout (training only) then `Linear(d, classes)` on the pooled vector.
//!
//! Initialised like PyTorch's `nn.Linear` (Kaiming-uniform with `a = sqrt(5)`, i.e. weight and bias
//! `U(-1/sqrt(d), 1/sqrt(d))`), from a seeded host generator so every backend starts identically.
//! Saved as safetensors in PyTorch layout: `weight [classes, d]`, `bias [classes]`.

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::dropout;
use super::weights::f32_from_le_bytes;
use crate::error::{Error, Result};
use crate::host;

/// Classification head of one task.
#[derive(Module, Debug)]
pub struct ClassifierHead {
    /// `d → classes`, burn layout `[d, classes]`.
    pub linear: Linear,
    /// Dropout before the linear in training (default 0.1).
    pub dropout: f64,
}

impl ClassifierHead {
    /// A freshly initialised head.
    pub fn init(d: usize, classes: usize, dropout: f64, seed: u64, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_4ead);
        let bound = 1.0 / (d as f64).sqrt();
        let w: Vec<f32> = (0..classes * d)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let b: Vec<f32> = (0..classes)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        Self::from_torch(w, b, d, classes, dropout, device)
    }

    fn from_torch(
        w: Vec<f32>,
        b: Vec<f32>,
        d: usize,
        classes: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let mut linear = LinearConfig::new(d, classes).init(device);
        let w = Tensor::<2>::from_data(TensorData::new(w, [classes, d]), device).transpose();
        linear.weight = Param::from_tensor(w);
        linear.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [classes]),
            device,
        )));
        Self { linear, dropout }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.linear.weight.shape().dims::<2>()[1]
    }

    /// # Shapes
    /// - pooled: `[batch, d]` → logits `[batch, classes]`
    pub fn forward(&self, pooled: Tensor<2>, train: bool) -> Tensor<2> {
        self.linear.forward(dropout(pooled, self.dropout, train))
    }

    /// Serialises to safetensors (`weight [classes, d]`, `bias [classes]`, PyTorch layout).
    pub async fn to_safetensors(&self) -> Result<Vec<u8>> {
        let w = self.linear.weight.val().transpose();
        let shape_w = w.dims().to_vec();
        let w = host::floats(w).await?;
        let b = match &self.linear.bias {
            Some(b) => host::floats(b.val()).await?,
            None => vec![0.0; shape_w[0]],
        };
        let wb: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        let bb: Vec<u8> = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = vec![
            (
                "weight".to_string(),
                TensorView::new(Dtype::F32, shape_w.clone(), &wb)
                    .map_err(|e| Error::Model(e.to_string()))?,
            ),
            (
                "bias".to_string(),
                TensorView::new(Dtype::F32, vec![shape_w[0]], &bb)
                    .map_err(|e| Error::Model(e.to_string()))?,
            ),
        ];
        let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::Model(e.to_string()))
    }

    /// Loads a head written by [`ClassifierHead::to_safetensors`], checking its width.
    pub fn from_safetensors(bytes: &[u8], d: usize, dropout: f64, device: &Device) -> Result<Self> {
        let bad = |m: String| Error::Adapter(format!("head.safetensors: {m}"));
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let w = st
            .tensor("weight")
            .map_err(|_| bad("no \"weight\" tensor".into()))?;
        let b = st
            .tensor("bias")
            .map_err(|_| bad("no \"bias\" tensor".into()))?;
        if w.dtype() != Dtype::F32 || b.dtype() != Dtype::F32 {
            return Err(bad("tensors must be F32".into()));
        }
        let (ws, bs) = (w.shape().to_vec(), b.shape().to_vec());
        if ws.len() != 2 || ws[1] != d || ws[0] == 0 || bs != [ws[0]] {
            return Err(bad(format!(
                "weight {ws:?} / bias {bs:?} do not fit a [classes, {d}] head"
            )));
        }
        Ok(Self::from_torch(
            f32_from_le_bytes(w.data()),
            f32_from_le_bytes(b.data()),
            d,
            ws[0],
            dropout,
            device,
        ))
    }
}
