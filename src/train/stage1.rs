//! Stage 1 (DESIGN §1.2): train one LoRA adapter and a classifier head for one task.
//!
//! The encoder stays frozen on the plain device; the adapter and head live on its autodiff
//! counterpart, so gradients flow only into them (burn treats the frozen weights as constants).
//! Two AdamW optimisers give the adapter and the freshly initialised head their own learning rates.
//! Texts are tokenised once; each [`LoraTrainer::step`] pads one shuffled batch, runs forward,
//! backward and both optimiser steps, and reads the loss back asynchronously.

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
use crate::lora::{LoraAdapter, LoraConfig};
use crate::model::tokenizer::Tokens;
use crate::model::{ClassifierHead, Encoder, ForwardMode, TextTokenizer};

/// What stage 1 trains: one task's adapter and head.
#[derive(Module, Debug)]
pub struct TaskModel {
    /// The task's LoRA adapter.
    pub adapter: LoraAdapter,
    /// The task's classifier head.
    pub head: ClassifierHead,
}

impl TaskModel {
    /// Class logits for a tokenised batch.
    ///
    /// # Shapes
    /// - output: `[batch, classes]`
    pub fn logits(&self, encoder: &Encoder, input: &crate::model::EncoderInput, mode: &ForwardMode, train: bool, device: &Device) -> Tensor<2> {
        let pooled = encoder.pooled(input, Some(&self.adapter), mode, device);
        self.head.forward(pooled, train)
    }
}

/// A stage-1 training run, advanced one batch per [`step`](LoraTrainer::step).
pub struct LoraTrainer {
    model: TaskModel,
    encoder: Encoder,
    tokenizer: TextTokenizer,
    device: Device,
    opt_adapter: ModuleOptimizer,
    opt_head: ModuleOptimizer,
    tokens: Vec<Tokens>,
    labels: Vec<usize>,
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

impl LoraTrainer {
    /// Prepares a run: tokenises `texts`, initialises the adapter (A random, B zero) and the head.
    ///
    /// `labels[i]` is the class index of `texts[i]` in `0..classes`.
    pub fn new(
        encoder: &Encoder,
        tokenizer: &TextTokenizer,
        texts: &[String],
        labels: &[usize],
        classes: usize,
        lora: &LoraConfig,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        if texts.is_empty() || texts.len() != labels.len() {
            return Err(Error::Train("no training examples".into()));
        }
        if classes < 2 || labels.iter().any(|&l| l >= classes) {
            return Err(Error::Train(format!("labels must be class indices below {classes} (at least 2 classes)")));
        }
        let ad = device.clone().autodiff();
        ad.seed(cfg.seed);
        let adapter = LoraAdapter::init(lora, &encoder.config, cfg.seed, &ad)?;
        let head = ClassifierHead::init(encoder.config.hidden_size, classes, cfg.head_dropout, cfg.seed, &ad);
        let tokens = texts.iter().map(|t| tokenizer.encode(t)).collect::<Result<Vec<_>>>()?;
        let steps_per_epoch = texts.len().div_ceil(cfg.batch_size);
        let total = steps_per_epoch * cfg.epochs;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0x0b5e_55ed));
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.shuffle(&mut rng);
        Ok(Self {
            model: TaskModel { adapter, head },
            encoder: encoder.clone(),
            tokenizer: tokenizer.clone(),
            device: device.clone(),
            opt_adapter: cfg.optimizer(),
            opt_head: cfg.optimizer(),
            tokens,
            labels: labels.to_vec(),
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

    /// Total steps of the run.
    pub fn total_steps(&self) -> usize {
        self.total
    }

    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Whether the step just taken ended an epoch.
    pub fn at_epoch_end(&self) -> bool {
        self.cursor >= self.order.len() || self.step >= self.total
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
        let idx = &self.order[self.cursor..end];
        let epoch = self.epoch;
        self.cursor = end;
        let batch: Vec<Tokens> = idx.iter().map(|&i| self.tokens[i].clone()).collect();
        let targets: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        let n = targets.len();
        let input = self.tokenizer.pad(&batch);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &self.device);

        let mode = ForwardMode::train(Some(&self.model.adapter), self.cfg.encoder_dropout);
        let logits = self.model.logits(&self.encoder, &input, &mode, true, &self.device);
        let loss = cross_entropy(logits, targets);
        let mut grads = loss.backward();
        let loss = host::scalar(loss).await?;
        if !loss.is_finite() {
            return Err(Error::Train(format!("loss became {loss} at step {}; lower the learning rate", self.step + 1)));
        }
        let g_adapter = GradientsParams::from_module(&mut grads, &self.model.adapter);
        let g_head = GradientsParams::from_module(&mut grads, &self.model.head);
        let lr = lr_at(self.cfg.lr, self.step, self.total, self.warmup);
        let head_lr = lr_at(self.cfg.head_lr, self.step, self.total, self.warmup);
        let TaskModel { adapter, head } = self.model.clone();
        self.model.adapter = self.opt_adapter.step(lr, adapter, g_adapter);
        self.model.head = self.opt_head.step(head_lr, head, g_head);
        self.step += 1;
        self.seen += n;
        let elapsed = now_sec() - self.start;
        Ok(Some(Progress {
            step: self.step,
            total_steps: self.total,
            epoch,
            loss,
            lr,
            examples_per_sec: self.seen as f64 / elapsed.max(1e-9),
            elapsed_sec: elapsed,
        }))
    }

    /// The model as trained so far, for inference (no autodiff), without ending the run.
    pub fn snapshot(&self) -> TaskModel {
        self.model.valid()
    }

    /// Ends the run (finished or cancelled) and returns the trained model for inference.
    pub fn finish(self) -> TaskModel {
        self.model.valid()
    }
}
