//! One task's adapter folder (docs/design.md §3):
//!
//! | file | content |
//! | --- | --- |
//! | `adapter_config.json` | PEFT's LoRA config |
//! | `adapter_model.safetensors` | PEFT's LoRA weights (`base_model.model.encoder.layer.*.lora_{A,B}.weight`) |
//! | `head.safetensors` | the classifier head, `weight [classes, d]`, `bias [classes]` |
//! | `lorafuse_task.json` | task name, ordered labels, base model and its sha256, settings, metrics |
//! | `README.md` | the model card ([`super::card`]): all of the above in words, and the Python recipe |
//!
//! A folder written by PEFT's `save_pretrained` has only the first two: it loads as an adapter
//! without a head (good for `embed`, not for `predict`).

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::check_labels;
use crate::lora::{LoraAdapter, LoraConfig, peft};
use crate::model::{BertConfig, ClassifierHead};
use crate::train::{Metrics, TaskModel, TrainConfig};

/// File names inside an adapter folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT weights file name.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Head file name.
pub const HEAD: &str = "head.safetensors";
/// Metadata file name.
pub const META: &str = "lorafuse_task.json";

/// Format tag written into [`TaskMeta::format`].
pub const TASK_FORMAT: &str = "lorafuse-task/1";

/// What lorafuse records about a trained task next to PEFT's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMeta {
    /// Always [`TASK_FORMAT`].
    pub format: String,
    /// Task name.
    pub task: String,
    /// Label names; class `i` of the head is `labels[i]`.
    pub labels: Vec<String>,
    /// Base model name.
    pub base_model: String,
    /// sha256 of the base model's `model.safetensors`.
    pub base_model_sha256: String,
    /// LoRA settings.
    pub lora: LoraConfig,
    /// Training settings.
    pub train: TrainConfig,
    /// Number of training examples.
    pub train_examples: usize,
    /// Metrics on the evaluation split, if one was used.
    pub metrics: Option<Metrics>,
    /// sha256 of `adapter_model.safetensors` (identifies the adapter in a fused model).
    pub adapter_sha256: String,
    /// The training curve, one record per epoch (empty in files written before it existed).
    #[serde(default)]
    pub history: Vec<EpochRecord>,
    /// Temperature of the head's probabilities (`softmax(logits / T)`), fitted on held-out rows
    /// after training (docs/design.md §5.6); absent in older files: 1 (none).
    #[serde(default = "one")]
    pub temperature: f64,
    /// Where the adapter started and why (absent in older files and for a fresh adapter trained
    /// without a choice: fresh).
    #[serde(default)]
    pub start: Option<StartCheck>,
}

/// Where a task's adapter started, and the evidence of the automatic choice (docs/design.md
/// §1.2, "Transfer").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartCheck {
    /// The task whose adapter it started from (none: a fresh adapter).
    pub from: Option<String>,
    /// sha256 of that adapter's `adapter_model.safetensors` (empty for a fresh adapter).
    #[serde(default)]
    pub from_sha256: String,
    /// Whether the start was chosen automatically (else the user named it).
    pub automatic: bool,
    /// The rows the choice was checked on (the task's training rows, each scored by heads that
    /// did not train on it; 0 when no check was made).
    pub rows: usize,
    /// Folds of that check.
    pub folds: usize,
    /// Rows by which an adapter had to beat the frozen model to be started from (the larger of
    /// 2 and a tenth of `rows`, rounded up).
    pub lead: usize,
    /// The frozen base's fresh heads' accuracy on them.
    pub frozen_accuracy: f64,
    /// Each other task's adapter's fresh heads' accuracy on them, by task, in order.
    pub sources: Vec<(String, f64)>,
}

impl StartCheck {
    /// The start in one sentence, as the task card says it.
    pub fn describe(&self) -> String {
        let pct = |a: f64| format!("{:.1} %", 100.0 * a);
        let evidence = || {
            let sources: Vec<String> = self
                .sources
                .iter()
                .map(|(t, a)| format!("{t}'s adapter {}", pct(*a)))
                .collect();
            format!(
                "on its {} training examples, cross-validated over {} folds, a fresh head on the \
                 frozen model got {} right, on {}",
                self.rows,
                self.folds,
                pct(self.frozen_accuracy),
                sources.join(", ")
            )
        };
        match (&self.from, self.automatic, self.rows) {
            (Some(t), false, _) => format!("Started from {t}'s adapter (as set)"),
            (None, false, _) => "Started from a fresh adapter (as set)".into(),
            (Some(t), true, _) => format!(
                "Started from {t}'s adapter: it reads this task best ({})",
                evidence()
            ),
            (None, true, 0) => {
                "Started from a fresh adapter: no other task's adapter to start from".into()
            }
            (None, true, _) => format!(
                "Started from a fresh adapter: no other task's adapter got {} more examples right than the frozen model ({})",
                self.lead,
                evidence()
            ),
        }
    }
}

impl TaskMeta {
    /// Checks the fields a loaded task is built from against the fixed limits of
    /// [`crate::limits`]; the error names `task_meta.json` and the field.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Adapter(format!("{META}: {m}")));
        if self.format != TASK_FORMAT {
            return bad(format!(
                "format is {:?}, expected {TASK_FORMAT:?}",
                self.format
            ));
        }
        check_labels(&self.labels).or_else(bad)?;
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "temperature is {}; it must be positive",
                self.temperature
            ));
        }
        let settings = self.lora.validate().and_then(|_| self.train.validate());
        settings.or_else(|e| bad(format!("its settings are unusable: {e}")))
    }
}

fn one() -> f64 {
    1.0
}

/// One epoch of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub loss: f32,
    /// Accuracy on held-out examples at the end of the epoch, when there were some.
    pub val_accuracy: Option<f64>,
}

/// A task read back from its folder.
pub struct LoadedTask {
    /// The adapter.
    pub adapter: LoraAdapter,
    /// The head, when the folder has one.
    pub head: Option<ClassifierHead>,
    /// The metadata, when the folder has it.
    pub meta: Option<TaskMeta>,
    /// sha256 of `adapter_model.safetensors`.
    pub adapter_sha256: String,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Serialises a trained task to its folder's files. `meta.adapter_sha256` is filled in.
pub async fn to_files(model: &TaskModel, meta: &TaskMeta) -> Result<BTreeMap<String, Vec<u8>>> {
    let (config, weights) = peft::save(&model.adapter).await?;
    let head = model.head.to_safetensors().await?;
    let mut meta = meta.clone();
    meta.adapter_sha256 = sha256_hex(&weights);
    let card = super::card::model_card(&meta);
    let meta = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Adapter(e.to_string()))?;
    Ok(BTreeMap::from([
        (ADAPTER_CONFIG.to_string(), config.into_bytes()),
        (ADAPTER_WEIGHTS.to_string(), weights),
        (HEAD.to_string(), head),
        (META.to_string(), meta),
        (super::card::CARD.to_string(), card.into_bytes()),
    ]))
}

/// The folder's `lorafuse_task.json` as written, unchecked, when it has a readable one: for
/// looking at the base model it records before any weights are read.
pub fn peek_meta(files: &BTreeMap<String, Vec<u8>>) -> Option<TaskMeta> {
    files.get(META).and_then(|b| serde_json::from_slice(b).ok())
}

/// Reads a task folder's files (PEFT's two are required; head and metadata optional, but a head
/// without metadata or with a different class count is an error).
pub fn from_files(
    files: &BTreeMap<String, Vec<u8>>,
    model: &BertConfig,
    device: &Device,
) -> Result<LoadedTask> {
    let get = |name: &str| files.get(name).map(Vec::as_slice);
    let config = get(ADAPTER_CONFIG)
        .ok_or_else(|| Error::Adapter(format!("the adapter has no {ADAPTER_CONFIG}")))?;
    let weights = get(ADAPTER_WEIGHTS)
        .ok_or_else(|| Error::Adapter(format!("the adapter has no {ADAPTER_WEIGHTS}")))?;
    let adapter = peft::load(config, weights, model, device)?;
    let meta = match get(META) {
        Some(bytes) => {
            let m: TaskMeta = serde_json::from_slice(bytes)
                .map_err(|e| Error::Adapter(format!("{META}: {e}")))?;
            m.check()?;
            Some(m)
        }
        None => None,
    };
    let head = match get(HEAD) {
        Some(bytes) => {
            let head = ClassifierHead::from_safetensors(bytes, model.hidden_size, 0.0, device)?;
            let labels = meta.as_ref().map(|m| m.labels.len());
            if labels != Some(head.classes()) {
                return Err(Error::Adapter(format!(
                    "{HEAD} has {} classes but {META} lists {}",
                    head.classes(),
                    labels.map_or("no labels".to_string(), |n| n.to_string())
                )));
            }
            Some(head)
        }
        None => None,
    };
    Ok(LoadedTask {
        adapter,
        head,
        meta,
        adapter_sha256: sha256_hex(weights),
    })
}
