//! BERT self-attention with its output projection, residual and LayerNorm (post-LN), with LoRA
//! updates on whichever of query/key/value/output the adapter targets.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

use super::config::BertConfig;
use super::weights::Weights;
use super::{ForwardMode, dropout};
use crate::error::Result;
use crate::lora::LayerLora;
use crate::lora::linear::lora_linear;

/// Multi-head self-attention block of one BERT layer.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// `attention.self.query`
    pub query: Linear,
    /// `attention.self.key`
    pub key: Linear,
    /// `attention.self.value`
    pub value: Linear,
    /// `attention.output.dense`
    pub output: Linear,
    /// `attention.output.LayerNorm`
    pub norm: LayerNorm,
    /// Number of heads.
    pub heads: usize,
    /// Dropout on attention probabilities in training.
    pub attention_dropout: f64,
    /// Dropout on the projected output in training.
    pub hidden_dropout: f64,
}

impl SelfAttention {
    /// Loads `encoder.layer.{i}.attention.*`.
    pub fn load(w: &Weights, c: &BertConfig, prefix: &str, device: &Device) -> Result<Self> {
        let d = c.hidden_size;
        Ok(Self {
            query: w.linear(&format!("{prefix}.self.query"), d, d, device)?,
            key: w.linear(&format!("{prefix}.self.key"), d, d, device)?,
            value: w.linear(&format!("{prefix}.self.value"), d, d, device)?,
            output: w.linear(&format!("{prefix}.output.dense"), d, d, device)?,
            norm: w.layer_norm(
                &format!("{prefix}.output.LayerNorm"),
                d,
                c.layer_norm_eps,
                device,
            )?,
            heads: c.num_attention_heads,
            attention_dropout: c.attention_probs_dropout_prob,
            hidden_dropout: c.hidden_dropout_prob,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, d]`
    /// - mask_bias: `[batch, 1, 1, seq]`, 0 for real tokens and a large negative value for padding
    /// - output: `[batch, seq, d]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask_bias: Tensor<4>,
        lora: Option<&LayerLora>,
        mode: &ForwardMode,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let hd = d / self.heads;
        let split = |y: Tensor<3>| y.reshape([b, t, self.heads, hd]).swap_dims(1, 2);
        let q = split(lora_linear(
            &self.query,
            lora.and_then(|l| l.query.as_ref()),
            x.clone(),
            mode,
        ));
        let k = split(lora_linear(
            &self.key,
            lora.and_then(|l| l.key.as_ref()),
            x.clone(),
            mode,
        ));
        let v = split(lora_linear(
            &self.value,
            lora.and_then(|l| l.value.as_ref()),
            x.clone(),
            mode,
        ));
        let scale = 1.0 / (hd as f64).sqrt();
        let ctx = if mode.train || x.is_autodiff() || !crate::backend::is_host(&x.device()) {
            // Training (dropout on the probabilities, burn's autodiff) and the GPU.
            let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + mask_bias;
            let probs = dropout(softmax(scores, 3), self.attention_dropout, mode.train);
            probs.matmul(v)
        } else {
            // Inference on a CPU backend: burn's fused attention computes each head's scores,
            // softmax and weighted sum in one pass over a scratch row instead of four tensors.
            // The bias is given per query row ([batch, 1, seq, seq]) so it is read, not copied
            // per head.
            let bias = mask_bias.expand([b, 1, t, t]);
            let options = AttentionModuleOptions {
                scale: Some(scale),
                softcap: None,
                is_causal: false,
            };
            attention(q, k, v, None, Some(bias), options)
        };
        let ctx = ctx.swap_dims(1, 2).reshape([b, t, d]);
        let out = lora_linear(
            &self.output,
            lora.and_then(|l| l.attention_output.as_ref()),
            ctx,
            mode,
        );
        self.norm
            .forward(dropout(out, self.hidden_dropout, mode.train) + x)
    }
}
