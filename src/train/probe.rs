//! The `frozen` baseline (docs/design.md §1.4, the authors' `feed_forward_FT`): the base encoder is run once
//! over the training texts, its mean-pooled vectors cached, and only a classifier head is trained
//! on them — by the same AdamW + schedule as stage 1, one step per batch.

use super::plan::BatchPlan;
use super::schedule::TrainConfig;
use super::{Progress, cross_entropy};
use crate::error::{Error, Result};
use crate::host;
use crate::model::ClassifierHead;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A head trained on cached vectors, one batch per [`step`](ProbeTrainer::step).
pub struct ProbeTrainer {
    head: ClassifierHead,
    features: Tensor<2>,
    labels: Vec<usize>,
    device: Device,
    opt: ModuleOptimizer,
    plan: BatchPlan,
    cfg: TrainConfig,
}

impl ProbeTrainer {
    /// `features`: `[n, d]` cached pooled vectors (plain device); `labels[i]` in `0..classes`.
    /// The head learns at `cfg.head_lr`.
    pub fn new(
        features: Tensor<2>,
        labels: &[usize],
        classes: usize,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let [n, d] = features.dims();
        if n == 0 || n != labels.len() {
            return Err(Error::Train("no training examples".into()));
        }
        if classes < 2 || labels.iter().any(|&l| l >= classes) {
            return Err(Error::Train(format!(
                "labels must be class indices below {classes} (at least 2 classes)"
            )));
        }
        let ad = device.clone().autodiff();
        ad.seed(cfg.seed);
        let head = ClassifierHead::init(d, classes, cfg.head_dropout, cfg.seed, &ad);
        Ok(Self {
            head,
            features,
            labels: labels.to_vec(),
            device: device.clone(),
            opt: cfg.optimizer(),
            plan: BatchPlan::new(n, cfg),
            cfg: cfg.clone(),
        })
    }

    /// Steps in one pass over the training data.
    pub(crate) fn plan_steps_per_epoch(&self) -> usize {
        self.plan.steps_per_epoch()
    }

    /// Runs one batch; `Ok(None)` once all steps are done.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        let Some((batch, epoch)) = self.plan.next_batch() else {
            return Ok(None);
        };
        let idx: Vec<i64> = batch.iter().map(|&i| i as i64).collect();
        let targets: Vec<i64> = batch.iter().map(|&i| self.labels[i] as i64).collect();
        let n = idx.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &self.device);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &self.device);
        let x = self.features.clone().select(0, idx);
        let loss = cross_entropy(self.head.forward(x, true), targets);
        let mut grads = loss.backward();
        let loss = host::scalar(loss).await?;
        let g = GradientsParams::from_module(&mut grads, &self.head);
        let lr = self.plan.lr(self.cfg.head_lr);
        self.head = self.opt.step(lr, self.head.clone(), g);
        Ok(Some(self.plan.done(n, epoch, loss, lr)))
    }

    /// Ends the run and returns the head for inference.
    pub fn finish(self) -> ClassifierHead {
        self.head.valid()
    }
}

/// Fewest steps of a probe run: a step on cached vectors costs microseconds, and 16 rows at 40
/// epochs of 16 would be 40 steps, too few for the head to converge.
pub const PROBE_MIN_STEPS: usize = 300;

/// The probe's settings derived from a stage-1 config: the head sees cached vectors, so steps are
/// almost free and it gets more epochs (40, and at least [`PROBE_MIN_STEPS`] steps) to converge;
/// learning rate = the config's `head_lr`.
pub fn default_config(stage1: &TrainConfig) -> TrainConfig {
    TrainConfig {
        epochs: 40,
        min_steps: PROBE_MIN_STEPS,
        ..stage1.clone()
    }
}
