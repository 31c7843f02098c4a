//! The fusion job (docs/design.md §1.3): each target task's training rows encoded once by the base
//! and every adapter ([`FusionTarget`]), the fusion trained per task (the default) or shared by
//! all tasks through the driver, and the manifest that records what was fused. The page,
//! `lorafuse fuse` and `bench` all fuse through [`train_fusion`] / [`train_layer`].

use super::split::Labelled;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fusion::files::{FUSION_FORMAT, FusedAdapter, FusedTask, FusionManifest};
use crate::fusion::{AttentionFusion, FusionConfig};
use crate::lora::LoraAdapter;
use crate::train::stage2::{self, FusionCache, FusionTrainer, VectorSource};
use crate::train::{Observer, Outcome, TrainConfig, drive};

/// The job name of a shared fusion run (per-task runs are named after their task).
pub const SHARED_JOB: &str = "all tasks (shared)";

/// The fusion's training settings from a task's stage-1 settings (30 epochs at the head's
/// learning rate, [`stage2::default_config`]), with optional overrides.
pub fn fusion_train_config(
    stage1: &TrainConfig,
    epochs: Option<usize>,
    lr: Option<f64>,
) -> TrainConfig {
    let mut cfg = stage2::default_config(stage1);
    if let Some(e) = epochs {
        cfg.epochs = e;
    }
    if let Some(lr) = lr {
        cfg.head_lr = lr;
    }
    cfg
}

/// One target task of a fusion run: its training rows encoded by the base and every adapter.
#[derive(Debug, Clone)]
pub struct FusionTarget {
    /// Task name.
    pub name: String,
    /// Label names in class order.
    pub labels: Vec<String>,
    /// The K + 1 vectors of every training row.
    pub cache: FusionCache,
    /// Class of every cached row.
    pub y: Vec<usize>,
    /// The fusion's training settings for this task.
    pub cfg: TrainConfig,
    /// The task's held-out rows, encoded likewise, with their classes: the hybrid's temperature
    /// is fitted on them after training (none: temperature 1).
    pub held_out: Option<(FusionCache, Vec<usize>)>,
}

impl FusionTarget {
    /// Encodes `rows` with the base and each of `adapters` (fusion order).
    pub async fn encode(
        engine: &Engine,
        adapters: &[&LoraAdapter],
        name: &str,
        labels: Vec<String>,
        rows: &Labelled,
        cfg: TrainConfig,
    ) -> Result<Self> {
        let e = engine;
        let cache =
            FusionCache::build(&e.encoder, &e.tokenizer, adapters, &rows.texts, &e.device).await?;
        Ok(Self {
            name: name.to_string(),
            labels,
            cache,
            y: rows.labels.clone(),
            cfg,
            held_out: None,
        })
    }

    /// Adds the task's held-out `rows` (encoded by the base and each of `adapters`) to fit the
    /// hybrid's temperature on; no rows, nothing added.
    pub async fn with_held_out(
        mut self,
        engine: &Engine,
        adapters: &[&LoraAdapter],
        rows: &Labelled,
    ) -> Result<Self> {
        if !rows.is_empty() {
            let e = engine;
            let c = FusionCache::build(&e.encoder, &e.tokenizer, adapters, &rows.texts, &e.device)
                .await?;
            self.held_out = Some((c, rows.labels.clone()));
        }
        Ok(self)
    }

    /// The temperature of `layer`'s probabilities fitted on the held-out rows (1 without them).
    pub async fn fit_temperature(&self, layer: &AttentionFusion) -> Result<f64> {
        let Some((cache, labels)) = &self.held_out else {
            return Ok(1.0);
        };
        let out = layer.forward(cache.base.clone(), cache.adapters.clone(), None, false);
        let probs = super::compare::probability_rows(out.logits).await?;
        Ok(crate::train::calibration::fit_temperature(&probs, labels))
    }
}

/// The shape of the fusion to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusionSpec {
    /// Attention heads (default 4).
    pub heads: usize,
    /// One fusion shared by all tasks with a head per task, instead of one per task.
    pub shared: bool,
}

impl Default for FusionSpec {
    fn default() -> Self {
        Self {
            // The fusion layer's own default (4, as the authors).
            heads: FusionConfig::new(384, 1, 2).heads,
            shared: false,
        }
    }
}

/// What the caller of [`train_fusion`] sees: every step of every run (as an [`Observer`]), and
/// the start of each run.
pub trait FusionObserver: Observer<FusionTrainer> {
    /// A run named `job` (a task's name, or [`SHARED_JOB`]) of `total_steps` starts.
    fn start(&mut self, _job: &str, _total_steps: usize) {}
}

impl FusionObserver for () {}

/// A trained fusion and its manifest.
pub struct FusedModel {
    /// What was fused: adapters in order, the target tasks that got a layer.
    pub manifest: FusionManifest,
    /// One layer per task of `manifest.tasks`.
    pub layers: Vec<AttentionFusion>,
}

/// Trains one per-task fusion layer (`config`) on `target`'s cached rows.
pub async fn train_layer<O: FusionObserver>(
    target: &FusionTarget,
    config: &FusionConfig,
    engine: &Engine,
    observer: &mut O,
) -> Result<(AttentionFusion, Outcome)> {
    let source = VectorSource::Cached(target.cache.clone());
    let mut t = FusionTrainer::new(source, &target.y, config, &target.cfg, &engine.device)?;
    observer.start(&target.name, t.total_steps());
    let outcome = drive(&mut t, observer).await?;
    Ok((t.finish(), outcome))
}

/// Trains the fusion over `k` adapters for every target: one layer per task, or with
/// `spec.shared` one fusion for all (with the first target's settings) cut into per-task layers.
/// A stopped per-task run returns the layers finished so far, in target order.
pub async fn train_layers<O: FusionObserver>(
    engine: &Engine,
    k: usize,
    targets: &[FusionTarget],
    spec: &FusionSpec,
    observer: &mut O,
) -> Result<(Vec<AttentionFusion>, Outcome)> {
    let d = engine.encoder.config.hidden_size;
    let first = targets
        .first()
        .ok_or_else(|| Error::Fusion("the fusion needs at least one target task".into()))?;
    let config = |classes| FusionConfig::new(d, k, classes).with_heads(spec.heads);
    if spec.shared {
        let parts: Vec<(&FusionCache, &[usize], usize)> = targets
            .iter()
            .map(|t| (&t.cache, t.y.as_slice(), t.labels.len()))
            .collect();
        let mut t =
            FusionTrainer::new_shared_from_tasks(&parts, &config(2), &first.cfg, &engine.device)?;
        observer.start(SHARED_JOB, t.total_steps());
        let outcome = drive(&mut t, observer).await?;
        return Ok((t.finish_shared()?, outcome));
    }
    let mut layers = Vec::new();
    for target in targets {
        let (layer, outcome) =
            train_layer(target, &config(target.labels.len()), engine, observer).await?;
        layers.push(layer);
        if outcome == Outcome::Cancelled {
            return Ok((layers, outcome));
        }
    }
    Ok((layers, Outcome::Finished))
}

/// Trains the fusion over `adapters` for every target ([`train_layers`]), fits each layer's
/// temperature on its target's held-out rows, and records it in a manifest that lists exactly the
/// tasks that got a layer.
pub async fn train_fusion<O: FusionObserver>(
    engine: &Engine,
    adapters: &[FusedAdapter],
    targets: &[FusionTarget],
    spec: &FusionSpec,
    observer: &mut O,
) -> Result<(FusedModel, Outcome)> {
    let (layers, outcome) = train_layers(engine, adapters.len(), targets, spec, observer).await?;
    let mut tasks = Vec::with_capacity(layers.len());
    for (t, layer) in targets.iter().zip(&layers) {
        tasks.push(FusedTask {
            task: t.name.clone(),
            labels: t.labels.clone(),
            temperature: t.fit_temperature(layer).await?,
        });
    }
    let manifest = FusionManifest {
        format: FUSION_FORMAT.into(),
        base_model_sha256: engine.model_sha256.clone(),
        d_model: engine.encoder.config.hidden_size,
        heads: spec.heads,
        adapters: adapters.to_vec(),
        tasks,
        shared: spec.shared,
    };
    Ok((FusedModel { manifest, layers }, outcome))
}
