//! The `frozen` baseline (DESIGN §1.4, the authors' `feed_forward_FT`): the base encoder is run once
//! over the training texts, its mean-pooled vectors cached, and only a classifier head is trained
//! on them — by the same AdamW + schedule as stage 1, one step per batch.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::schedule::{TrainConfig, lr_at};
use super::{Progress, cross_entropy, now_sec};
use crate::error::{Error, Result};
use crate::host;
use crate::model::ClassifierHead;

/// A head trained on cached vectors, one batch per [`step`](ProbeTrainer::step).
pub struct ProbeTrainer {
    head: ClassifierHead,
    features: Tensor<2>,
    labels: Vec<usize>,
    device: Device,
    opt: ModuleOptimizer,
    order: Vec<usize>,
    cursor: usize,
    step: usize,
    total: usize,
    warmup: usize,
    epoch: usize,
    cfg: TrainConfig,
    rng: ChaCha8Rng,
    start: f64,
    seen: usize,
}

impl ProbeTrainer {
    /// `features`: `[n, d]` cached pooled vectors (plain device); `labels[i]` in `0..classes`.
    /// The head learns at `cfg.head_lr`.
    pub fn new(features: Tensor<2>, labels: &[usize], classes: usize, cfg: &TrainConfig, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let [n, d] = features.dims();
        if n == 0 || n != labels.len() {
            return Err(Error::Train("no training examples".into()));
        }
        if classes < 2 || labels.iter().any(|&l| l >= classes) {
            return Err(Error::Train(format!("labels must be class indices below {classes} (at least 2 classes)")));
        }
        let ad = device.clone().autodiff();
        ad.seed(cfg.seed);
        let head = ClassifierHead::init(d, classes, cfg.head_dropout, cfg.seed, &ad);
        let total = n.div_ceil(cfg.batch_size) * cfg.epochs;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0x0b5e_55ed));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        Ok(Self {
            head,
            features,
            labels: labels.to_vec(),
            device: device.clone(),
            opt: cfg.optimizer(),
            order,
            cursor: 0,
            step: 0,
            total,
            warmup: (total as f64 * cfg.warmup_ratio).round() as usize,
            epoch: 0,
            cfg: cfg.clone(),
            rng,
            start: now_sec(),
            seen: 0,
        })
    }

    /// Runs one batch; `Ok(None)` once all steps are done.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        if self.step >= self.total {
            return Ok(None);
        }
        if self.cursor >= self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
            self.epoch += 1;
        }
        let end = (self.cursor + self.cfg.batch_size).min(self.order.len());
        let idx: Vec<i64> = self.order[self.cursor..end].iter().map(|&i| i as i64).collect();
        let targets: Vec<i64> = self.order[self.cursor..end].iter().map(|&i| self.labels[i] as i64).collect();
        let epoch = self.epoch;
        self.cursor = end;
        let n = idx.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &self.device);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &self.device);
        let x = self.features.clone().select(0, idx);
        let loss = cross_entropy(self.head.forward(x, true), targets);
        let mut grads = loss.backward();
        let loss = host::scalar(loss).await?;
        let g = GradientsParams::from_module(&mut grads, &self.head);
        let lr = lr_at(self.cfg.head_lr, self.step, self.total, self.warmup);
        self.head = self.opt.step(lr, self.head.clone(), g);
        self.step += 1;
        self.seen += n;
        let elapsed = now_sec() - self.start;
        Ok(Some(Progress { step: self.step, total_steps: self.total, epoch, loss, lr, examples_per_sec: self.seen as f64 / elapsed.max(1e-9), elapsed_sec: elapsed }))
    }

    /// Ends the run and returns the head for inference.
    pub fn finish(self) -> ClassifierHead {
        self.head.valid()
    }
}

/// The probe's settings derived from a stage-1 config: the head sees cached vectors, so steps are
/// almost free and it gets more epochs (40) to converge; learning rate = the config's `head_lr`.
pub fn default_config(stage1: &TrainConfig) -> TrainConfig {
    TrainConfig { epochs: 40, ..stage1.clone() }
}
