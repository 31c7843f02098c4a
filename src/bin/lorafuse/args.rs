//! Arguments several commands share: the model and backend, the data columns, the LoRA and
//! stage-1 settings, and the fusion's early stopping.

use std::path::PathBuf;

use clap::Args;

use lorafuse::data::holdout::TRAIN_ALL_BELOW_ROWS;
use lorafuse::experiment::fusion_job::FusionSpec;
use lorafuse::experiment::split::{DEFAULT_HOLDOUT_FRACTION, HoldoutPolicy};
use lorafuse::fusion::FusionOptions;
use lorafuse::lora::LoraConfig;
use lorafuse::train::{HeadInit, Objective, TrainConfig};

/// A setting named as in the saved settings (`probe`, `contrastive`, …).
fn parse_setting<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

/// Options of every command.
#[derive(Args, Clone)]
pub struct Common {
    /// Folder with config.json, model.safetensors (F32, F16 or BF16) and tokenizer.json of a
    /// BERT-family encoder; sentence-transformers' modules.json and 1_Pooling/config.json, when
    /// there, pick the pooling (mean, cls, max) and normalisation.
    #[arg(
        long,
        global = true,
        env = "LORAFUSE_MODEL_DIR",
        default_value = "public/models/all-MiniLM-L6-v2"
    )]
    pub model_dir: PathBuf,
    /// Compute backend: flex or ndarray (CPU), or wgpu when built with the `wgpu` feature.
    #[arg(long, global = true, default_value = lorafuse::backend::DEFAULT_CPU)]
    pub backend: String,
}

/// Which columns of an upload hold the text and the label.
#[derive(Args, Clone)]
pub struct Columns {
    /// Name of the text column (CSV/TSV header or JSON key).
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Name of the label column.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Field delimiter of a CSV file (one ASCII character, or `tab`); detected when not given.
    #[arg(long)]
    pub delimiter: Option<String>,
    /// The first row is data, not column names; the columns are then `1`, `2`, … (text 1 and
    /// label 2 unless `--text-column` / `--label-column` give other numbers).
    #[arg(long)]
    pub no_header: bool,
}

/// LoRA and stage-1 settings shared by `train` and `bench`.
#[derive(Args, Clone)]
pub struct TrainingArgs {
    /// LoRA rank.
    #[arg(long, default_value_t = 4)]
    pub r: usize,
    /// LoRA alpha (scaling = alpha / r).
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.1)]
    pub lora_dropout: f64,
    /// Comma-separated PEFT target modules (PEFT's `target_modules`).
    #[arg(long, default_value = "query,key,value", value_delimiter = ',')]
    pub target_modules: Vec<String>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Peak learning rate of the adapter.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Peak learning rate of the head.
    #[arg(long)]
    pub head_lr: Option<f64>,
    /// Batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Fewest optimizer steps of stage 1 (more epochs for a small task).
    #[arg(long)]
    pub min_steps: Option<usize>,
    /// Where stage 1's head starts: probe (fitted on the starting adapter's vectors: LP-FT) or
    /// random.
    #[arg(long, value_parser = parse_setting::<HeadInit>)]
    pub head_init: Option<HeadInit>,
    /// Stage 1's objective: auto (contrastive for few rows per class), classify or contrastive.
    #[arg(long, value_parser = parse_setting::<Objective>)]
    pub objective: Option<Objective>,
    /// Peak learning rate of the adapter under the contrastive objective.
    #[arg(long)]
    pub contrastive_lr: Option<f64>,
    /// Pairs per training row of the contrastive objective.
    #[arg(long)]
    pub pairs_per_example: Option<usize>,
    /// Share of the training rows held out (for evaluation in `train`, as the dev split in
    /// `bench`) when no test file is given; the same policy as the page (docs/design.md §4).
    #[arg(long, default_value_t = DEFAULT_HOLDOUT_FRACTION)]
    pub holdout: f64,
    /// A task with fewer rows than this (and no test file) holds none out: every row trains,
    /// and the checks are cross-validated (docs/design.md §4); 0: always hold out `--holdout`.
    #[arg(long, default_value_t = TRAIN_ALL_BELOW_ROWS)]
    pub train_all_below: usize,
}

impl TrainingArgs {
    /// The LoRA settings.
    pub fn lora(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.lora_dropout,
            target_modules: self.target_modules.clone(),
            ..Default::default()
        }
    }

    /// The training settings, library defaults where not given.
    pub fn train(&self, seed: u64) -> TrainConfig {
        let d = TrainConfig::default();
        TrainConfig {
            epochs: self.epochs.unwrap_or(d.epochs),
            lr: self.lr.unwrap_or(d.lr),
            head_lr: self.head_lr.unwrap_or(d.head_lr),
            batch_size: self.batch.unwrap_or(d.batch_size),
            min_steps: self.min_steps.unwrap_or(d.min_steps),
            head_init: self.head_init.unwrap_or(d.head_init),
            objective: self.objective.unwrap_or(d.objective),
            contrastive_lr: self.contrastive_lr.unwrap_or(d.contrastive_lr),
            pairs_per_example: self.pairs_per_example.unwrap_or(d.pairs_per_example),
            seed,
            ..d
        }
    }

    /// The held-out policy.
    pub fn holdout(&self) -> HoldoutPolicy {
        HoldoutPolicy {
            fraction: self.holdout,
            train_all_below: self.train_all_below,
        }
    }
}

/// Early stopping of the fusion (`fuse`, `bench`, `bench-transfer`).
#[derive(Args, Clone)]
pub struct PatienceArgs {
    /// End a fusion run this many epochs after its best epoch on the selection rows (held-out or
    /// cross-validated) without a better one; 0 trains every epoch. Runs without selection rows,
    /// and the paper's reproductions in the benchmarks (paper, authors-code), train every epoch.
    #[arg(long, default_value_t = FusionSpec::DEFAULT_PATIENCE)]
    pub fusion_patience: usize,
}

impl PatienceArgs {
    /// The patience for a run of `options`: none for the paper's reproductions, whose last
    /// epoch is what they report.
    pub fn for_options(&self, options: &FusionOptions) -> Option<usize> {
        let reproduction = !options.residual && !options.exclude_own;
        (self.fusion_patience > 0 && !reproduction).then_some(self.fusion_patience)
    }
}
