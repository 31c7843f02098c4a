//! The LoRA forward of one targeted linear (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large
//! Language Models"; the same computation as PEFT's `lora.Linear.forward`):
//!
//! `W'x = Wx + b + (alpha/r) · B(A(dropout(x)))`
//!
//! The frozen base `W`, `b` are used as they are; only the low-rank pair (A, B) is trainable. The
//! scaling comes in ready-made (`alpha/r`, or rsLoRA's `alpha/sqrt(r)`: see `LoraConfig::scaling`).
//! What it leaves out: merging `B A` into `W` (the update is always applied on the fly, so one
//! base model serves every adapter), and DoRA (rejected when a config is read).

use burn::nn::Linear;
use burn::tensor::Tensor;

use super::adapter::LoraPair;
use crate::model::{ForwardMode, dropout};

/// A base linear plus, when given, its LoRA update: `W x + b + s · B A dropout(x)`, with
/// `s = mode.lora_scaling` (the adapter's `alpha / r`) and the dropout probability `mode.lora_dropout`.
/// Without a pair this is the base linear alone.
///
/// The tokens of all sequences go through as the rows of one `[batch · seq, d_in]` matrix: given a
/// 3-D input, burn's `linear` multiplies sequence by sequence (on the CPU backend: one matrix
/// product, and one packing of the weight, per sequence), and in the backward pass as well.
///
/// # Shapes
/// - x: `[batch, seq, d_in]`
/// - output: `[batch, seq, d_out]`
pub(crate) fn lora_linear(
    base: &Linear,
    lora: Option<&LoraPair>,
    x: Tensor<3>,
    mode: &ForwardMode,
) -> Tensor<3> {
    let [b, t, d_in] = x.dims();
    let x = x.reshape([b * t, d_in]);
    let y = match lora {
        None => base.forward(x),
        Some(pair) => {
            let y = base.forward(x.clone());
            let h = dropout(x, mode.lora_dropout, true);
            y + pair.forward(h).mul_scalar(mode.lora_scaling)
        }
    };
    let [_, d_out] = y.dims();
    y.reshape([b, t, d_out])
}
