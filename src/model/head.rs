//! A task's classifier head: dropout (training only) then `Linear(d, classes)` on the pooled vector.
//!
//! Initialised like PyTorch's `nn.Linear` (Kaiming-uniform with `a = sqrt(5)`, i.e. weight and bias
//! `U(-1/sqrt(d), 1/sqrt(d))`), from a seeded host generator so every backend starts identically.
//! Saved as safetensors in PyTorch layout: `weight [classes, d]`, `bias [classes]`.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dropout;
use crate::error::{Error, Result};
use crate::host;
use crate::tensorfile::{self, TensorFile};

/// The head's file name, in error messages.
const FILE: &str = "head.safetensors";

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

    /// A head from PyTorch-layout values: `w` `[classes, d]` row-major, `b` `[classes]`.
    pub fn from_torch(
        w: Vec<f32>,
        b: Vec<f32>,
        d: usize,
        classes: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let mut linear = LinearConfig::new(d, classes).init(device);
        let w = super::weights::torch_linear_weight(TensorData::new(w, [classes, d]), device);
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
        let classes = [shape_w[0]];
        tensorfile::write(
            [
                ("weight", &shape_w[..], &w[..]),
                ("bias", &classes[..], &b[..]),
            ],
            &[("format", "pt")],
            FILE,
            Error::Model,
        )
    }

    /// Loads a head written by [`ClassifierHead::to_safetensors`], checking its width.
    pub fn from_safetensors(bytes: &[u8], d: usize, dropout: f64, device: &Device) -> Result<Self> {
        let file = TensorFile::parse(bytes, FILE, Error::Adapter)?;
        let (w, ws) = file.read("weight")?;
        let (b, bs) = file.read("bias")?;
        if ws.len() != 2 || ws[1] != d || ws[0] == 0 || bs != [ws[0]] {
            return Err(Error::Adapter(format!(
                "{FILE}: weight {ws:?} / bias {bs:?} do not fit a [classes, {d}] head"
            )));
        }
        Ok(Self::from_torch(w, b, d, ws[0], dropout, device))
    }
}
