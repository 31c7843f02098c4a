//! The Hugging Face `config.json` of a BERT-family encoder: the fields this crate reads.
//!
//! Only what the encoder needs is parsed; unknown keys are ignored. Only `gelu` (exact, erf-based)
//! is supported as the hidden activation, and only absolute position embeddings.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Architecture hyper-parameters of a BERT encoder, as written in HF `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Token vocabulary size (30522 for all-MiniLM-L6-v2).
    pub vocab_size: usize,
    /// Width of the hidden states, `d` (384).
    pub hidden_size: usize,
    /// Number of transformer layers (6).
    pub num_hidden_layers: usize,
    /// Number of attention heads per layer (12).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block (1536).
    pub intermediate_size: usize,
    /// Hidden activation; only `"gelu"` (erf) is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Dropout on hidden states during training (0.1).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities during training (0.1).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Number of learned positions (512).
    pub max_position_embeddings: usize,
    /// Number of token types (2).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (1e-12).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id (0).
    #[serde(default)]
    pub pad_token_id: usize,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Parses and checks a `config.json`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        let cfg: BertConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::Model(format!("config.json is not a BERT config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects configurations the encoder cannot run.
    pub fn validate(&self) -> Result<()> {
        if self.hidden_act != "gelu" {
            return Err(Error::Model(format!(
                "unsupported hidden_act {:?} (only \"gelu\")",
                self.hidden_act
            )));
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::Model(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        // Far above any BERT-family sentence encoder that fits in a browser; a crafted config
        // must not make the loader allocate first and fail later.
        let limits = [
            ("hidden_size", self.hidden_size, 4096),
            ("num_hidden_layers", self.num_hidden_layers, 48),
            ("num_attention_heads", self.num_attention_heads, 64),
            ("intermediate_size", self.intermediate_size, 16384),
            ("vocab_size", self.vocab_size, 500_000),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                8192,
            ),
            ("type_vocab_size", self.type_vocab_size, 16),
        ];
        if let Some((name, v, max)) = limits.iter().find(|(_, v, max)| v > max) {
            return Err(Error::Model(format!(
                "config.json: {name} is {v}, more than this engine accepts ({max})"
            )));
        }
        if self.num_hidden_layers == 0 || self.vocab_size == 0 || self.max_position_embeddings == 0
        {
            return Err(Error::Model(
                "config has zero layers, vocabulary or positions".into(),
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
