//! Stage 2 (DESIGN §1.3): train a task's attention fusion over frozen adapters.
//!
//! Everything below the fusion is frozen, so the K+1 pooled vectors of every example (base and each
//! adapter) are computed once into a [`FusionCache`] and the fusion epochs run on it; this changes
//! no result. [`FusionTrainer`] can also run uncached ([`VectorSource::Live`]), encoding each batch
//! anew — slower, and used to check that caching does not change the outcome.

use super::plan::BatchPlan;
use super::predict::{EVAL_BATCH, SortedBatches};
use super::schedule::TrainConfig;
use super::{Progress, cross_entropy};
use crate::error::{Error, Result};
use crate::fusion::{AttentionFusion, FusionConfig};
use crate::host;
use crate::lora::LoraAdapter;
use crate::model::{Encoder, TextTokenizer};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The K+1 pooled vectors of a set of texts.
#[derive(Debug, Clone)]
pub struct FusionCache {
    /// `[n, d]` frozen-base vectors.
    pub base: Tensor<2>,
    /// `[n, K, d]` adapter vectors, adapters in fusion order.
    pub adapters: Tensor<3>,
}

impl FusionCache {
    /// Runs the K+1 encoder passes over `texts` (base, then each adapter).
    pub async fn build<S: AsRef<str>>(
        encoder: &Encoder,
        tokenizer: &TextTokenizer,
        adapters: &[&LoraAdapter],
        texts: &[S],
        device: &Device,
    ) -> Result<Self> {
        let batches = SortedBatches::new(tokenizer, texts, EVAL_BATCH)?;
        let base = batches.pooled(encoder, None, device).await?;
        let mut per = Vec::with_capacity(adapters.len());
        for a in adapters {
            per.push(
                batches
                    .pooled(encoder, Some(a), device)
                    .await?
                    .unsqueeze_dim::<3>(1),
            );
        }
        if per.is_empty() {
            return Err(Error::Fusion("fusion needs at least one adapter".into()));
        }
        Ok(Self {
            base,
            adapters: Tensor::cat(per, 1),
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.base.dims()[0]
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `idx` of the cache.
    pub fn select(&self, idx: &[usize], device: &Device) -> (Tensor<2>, Tensor<3>) {
        let n = idx.len();
        let i = Tensor::<1, Int>::from_data(
            TensorData::new(idx.iter().map(|&x| x as i64).collect::<Vec<_>>(), [n]),
            device,
        );
        (
            self.base.clone().select(0, i.clone()),
            self.adapters.clone().select(0, i),
        )
    }
}

/// Where a [`FusionTrainer`] gets its vectors.
pub enum VectorSource {
    /// Precomputed (the normal path).
    Cached(FusionCache),
    /// Encoded per batch (for checks).
    Live {
        /// Frozen encoder.
        encoder: Encoder,
        /// Tokenizer.
        tokenizer: TextTokenizer,
        /// Frozen adapters, fusion order.
        adapters: Vec<LoraAdapter>,
        /// Training texts.
        texts: Vec<String>,
    },
}

/// A stage-2 run for one target task, one batch per [`step`](FusionTrainer::step).
pub struct FusionTrainer {
    fusion: AttentionFusion,
    adapter_dropout: f64,
    source: VectorSource,
    labels: Vec<usize>,
    device: Device,
    opt: ModuleOptimizer,
    plan: BatchPlan,
    cfg: TrainConfig,
}

impl FusionTrainer {
    /// `labels[i]` is the class of example `i` of the source; the fusion learns at `cfg.head_lr`.
    pub fn new(
        source: VectorSource,
        labels: &[usize],
        fusion: &FusionConfig,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let n = match &source {
            VectorSource::Cached(c) => c.len(),
            VectorSource::Live { texts, .. } => texts.len(),
        };
        if n == 0 || n != labels.len() {
            return Err(Error::Train("no training examples for the fusion".into()));
        }
        if fusion.classes < 2 || labels.iter().any(|&l| l >= fusion.classes) {
            return Err(Error::Train(format!(
                "labels must be class indices below {} (at least 2 classes)",
                fusion.classes
            )));
        }
        if fusion.heads == 0 || fusion.d_model % fusion.heads != 0 {
            return Err(Error::Train(format!(
                "d_model {} is not divisible by {} heads",
                fusion.d_model, fusion.heads
            )));
        }
        let ad = device.clone().autodiff();
        ad.seed(cfg.seed);
        if !(0.0..1.0).contains(&fusion.adapter_dropout) {
            return Err(Error::Train(format!(
                "adapter dropout must be in [0, 1), got {}",
                fusion.adapter_dropout
            )));
        }
        Ok(Self {
            fusion: fusion.init(cfg.seed, &ad),
            adapter_dropout: fusion.adapter_dropout,
            source,
            labels: labels.to_vec(),
            device: device.clone(),
            opt: cfg.optimizer(),
            plan: BatchPlan::new(n, cfg),
            cfg: cfg.clone(),
        })
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> usize {
        self.plan.total()
    }

    async fn vectors(&self, idx: &[usize]) -> Result<(Tensor<2>, Tensor<3>)> {
        match &self.source {
            VectorSource::Cached(c) => Ok(c.select(idx, &self.device)),
            VectorSource::Live {
                encoder,
                tokenizer,
                adapters,
                texts,
            } => {
                let batch: Vec<&str> = idx.iter().map(|&i| texts[i].as_str()).collect();
                let refs: Vec<&LoraAdapter> = adapters.iter().collect();
                let c = FusionCache::build(encoder, tokenizer, &refs, &batch, &self.device).await?;
                Ok((c.base, c.adapters))
            }
        }
    }

    /// Runs one batch; `Ok(None)` once all steps are done.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        let Some((idx, epoch)) = self.plan.next_batch() else {
            return Ok(None);
        };
        let n = idx.len();
        let targets: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &self.device);
        let (base, adapters) = self.vectors(&idx).await?;
        let keep = self.adapter_mask(adapters.dims()[1]);
        let out = self.fusion.forward(base, adapters, keep.as_deref(), true);
        let loss = cross_entropy(out.logits, targets);
        let mut grads = loss.backward();
        let loss = host::scalar(loss).await?;
        if !loss.is_finite() {
            return Err(Error::Train(format!(
                "fusion loss became {loss}; lower the learning rate"
            )));
        }
        let g = GradientsParams::from_module(&mut grads, &self.fusion);
        let lr = self.plan.lr(self.cfg.head_lr);
        self.fusion = self.opt.step(lr, self.fusion.clone(), g);
        Ok(Some(self.plan.done(n, epoch, loss, lr)))
    }

    /// A random adapter mask for one batch (`None` when adapter dropout is off).
    fn adapter_mask(&mut self, k: usize) -> Option<Vec<bool>> {
        use rand::Rng;
        if self.adapter_dropout <= 0.0 || k < 2 {
            return None;
        }
        let mut keep: Vec<bool> = (0..k)
            .map(|_| self.plan.rng.random::<f64>() >= self.adapter_dropout)
            .collect();
        if !keep.iter().any(|&x| x) {
            let i = self.plan.rng.random_range(0..k);
            keep[i] = true;
        }
        Some(keep)
    }

    /// Ends the run and returns the fusion for inference.
    pub fn finish(self) -> AttentionFusion {
        self.fusion.valid()
    }
}

/// The fusion settings derived from a stage-1 config: cached steps are cheap, so 30 epochs;
/// learning rate = `head_lr`.
pub fn default_config(stage1: &TrainConfig) -> TrainConfig {
    TrainConfig {
        epochs: 30,
        ..stage1.clone()
    }
}
