//! The trainable part of a LoRA adapter: one `(A, B)` pair per targeted linear per layer.
//!
//! Initialisation follows PEFT / microsoft/LoRA (`loralib/layers.py`, `reset_parameters`):
//! A is Kaiming-uniform with `a = sqrt(5)` — for A of PyTorch shape `[r, in]` that is
//! `U(-1/sqrt(in), 1/sqrt(in))` — and B is zero, so a fresh adapter leaves every output unchanged.
//! Random values are drawn on the host from a seeded ChaCha generator, so the same seed gives the
//! same adapter on every backend (CPU, WebGPU).

use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{LoraConfig, Site};
use crate::error::Result;
use crate::model::BertConfig;
use crate::model::weights::torch_linear_weight;

/// One low-rank update `ΔW = B A` for a linear `d_in → d_out`.
#[derive(Module, Debug)]
pub struct LoraPair {
    /// A, stored `[d_in, r]` (burn layout; PEFT's `lora_A.weight` is its transpose `[r, d_in]`).
    pub a: Param<Tensor<2>>,
    /// B, stored `[r, d_out]` (PEFT's `lora_B.weight` is `[d_out, r]`).
    pub b: Param<Tensor<2>>,
}

impl LoraPair {
    /// `x A B` (without scaling).
    ///
    /// # Shapes
    /// - x: `[..., d_in]`
    /// - output: `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(linear(x, self.a.val(), None), self.b.val(), None)
    }
}

/// The LoRA pairs of one encoder layer; `None` where the site is not targeted.
#[derive(Module, Debug)]
pub struct LayerLora {
    /// `attention.self.query`
    pub query: Option<LoraPair>,
    /// `attention.self.key`
    pub key: Option<LoraPair>,
    /// `attention.self.value`
    pub value: Option<LoraPair>,
    /// `attention.output.dense`
    pub attention_output: Option<LoraPair>,
    /// `intermediate.dense`
    pub intermediate: Option<LoraPair>,
    /// `output.dense`
    pub output: Option<LoraPair>,
}

impl LayerLora {
    /// The pair at `site`, if targeted.
    pub fn get(&self, site: Site) -> Option<&LoraPair> {
        match site {
            Site::Query => self.query.as_ref(),
            Site::Key => self.key.as_ref(),
            Site::Value => self.value.as_ref(),
            Site::AttentionOutput => self.attention_output.as_ref(),
            Site::Intermediate => self.intermediate.as_ref(),
            Site::Output => self.output.as_ref(),
        }
    }

    fn slot(&mut self, site: Site) -> &mut Option<LoraPair> {
        match site {
            Site::Query => &mut self.query,
            Site::Key => &mut self.key,
            Site::Value => &mut self.value,
            Site::AttentionOutput => &mut self.attention_output,
            Site::Intermediate => &mut self.intermediate,
            Site::Output => &mut self.output,
        }
    }

    fn empty() -> Self {
        Self {
            query: None,
            key: None,
            value: None,
            attention_output: None,
            intermediate: None,
            output: None,
        }
    }
}

/// A LoRA adapter for every layer of the encoder.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// One entry per encoder layer.
    pub layers: Vec<LayerLora>,
    /// `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub scaling: f64,
    /// Dropout probability on the adapter input while training.
    pub dropout: f64,
    /// The settings the adapter was made with.
    #[module(skip)]
    pub config: LoraConfig,
}

impl LoraAdapter {
    /// A fresh adapter (A random, B zero) for `model`, seeded.
    pub fn init(
        config: &LoraConfig,
        model: &BertConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let sites = config.sites()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers = Vec::with_capacity(model.num_hidden_layers);
        for _ in 0..model.num_hidden_layers {
            let mut layer = LayerLora::empty();
            for &site in &sites {
                let (d_in, d_out) = site.dims(model.hidden_size, model.intermediate_size);
                let bound = 1.0 / (d_in as f64).sqrt();
                // Drawn in PyTorch's [r, in] order so a given seed means the same A everywhere.
                let a_rows: Vec<f32> = (0..config.r * d_in)
                    .map(|_| rng.random_range(-bound..bound) as f32)
                    .collect();
                let a = torch_linear_weight(TensorData::new(a_rows, [config.r, d_in]), device);
                let b = Tensor::<2>::zeros([config.r, d_out], device);
                *layer.slot(site) = Some(LoraPair {
                    a: Param::from_tensor(a),
                    b: Param::from_tensor(b),
                });
            }
            layers.push(layer);
        }
        Ok(Self {
            layers,
            scaling: config.scaling(),
            dropout: config.dropout,
            config: config.clone(),
        })
    }

    /// Builds an adapter from given `(layer, site) → (A [r,in], B [out,r])` PyTorch-layout values.
    pub fn from_pairs(
        config: &LoraConfig,
        num_layers: usize,
        pairs: Vec<(usize, Site, TensorData, TensorData)>,
        device: &Device,
    ) -> Self {
        let mut layers: Vec<LayerLora> = (0..num_layers).map(|_| LayerLora::empty()).collect();
        for (i, site, a, b) in pairs {
            if let Some(layer) = layers.get_mut(i) {
                let a = torch_linear_weight(a, device);
                let b = torch_linear_weight(b, device);
                *layer.slot(site) = Some(LoraPair {
                    a: Param::from_tensor(a),
                    b: Param::from_tensor(b),
                });
            }
        }
        Self {
            layers,
            scaling: config.scaling(),
            dropout: config.dropout,
            config: config.clone(),
        }
    }
}
