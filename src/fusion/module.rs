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

pub use super::options::{AUTHORS_BATCH, FusionOptions, Mixer};
use crate::model::{ClassifierHead, dropout};

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
    /// The variant's shape: the paper's fusion by default ([`FusionOptions::paper`]).
    #[config(default = "FusionOptions::paper()")]
    pub options: FusionOptions,
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
    /// With [`Mixer::Scalar`]: the weight of each source, `[K]`.
    pub mix: Option<Param<Tensor<1>>>,
    /// With `options.residual`: the own task's stage-1 head (frozen: its output is detached).
    pub own_head: Option<Linear>,
    /// Number of heads.
    pub heads: usize,
    /// Dropout before the classifier in training.
    pub dropout: f64,
    /// Which adapter is the target task's own (used with `options.residual` / `exclude_own`).
    #[module(skip)]
    pub own: Option<usize>,
    /// The variant's shape.
    #[module(skip)]
    pub options: FusionOptions,
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
    l.weight = Param::from_tensor(crate::model::weights::torch_linear_weight(
        TensorData::new(w, [d_out, d_in]),
        device,
    ));
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
        let mut f = AttentionFusion {
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
            mix: None,
            own_head: None,
            heads: self.heads,
            dropout: self.dropout,
            own: None,
            options: self.options,
        };
        if self.options.value_identity {
            f.value = identity(d, device);
            f.out = identity(d, device);
        }
        if self.options.mixer == Mixer::Scalar {
            let k = self.adapters.max(1);
            f.mix = Some(Param::from_tensor(Tensor::full(
                [k],
                1.0 / k as f32,
                device,
            )));
        }
        f
    }

    /// A fresh layer for target task `own` (its adapter's position) whose stage-1 `head` it
    /// needs with `options.residual` (the classifier then starts at zero, so the layer's logits
    /// are the head's) or `options.exclude_own`.
    pub fn init_for_task(
        &self,
        seed: u64,
        own: usize,
        head: &ClassifierHead,
        device: &Device,
    ) -> AttentionFusion {
        let mut f = self.init(seed, device);
        f.own = Some(own);
        if self.options.residual {
            f.own_head = Some(head.linear.clone());
            f.classifier.weight = Param::from_tensor(f.classifier.weight.val().zeros_like());
            f.classifier.bias = f
                .classifier
                .bias
                .map(|b| Param::from_tensor(b.val().zeros_like()));
        }
        f
    }

    /// Whether this configuration needs the target task's own adapter and head.
    pub fn needs_own(&self) -> bool {
        self.options.residual || self.options.exclude_own
    }
}

/// A `d × d` identity `Linear` with zero bias.
fn identity(d: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d, d).init(device);
    l.weight = Param::from_tensor(Tensor::eye(d, device));
    l.bias = Some(Param::from_tensor(Tensor::zeros([d], device)));
    l
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
    /// - mask: `[K]`, `true` = use this adapter (`None`: all)
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
        let mut keep: Vec<bool> = mask.map_or(vec![true; k], <[bool]>::to_vec);
        if self.options.exclude_own
            && let Some(own) = self.own
            && own < k
        {
            keep[own] = false;
        }
        let used = keep.iter().filter(|&&m| m).count();
        let qmask: Vec<f32> = keep.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
        let qmask = Tensor::<1>::from_data(TensorData::new(qmask, [k]), &device);
        let (a, weights) = match (&self.mix, used) {
            // Nothing left to mix (only the own adapter, left out): the base branch alone.
            (_, 0) => (
                Tensor::zeros([b, d], &device),
                Tensor::zeros([b, k], &device),
            ),
            (Some(mix), _) => {
                let w = mix.val() * qmask; // [k]
                let a = (h * w.clone().reshape([1, k, 1]))
                    .sum_dim(1)
                    .squeeze_dim::<2>(1);
                let share = w.clone().abs().div(w.abs().sum().add_scalar(1e-12));
                (a, share.reshape([1, k]).expand([b, k]))
            }
            (None, _) if self.options.across_batch => self.attend_across_batch(h),
            (None, _) => self.attend(h, &keep, qmask, used),
        };
        let a = self.attention_norm.forward(a);
        let u0 = self.base_norm.forward(base);
        let z = self.fused_norm.forward(a + self.base_proj.forward(u0));
        let mut logits = self.classifier.forward(dropout(z, self.dropout, train));
        if let (Some(head), Some(own)) = (&self.own_head, self.own)
            && own < k
        {
            let own_vec = adapters.slice([0..b, own..own + 1, 0..d]).reshape([b, d]);
            logits = logits + head.forward(own_vec).detach();
        }
        FusionOutput { logits, weights }
    }

    /// Multi-head self-attention over the kept task vectors `h` `[b, k, d]`, then the mean over
    /// the kept query positions: `a` `[b, d]`, and the attention averaged over heads and kept
    /// queries `[b, k]`.
    fn attend(
        &self,
        h: Tensor<3>,
        keep: &[bool],
        qmask: Tensor<1>,
        used: usize,
    ) -> (Tensor<2>, Tensor<2>) {
        let k = h.dims()[1];
        let (probs, attended) = self.attention(h.clone(), Some(keep));
        let attended = match self.options.query_residual {
            true => attended + h,
            false => attended,
        };
        let used = used.max(1) as f64;
        let a = (attended * qmask.clone().reshape([1, k, 1]))
            .sum_dim(1)
            .squeeze_dim::<2>(1)
            .div_scalar(used);
        let weights = (probs.mean_dim(1).squeeze_dim::<3>(1) * qmask.reshape([1, k, 1]))
            .sum_dim(1)
            .squeeze_dim::<2>(1)
            .div_scalar(used);
        (a, weights)
    }

    /// The authors' code: the same attention with the rows of the batch as the sequence, once per
    /// adapter (their `nn.MultiheadAttention` without `batch_first`), then the mean over adapters.
    /// Rows are taken in groups of [`AUTHORS_BATCH`] (their batch, so that scoring many rows at
    /// once sees what their training saw). The weights reported are uniform: there is no
    /// distribution over adapters.
    fn attend_across_batch(&self, h: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        let [b, k, d] = h.dims();
        let device = h.device();
        let groups: Vec<Tensor<2>> = (0..b)
            .step_by(AUTHORS_BATCH)
            .map(|s| {
                let e = (s + AUTHORS_BATCH).min(b);
                let g = h.clone().slice([s..e, 0..k, 0..d]);
                let (_, attended) = self.attention(g.swap_dims(0, 1), None); // [k, rows, d]
                attended.swap_dims(0, 1).mean_dim(1).squeeze_dim::<2>(1)
            })
            .collect();
        (
            Tensor::cat(groups, 0),
            Tensor::full([b, k], 1.0 / k as f32, &device),
        )
    }

    /// Scaled dot-product attention with `heads` heads over the positions of `x` `[n, p, d]`,
    /// keys masked by `keep` `[p]`: the probabilities `[n, heads, p, p]` and the output `[n, p, d]`.
    fn attention(&self, x: Tensor<3>, keep: Option<&[bool]>) -> (Tensor<4>, Tensor<3>) {
        let [n, p, d] = x.dims();
        let device = x.device();
        let hd = d / self.heads;
        let split = |y: Tensor<3>| y.reshape([n, p, self.heads, hd]).swap_dims(1, 2); // [n, heads, p, hd]
        let q = split(self.query.forward(x.clone()));
        let kk = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let tau = match self.options.attention_temperature {
            t if t.is_finite() && t > 0.0 => t,
            _ => 1.0,
        };
        let mut scores = q
            .matmul(kk.swap_dims(2, 3))
            .mul_scalar(1.0 / ((hd as f64).sqrt() * tau)); // [n, heads, p, p]
        if let Some(keep) = keep
            && keep.iter().any(|&m| !m)
        {
            let off: Vec<bool> = keep.iter().map(|&m| !m).collect();
            let off = Tensor::<1, Bool>::from_data(TensorData::new(off, [p]), &device)
                .reshape([1, 1, 1, p])
                .expand([n, self.heads, p, p]);
            scores = scores.mask_fill(off, -1e9);
        }
        let probs = softmax(scores, 3); // over keys
        let ctx = probs.clone().matmul(v).swap_dims(1, 2).reshape([n, p, d]);
        (probs, self.out.forward(ctx))
    }

    /// AdapterFusion's pull toward the identity, `λ · (‖I − V‖² + ‖I − O‖²)` (`None` when off).
    pub fn identity_penalty(&self) -> Option<Tensor<1>> {
        let lambda = self.options.value_penalty;
        if lambda <= 0.0 || self.mix.is_some() {
            return None;
        }
        let d = self.d_model();
        let device = self.value.weight.device();
        let eye = Tensor::<2>::eye(d, &device);
        let dist = |l: &Linear| (l.weight.val() - eye.clone()).powi_scalar(2).sum();
        Some((dist(&self.value) + dist(&self.out)).mul_scalar(lambda))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn inputs(b: usize, k: usize, d: usize, device: &Device) -> (Tensor<2>, Tensor<3>) {
        (
            Tensor::random([b, d], Distribution::Normal(0.0, 1.0), device),
            Tensor::random([b, k, d], Distribution::Normal(0.0, 1.0), device),
        )
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        crate::host::block_on(crate::host::floats(t)).unwrap()
    }

    #[test]
    fn every_residual_variant_starts_as_the_own_lora_exactly() {
        let device = Device::flex();
        let (d, k, own) = (32, 3, 1);
        let head = ClassifierHead::init(d, 4, 0.0, 9, &device);
        let (base, adapters) = inputs(5, k, d, &device);
        let own_vec = adapters
            .clone()
            .slice([0..5, own..own + 1, 0..d])
            .reshape([5, d]);
        let lora = values(head.forward(own_vec, false));
        for name in ["residual", "residual-others", "adapterfusion", "scalar"] {
            let options = FusionOptions::named(name).unwrap();
            let f = FusionConfig::new(d, k, 4)
                .with_options(options)
                .init_for_task(3, own, &head, &device);
            let out = f.forward(base.clone(), adapters.clone(), None, false);
            assert_eq!(values(out.logits), lora, "{name}");
        }
    }

    #[test]
    fn the_authors_code_depends_on_the_batch_and_ours_does_not() {
        let device = Device::flex();
        let (d, k) = (32, 3);
        let (base, adapters) = inputs(6, k, d, &device);
        let row = |f: &AttentionFusion, b: usize| {
            let out = f.forward(
                base.clone().slice([0..b, 0..d]),
                adapters.clone().slice([0..b, 0..k, 0..d]),
                None,
                false,
            );
            values(out.logits.slice([0..1, 0..2]))
        };
        // How far row 0's logits move when it is scored with 5 companions instead of alone.
        let moved = |f: &AttentionFusion| {
            let (alone, with_others) = (row(f, 1), row(f, 6));
            alone
                .iter()
                .zip(&with_others)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        };
        let authors = FusionConfig::new(d, k, 2)
            .with_options(FusionOptions::named("authors-code").unwrap())
            .init(1, &device);
        assert!(
            moved(&authors) > 1e-4,
            "the authors' code ignores the batch"
        );
        let ours = FusionConfig::new(d, k, 2).init(1, &device);
        assert!(moved(&ours) < 1e-5, "ours depends on the batch");
    }
}
