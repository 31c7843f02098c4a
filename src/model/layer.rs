//! One post-LN BERT layer: self-attention block, then the feed-forward block
//! (`intermediate.dense` → exact GELU → `output.dense` → dropout → add & LayerNorm).

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor};

use super::attention::SelfAttention;
use super::config::BertConfig;
use super::gelu::gelu;
use super::weights::Weights;
use super::{ForwardMode, dropout};
use crate::error::Result;
use crate::lora::LayerLora;
use crate::lora::linear::lora_linear;

/// A BERT encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// The attention block.
    pub attention: SelfAttention,
    /// `intermediate.dense`, `d → ffn`.
    pub intermediate: Linear,
    /// `output.dense`, `ffn → d`.
    pub output: Linear,
    /// `output.LayerNorm`.
    pub norm: LayerNorm,
    /// Dropout on the FFN output in training.
    pub hidden_dropout: f64,
}

impl BertLayer {
    /// Loads `encoder.layer.{index}.*`.
    pub fn load(w: &Weights, c: &BertConfig, index: usize, device: &Device) -> Result<Self> {
        let p = format!("encoder.layer.{index}");
        let (d, f) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            attention: SelfAttention::load(w, c, &format!("{p}.attention"), device)?,
            intermediate: w.linear(&format!("{p}.intermediate.dense"), d, f, device)?,
            output: w.linear(&format!("{p}.output.dense"), f, d, device)?,
            norm: w.layer_norm(
                &format!("{p}.output.LayerNorm"),
                d,
                c.layer_norm_eps,
                device,
            )?,
            hidden_dropout: c.hidden_dropout_prob,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, d]`, mask_bias: `[batch, 1, 1, seq]`
    /// - output: `[batch, seq, d]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask_bias: Tensor<4>,
        lora: Option<&LayerLora>,
        mode: &ForwardMode,
    ) -> Tensor<3> {
        let h = self.attention.forward(x, mask_bias, lora, mode);
        let inter = gelu(lora_linear(
            &self.intermediate,
            lora.and_then(|l| l.intermediate.as_ref()),
            h.clone(),
            mode,
        ));
        let out = lora_linear(
            &self.output,
            lora.and_then(|l| l.output.as_ref()),
            inter,
            mode,
        );
        self.norm
            .forward(dropout(out, self.hidden_dropout, mode.train) + h)
    }
}
