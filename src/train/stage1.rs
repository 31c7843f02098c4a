//! Stage 1 (docs/design.md §1.2): train one LoRA adapter and a classifier head for one task.
//!
//! The encoder stays frozen on the plain device; the adapter and head live on its autodiff
//! counterpart, so gradients flow only into them (burn treats the frozen weights as constants).
//! Two AdamW optimisers give the adapter and the freshly initialised head their own learning rates.
//! Texts are tokenised once; each [`LoraTrainer::step`] pads one shuffled batch, runs forward,
//! backward and both optimiser steps, and reads the loss back asynchronously.

use super::plan::BatchPlan;
use super::schedule::TrainConfig;
use super::{Progress, cross_entropy};
use crate::error::{Error, Result};
use crate::host;
use crate::lora::{LoraAdapter, LoraConfig};
use crate::model::tokenizer::Tokens;
use crate::model::{ClassifierHead, Encoder, ForwardMode, TextTokenizer};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

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
    pub fn logits(
        &self,
        encoder: &Encoder,
        input: &crate::model::EncoderInput,
        mode: &ForwardMode,
        train: bool,
        device: &Device,
    ) -> Tensor<2> {
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
    plan: BatchPlan,
    cfg: TrainConfig,
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
            return Err(Error::Train(format!(
                "labels must be class indices below {classes} (at least 2 classes)"
            )));
        }
        let ad = device.clone().autodiff();
        ad.seed(cfg.seed);
        let adapter = LoraAdapter::init(lora, &encoder.config, cfg.seed, &ad)?;
        let head = ClassifierHead::init(
            encoder.config.hidden_size,
            classes,
            cfg.head_dropout,
            cfg.seed,
            &ad,
        );
        let tokens = texts
            .iter()
            .map(|t| tokenizer.encode(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            model: TaskModel { adapter, head },
            encoder: encoder.clone(),
            tokenizer: tokenizer.clone(),
            device: device.clone(),
            opt_adapter: cfg.optimizer(),
            opt_head: cfg.optimizer(),
            tokens,
            labels: labels.to_vec(),
            plan: BatchPlan::new(texts.len(), cfg),
            cfg: cfg.clone(),
        })
    }

    /// Starts from `adapter` (its own LoRA settings) instead of a fresh one: sequential transfer,
    /// a source task's adapter trained further on this task (the head stays fresh).
    pub async fn starting_from(mut self, adapter: &LoraAdapter) -> Result<Self> {
        let (config, weights) = crate::lora::peft::save(adapter).await?;
        let ad = self.device.clone().autodiff();
        self.model.adapter =
            crate::lora::peft::load(config.as_bytes(), &weights, &self.encoder.config, &ad)?;
        Ok(self)
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> usize {
        self.plan.total()
    }

    /// Steps in one pass over the training data.
    pub(crate) fn plan_steps_per_epoch(&self) -> usize {
        self.plan.steps_per_epoch()
    }

    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.plan.steps_done()
    }

    /// Runs one batch; `Ok(None)` once all steps are done.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        let Some((idx, epoch)) = self.plan.next_batch() else {
            return Ok(None);
        };
        let batch: Vec<Tokens> = idx.iter().map(|&i| self.tokens[i].clone()).collect();
        let targets: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        let n = targets.len();
        let input = self.tokenizer.pad(&batch);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &self.device);

        let mode = ForwardMode::train(Some(&self.model.adapter), self.cfg.encoder_dropout);
        let logits = self
            .model
            .logits(&self.encoder, &input, &mode, true, &self.device);
        let loss = cross_entropy(logits, targets);
        let mut grads = loss.backward();
        let loss = host::scalar(loss).await?;
        if !loss.is_finite() {
            return Err(Error::Train(format!(
                "loss became {loss} at step {}; lower the learning rate",
                self.plan.steps_done() + 1
            )));
        }
        let g_adapter = GradientsParams::from_module(&mut grads, &self.model.adapter);
        let g_head = GradientsParams::from_module(&mut grads, &self.model.head);
        let lr = self.plan.lr(self.cfg.lr);
        let head_lr = self.plan.lr(self.cfg.head_lr);
        let TaskModel { adapter, head } = self.model.clone();
        self.model.adapter = self.opt_adapter.step(lr, adapter, g_adapter);
        self.model.head = self.opt_head.step(head_lr, head, g_head);
        Ok(Some(self.plan.done(n, epoch, loss, lr)))
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
