//! The attention fusion layer of the hybrid method (docs/design.md §1.3):
//!
//! ```text
//! u_0 = LN_0(base vector)            u_s = LN_s(adapter s vector), s = 1..K
//! A   = MultiHeadSelfAttention(H, H, H) over H = [u_1 … u_K]   (4 heads, d model dims)
//! a   = LN_a(mean over the K positions of A)
//! b   = Linear(d, d)(u_0)
//! z   = LN_z(a + b)                  logits = Linear(d, classes)(z)
//! ```
//!
//! The attention follows `torch.nn.MultiheadAttention` (separate Q/K/V input projections with bias,
//! an output projection, scaled dot-product per head). The weights it reports are the attention
//! probabilities averaged over heads and query positions: one distribution over the K adapters per
//! input. An optional mask removes adapters from the attention (keys) and from the mean (queries).
//!
//! The shared variant (one fusion for all tasks, per-task heads; docs/design.md §1.3's option) is an
//! `AttentionFusion` whose classifier holds every task's head side by side: `classes` is the sum
//! of the tasks' class counts, and [`AttentionFusion::split_heads`] cuts it into one layer per
//! task that share everything but the classifier.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::dropout;

/// Configuration of an [`AttentionFusion`].
#[derive(Config, Debug, PartialEq)]
pub struct FusionConfig {
    /// Width of the pooled vectors, `d` (384 for MiniLM).
    pub d_model: usize,
    /// Number of task adapters fused, `K`.
    pub adapters: usize,
    /// Number of classes of the target task.
    pub classes: usize,
    /// Attention heads (default 4, as the authors).
    #[config(default = 4)]
    pub heads: usize,
    /// Dropout on `z` before the classifier in training (default 0.1).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm epsilon (default 1e-5, PyTorch's).
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Training only: probability of hiding each adapter from a batch (at least one stays), so
    /// the attention cannot settle on the task's own adapter alone (default 0: off, as the paper).
    #[config(default = 0.0)]
    pub adapter_dropout: f64,
}

/// The fusion layer for one target task.
#[derive(Module, Debug)]
pub struct AttentionFusion {
    /// `LN_s`, one per adapter.
    pub adapter_norms: Vec<LayerNorm>,
    /// `LN_0` on the base vector.
    pub base_norm: LayerNorm,
    /// Attention input projections.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Attention output projection.
    pub out: Linear,
    /// `LN_a`.
    pub attention_norm: LayerNorm,
    /// Base branch `Linear(d, d)`.
    pub base_proj: Linear,
    /// `LN_z`.
    pub fused_norm: LayerNorm,
    /// `Linear(d, classes)`.
    pub classifier: Linear,
    /// Number of heads.
    pub heads: usize,
    /// Dropout before the classifier in training.
    pub dropout: f64,
}

/// Logits and attention weights of a fusion forward pass.
#[derive(Debug, Clone)]
pub struct FusionOutput {
    /// `[batch, classes]`
    pub logits: Tensor<2>,
    /// `[batch, K]`, each row a distribution over the adapters.
    pub weights: Tensor<2>,
}

/// A `Linear` initialised like PyTorch's `nn.Linear` from a seeded host generator.
fn linear(d_in: usize, d_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let w: Vec<f32> = (0..d_in * d_out)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    let b: Vec<f32> = (0..d_out)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    let mut l = LinearConfig::new(d_in, d_out).init(device);
    l.weight = Param::from_tensor(
        Tensor::<2>::from_data(TensorData::new(w, [d_out, d_in]), device).transpose(),
    );
    l.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b, [d_out]),
        device,
    )));
    l
}

impl FusionConfig {
    /// A fresh fusion layer; the same seed gives the same weights on every backend.
    pub fn init(&self, seed: u64, device: &Device) -> AttentionFusion {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf0_5e_d0);
        let d = self.d_model;
        let ln = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.epsilon)
                .init(device)
        };
        AttentionFusion {
            adapter_norms: (0..self.adapters).map(|_| ln()).collect(),
            base_norm: ln(),
            query: linear(d, d, &mut rng, device),
            key: linear(d, d, &mut rng, device),
            value: linear(d, d, &mut rng, device),
            out: linear(d, d, &mut rng, device),
            attention_norm: ln(),
            base_proj: linear(d, d, &mut rng, device),
            fused_norm: ln(),
            classifier: linear(d, self.classes, &mut rng, device),
            heads: self.heads,
            dropout: self.dropout,
        }
    }
}

impl AttentionFusion {
    /// Number of adapters `K`.
    pub fn adapters(&self) -> usize {
        self.adapter_norms.len()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classifier.weight.shape().dims::<2>()[1]
    }

    /// Width `d`.
    pub fn d_model(&self) -> usize {
        self.query.weight.shape().dims::<2>()[0]
    }

    /// Cuts a shared fusion (classifier rows = the tasks' heads side by side, in task order) into
    /// one layer per task: each a copy of this layer whose classifier is that task's block.
    /// `classes[t]` is task `t`'s class count; they must add up to [`Self::classes`].
    pub fn split_heads(&self, classes: &[usize]) -> Option<Vec<AttentionFusion>> {
        if classes.iter().sum::<usize>() != self.classes() || classes.iter().any(|&c| c < 2) {
            return None;
        }
        let d = self.d_model();
        let weight = self.classifier.weight.val(); // [d, total]
        let bias = self.classifier.bias.as_ref().map(|b| b.val());
        let mut start = 0;
        let mut out = Vec::with_capacity(classes.len());
        for &c in classes {
            let mut f = self.clone();
            f.classifier.weight =
                Param::from_tensor(weight.clone().slice([0..d, start..start + c]));
            f.classifier.bias = bias
                .as_ref()
                .map(|b| Param::from_tensor(b.clone().slice([start..start + c])));
            out.push(f);
            start += c;
        }
        Some(out)
    }

    /// # Shapes
    /// - base: `[batch, d]` raw mean-pooled vector of the frozen base
    /// - adapters: `[batch, K, d]` raw mean-pooled vectors of the K adapters
    /// - mask: `[K]`, `true` = use this adapter (`None`: all); at least one must be `true`
    /// - output: logits `[batch, classes]`, weights `[batch, K]`
    pub fn forward(
        &self,
        base: Tensor<2>,
        adapters: Tensor<3>,
        mask: Option<&[bool]>,
        train: bool,
    ) -> FusionOutput {
        let [b, k, d] = adapters.dims();
        let device = adapters.device();
        let normed: Vec<Tensor<3>> = self
            .adapter_norms
            .iter()
            .enumerate()
            .map(|(s, ln)| ln.forward(adapters.clone().slice([0..b, s..s + 1, 0..d])))
            .collect();
        let h = Tensor::cat(normed, 1); // [b, k, d]
        let hd = d / self.heads;
        let split = |y: Tensor<3>| y.reshape([b, k, self.heads, hd]).swap_dims(1, 2); // [b, heads, k, hd]
        let q = split(self.query.forward(h.clone()));
        let kk = split(self.key.forward(h.clone()));
        let v = split(self.value.forward(h));
        let mut scores = q
            .matmul(kk.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt()); // [b, heads, k, k]
        let keep: Vec<bool> = mask.map_or(vec![true; k], <[bool]>::to_vec);
        if keep.iter().any(|&m| !m) {
            let off: Vec<bool> = keep.iter().map(|&m| !m).collect();
            let off = Tensor::<1, Bool>::from_data(TensorData::new(off, [k]), &device)
                .reshape([1, 1, 1, k])
                .expand([b, self.heads, k, k]);
            scores = scores.mask_fill(off, -1e9);
        }
        let probs = softmax(scores, 3); // over keys
        let ctx = probs.clone().matmul(v).swap_dims(1, 2).reshape([b, k, d]);
        let attended = self.out.forward(ctx); // [b, k, d]
        // Mean over the query positions that are kept.
        let used = keep.iter().filter(|&&m| m).count().max(1) as f64;
        let qmask: Vec<f32> = keep.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
        let qmask = Tensor::<1>::from_data(TensorData::new(qmask, [k]), &device);
        let a = (attended * qmask.clone().reshape([1, k, 1]))
            .sum_dim(1)
            .squeeze_dim::<2>(1)
            .div_scalar(used);
        let a = self.attention_norm.forward(a);
        let u0 = self.base_norm.forward(base);
        let z = self.fused_norm.forward(a + self.base_proj.forward(u0));
        let logits = self.classifier.forward(dropout(z, self.dropout, train));
        // Attention weights averaged over heads and kept query positions: [b, k].
        let weights = (probs.mean_dim(1).squeeze_dim::<3>(1) * qmask.reshape([1, k, 1]))
            .sum_dim(1)
            .squeeze_dim::<2>(1)
            .div_scalar(used);
        FusionOutput { logits, weights }
    }
}
