//! Stage 1 (docs/design.md §1.2): train one LoRA adapter and a classifier head for one task.
//!
//! The encoder stays frozen on the plain device; the adapter and head live on its autodiff
//! counterpart, so gradients flow only into them (burn treats the frozen weights as constants).
//! Two AdamW optimisers give the adapter and the freshly initialised head their own learning rates.
//! Texts are tokenised once; each [`LoraTrainer::step`] takes one shuffled batch, runs forward and
//! backward on its shards at once (`super::shards`), sums their gradients, steps both optimisers
//! and reads the loss back asynchronously.

use super::plan::BatchPlan;
use super::schedule::TrainConfig;
use super::{Progress, cross_entropy, shards};
use crate::error::{Error, Result};
use crate::lora::{LoraAdapter, LoraConfig};
use crate::model::tokenizer::Tokens;
use crate::model::{ClassifierHead, Encoder, ForwardMode, TextTokenizer};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Version of stage 1's training step, bumped whenever a change makes the same settings and seed
/// train a different model. Snapshots of trained models (the benchmarks' caches) are keyed by it.
/// 2: data-parallel shards with per-shard seeded dropout (`super::shards`).
/// 3: shards cut as runs of the length order at the least padded work, not dealt evenly.
pub const STEP_VERSION: u32 = 3;

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
        let ad = self.device.clone().autodiff();
        self.model.adapter =
            crate::lora::peft::trainable_copy(adapter, &self.encoder.config, &ad).await?;
        Ok(self)
    }

    /// Starts the head from `head`'s weights (with this run's dropout) instead of a fresh one:
    /// LP-FT's probe, fitted on the starting adapter's vectors.
    pub async fn with_head(mut self, head: &ClassifierHead) -> Result<Self> {
        let bytes = head.to_safetensors().await?;
        let ad = self.device.clone().autodiff();
        let d = self.encoder.config.hidden_size;
        self.model.head = ClassifierHead::from_safetensors(&bytes, d, self.cfg.head_dropout, &ad)?;
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

    /// Runs one batch; `Ok(None)` once all steps are done. The batch is trained as
    /// [`shards`](super::shards) at once: each shard's forward and backward on its own thread, on
    /// its own copy of the adapter and head (so the shards' autodiff graphs share no node), then
    /// the gradients are summed and both optimisers step once.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        let Some((idx, epoch)) = self.plan.next_batch() else {
            return Ok(None);
        };
        let n = idx.len();
        let ad = self.device.clone().autodiff();
        let step = self.plan.steps_done();
        let len = |i: usize| self.tokens[i].ids.len();
        let (loss, grads) = shards::run(&idx, len, self.cfg.seed, step, |rows| {
            self.shard(rows, n, &ad)
        })
        .await?;
        let mut acc_adapter = GradientsAccumulator::<LoraAdapter>::new();
        let mut acc_head = GradientsAccumulator::<ClassifierHead>::new();
        for (g_adapter, g_head) in grads {
            acc_adapter.accumulate(&self.model.adapter, g_adapter);
            acc_head.accumulate(&self.model.head, g_head);
        }
        let lr = self.plan.lr(self.cfg.lr);
        let head_lr = self.plan.lr(self.cfg.head_lr);
        let TaskModel { adapter, head } = self.model.clone();
        self.model.adapter = self.opt_adapter.step(lr, adapter, acc_adapter.grads());
        self.model.head = self.opt_head.step(head_lr, head, acc_head.grads());
        Ok(Some(self.plan.done(n, epoch, loss, lr)))
    }

    /// One shard's forward and backward: its rows' summed cross-entropy divided by the batch's
    /// size `batch` (so the shards' gradients add up to the batch mean's), and the gradients of
    /// the adapter and head. Runs on a fresh copy of both (`fork`: the same parameters, new
    /// autodiff leaves).
    fn shard(
        &self,
        rows: &[usize],
        batch: usize,
        ad: &Device,
    ) -> (Tensor<1>, (GradientsParams, GradientsParams)) {
        let model = self.model.clone().fork(ad);
        let tokens: Vec<Tokens> = rows.iter().map(|&i| self.tokens[i].clone()).collect();
        let targets: Vec<i64> = rows.iter().map(|&i| self.labels[i] as i64).collect();
        let m = targets.len();
        let input = self.tokenizer.pad(&tokens);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [m]), &self.device);
        let mode = ForwardMode::train(Some(&model.adapter), self.cfg.encoder_dropout);
        let logits = model.logits(&self.encoder, &input, &mode, true, &self.device);
        let loss = cross_entropy(logits, targets).mul_scalar(m as f64 / batch as f64);
        let mut grads = loss.backward();
        let g_adapter = GradientsParams::from_module(&mut grads, &model.adapter);
        let g_head = GradientsParams::from_module(&mut grads, &model.head);
        (loss.detach(), (g_adapter, g_head))
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
