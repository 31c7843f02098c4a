//! Stage 2 (docs/design.md §1.3): train a task's attention fusion over frozen adapters.
//!
//! Everything below the fusion is frozen, so the K+1 pooled vectors of every example (base and each
//! adapter) are computed once into a [`FusionCache`] and the fusion epochs run on it; this changes
//! no result. [`FusionTrainer`] can also run uncached ([`VectorSource::Live`]), encoding each batch
//! anew — slower, and used to check that caching does not change the outcome.
//!
//! [`FusionTrainer::new_shared`] trains the shared variant instead: one fusion over the training
//! rows of every task at once, each row's loss taken over its own task's head only.

use super::plan::BatchPlan;
use super::schedule::TrainConfig;
use super::{Progress, cross_entropy, shards};
use crate::error::{Error, Result};
use crate::fusion::{AttentionFusion, FusionConfig};
use crate::host;
use crate::lora::LoraAdapter;
use crate::model::{ClassifierHead, Encoder, TextTokenizer, dropout};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

pub use super::fusion_cache::FusionCache;

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

/// For a shared fusion: where each task's head sits in the joint classifier, and the task of
/// every training row.
struct SharedHeads {
    /// Classes per task, in task order.
    classes: Vec<usize>,
    /// First logit of each task's head.
    offsets: Vec<usize>,
    /// Task of every training row.
    task_of_row: Vec<usize>,
}

/// One fusion step's inputs, taken on the host side
/// ([`ParallelStep::begin_step`](super::together::ParallelStep::begin_step)).
pub struct FusionBatch {
    rows: usize,
    epoch: usize,
    step: usize,
    targets: Tensor<1, Int>,
    base: Tensor<2>,
    adapters: Tensor<3>,
    keep: Option<Vec<bool>>,
    head_mask: Option<Tensor<2>>,
}

/// What a fusion step's tensor work leaves: its loss, unread.
pub struct FusionRan {
    loss: Tensor<1>,
    rows: usize,
    epoch: usize,
    lr: f64,
}

/// A stage-2 run, one batch per [`step`](FusionTrainer::step): one target task's fusion
/// ([`new`](FusionTrainer::new)), or one fusion shared by all tasks
/// ([`new_shared`](FusionTrainer::new_shared)).
pub struct FusionTrainer {
    fusion: AttentionFusion,
    shared: Option<SharedHeads>,
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
    /// `own` is the target task's adapter position and stage-1 head, which a residual fusion
    /// (or one that leaves the own adapter out) needs ([`FusionConfig::needs_own`]).
    pub fn new(
        source: VectorSource,
        labels: &[usize],
        fusion: &FusionConfig,
        own: Option<(usize, &ClassifierHead)>,
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
        if !(0.0..1.0).contains(&fusion.adapter_dropout) {
            return Err(Error::Train(format!(
                "adapter dropout must be in [0, 1), got {}",
                fusion.adapter_dropout
            )));
        }
        let layer = match own {
            Some((o, head)) if o < fusion.adapters && head.classes() == fusion.classes => {
                fusion.init_for_task(cfg.seed, o, head, &ad)
            }
            Some(_) => {
                return Err(Error::Train(
                    "the own adapter or head does not match the fusion".into(),
                ));
            }
            None if fusion.needs_own() => {
                return Err(Error::Train(
                    "this fusion variant needs the task's own adapter and head".into(),
                ));
            }
            None => fusion.init(cfg.seed, &ad),
        };
        Ok(Self {
            fusion: layer,
            shared: None,
            adapter_dropout: fusion.adapter_dropout,
            source,
            labels: labels.to_vec(),
            device: device.clone(),
            opt: cfg.optimizer(),
            plan: BatchPlan::new(n, cfg),
            cfg: cfg.clone(),
        })
    }

    /// The shared variant: one fusion trained on the rows of every task together, with one
    /// classifier head per task. Row `i` of `source` belongs to task `task_of_row[i]` and has
    /// class `labels[i]` of that task; `classes[t]` is task `t`'s class count. `fusion.classes`
    /// is ignored (the joint classifier has `sum(classes)` outputs). Each row's loss is the
    /// cross-entropy over its own task's head. Finish with [`finish_shared`](Self::finish_shared).
    pub fn new_shared(
        source: VectorSource,
        task_of_row: &[usize],
        labels: &[usize],
        classes: &[usize],
        fusion: &FusionConfig,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        if task_of_row.len() != labels.len() {
            return Err(Error::Train("one task per training row is required".into()));
        }
        if classes.iter().any(|&c| c < 2) {
            return Err(Error::Train("every task needs at least 2 classes".into()));
        }
        let offsets: Vec<usize> = classes
            .iter()
            .scan(0, |acc, &c| {
                let o = *acc;
                *acc += c;
                Some(o)
            })
            .collect();
        let mut joint = Vec::with_capacity(labels.len());
        for (&t, &l) in task_of_row.iter().zip(labels) {
            match classes.get(t) {
                Some(&c) if l < c => joint.push(offsets[t] + l),
                _ => {
                    return Err(Error::Train(format!(
                        "row label {l} of task {t} is not a class of that task"
                    )));
                }
            }
        }
        let mut fc = fusion.clone();
        fc.classes = classes.iter().sum();
        if fc.needs_own() {
            return Err(Error::Train(
                "a shared fusion has no own adapter: it takes the paper's variant only".into(),
            ));
        }
        let mut me = Self::new(source, &joint, &fc, None, cfg, device)?;
        me.shared = Some(SharedHeads {
            classes: classes.to_vec(),
            offsets,
            task_of_row: task_of_row.to_vec(),
        });
        Ok(me)
    }

    /// [`new_shared`](Self::new_shared) from per-task parts: for each task, the cache of its
    /// training rows, their labels and its class count, in task order.
    pub fn new_shared_from_tasks(
        tasks: &[(&FusionCache, &[usize], usize)],
        fusion: &FusionConfig,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        let caches: Vec<FusionCache> = tasks.iter().map(|t| t.0.clone()).collect();
        let task_of_row: Vec<usize> = tasks
            .iter()
            .enumerate()
            .flat_map(|(i, t)| std::iter::repeat_n(i, t.1.len()))
            .collect();
        let labels: Vec<usize> = tasks.iter().flat_map(|t| t.1.iter().copied()).collect();
        let classes: Vec<usize> = tasks.iter().map(|t| t.2).collect();
        Self::new_shared(
            VectorSource::Cached(FusionCache::concat(&caches)?),
            &task_of_row,
            &labels,
            &classes,
            fusion,
            cfg,
            device,
        )
    }

    /// `[n, total]` additive mask keeping only each row's own task head (0 there, -1e4 elsewhere).
    fn head_mask(&self, idx: &[usize], device: &Device) -> Option<Tensor<2>> {
        let s = self.shared.as_ref()?;
        let total: usize = s.classes.iter().sum();
        let mut m = vec![-1e4f32; idx.len() * total];
        for (r, &i) in idx.iter().enumerate() {
            let t = s.task_of_row[i];
            let start = r * total + s.offsets[t];
            m[start..start + s.classes[t]].fill(0.0);
        }
        Some(Tensor::from_data(
            TensorData::new(m, [idx.len(), total]),
            device,
        ))
    }

    /// Steps in one pass over the training data.
    pub(crate) fn plan_steps_per_epoch(&self) -> usize {
        self.plan.steps_per_epoch()
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

    /// Runs one batch; `Ok(None)` once all steps are done. Its dropout masks come from a scope
    /// seeded by the run's seed and the step ([`dropout::seeded`]), so runs stepped side by side
    /// ([`super::together`]) draw from no shared generator.
    pub async fn step(&mut self) -> Result<Option<Progress>> {
        let Some(batch) = self.begin_step().await? else {
            return Ok(None);
        };
        let ran = self.run_step(batch);
        self.end_step(ran).await.map(Some)
    }

    async fn begin_step(&mut self) -> Result<Option<FusionBatch>> {
        let Some((idx, epoch)) = self.plan.next_batch() else {
            return Ok(None);
        };
        let n = idx.len();
        let targets: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &self.device);
        let (base, adapters) = self.vectors(&idx).await?;
        let keep = self.adapter_mask(adapters.dims()[1]);
        let head_mask = self.head_mask(&idx, &self.device);
        Ok(Some(FusionBatch {
            rows: n,
            epoch,
            step: self.plan.steps_done(),
            targets,
            base,
            adapters,
            keep,
            head_mask,
        }))
    }

    fn run_step(&mut self, b: FusionBatch) -> FusionRan {
        let seed = shards::seed(self.cfg.seed, b.step, 0);
        let loss = dropout::seeded(seed, || {
            let out = self
                .fusion
                .forward(b.base, b.adapters, b.keep.as_deref(), true);
            let logits = match b.head_mask {
                Some(m) => out.logits + m,
                None => out.logits,
            };
            let mut loss = cross_entropy(logits, b.targets);
            if let Some(p) = self.fusion.identity_penalty() {
                loss = loss + p;
            }
            loss
        });
        let mut grads = loss.backward();
        let g = GradientsParams::from_module(&mut grads, &self.fusion);
        let lr = self.plan.lr(self.cfg.head_lr);
        self.fusion = self.opt.step(lr, self.fusion.clone(), g);
        FusionRan {
            loss: loss.detach(),
            rows: b.rows,
            epoch: b.epoch,
            lr,
        }
    }

    async fn end_step(&mut self, r: FusionRan) -> Result<Progress> {
        let loss = host::scalar(r.loss).await?;
        if !loss.is_finite() {
            return Err(Error::Train(format!(
                "fusion loss became {loss}; lower the learning rate"
            )));
        }
        Ok(self.plan.done(r.rows, r.epoch, loss, r.lr))
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

    /// The fusion as trained so far, for inference (per-epoch validation).
    pub fn current(&self) -> AttentionFusion {
        self.fusion.clone().valid()
    }

    /// Ends the run and returns the fusion for inference (for a shared run: the joint layer,
    /// whose classifier holds every task's head; see [`finish_shared`](Self::finish_shared)).
    pub fn finish(self) -> AttentionFusion {
        self.fusion.valid()
    }

    /// Ends a shared run and returns one layer per task (shared weights, the task's own head),
    /// ready for prediction and saving like per-task layers. Errors on a per-task run.
    pub fn finish_shared(self) -> Result<Vec<AttentionFusion>> {
        let classes = match &self.shared {
            Some(s) => s.classes.clone(),
            None => return Err(Error::Fusion("not a shared fusion run".into())),
        };
        self.fusion
            .valid()
            .split_heads(&classes)
            .ok_or_else(|| Error::Fusion("the joint classifier does not match the tasks".into()))
    }
}

impl super::together::ParallelStep for FusionTrainer {
    type Batch = FusionBatch;
    type Ran = FusionRan;
    async fn begin_step(&mut self) -> Result<Option<FusionBatch>> {
        FusionTrainer::begin_step(self).await
    }
    fn run_step(&mut self, batch: FusionBatch) -> FusionRan {
        FusionTrainer::run_step(self, batch)
    }
    async fn end_step(&mut self, ran: FusionRan) -> Result<Progress> {
        FusionTrainer::end_step(self, ran).await
    }
}

/// The fusion settings derived from a stage-1 config: cached steps are cheap, so 30 epochs (no
/// minimum step count: its epoch is chosen per epoch on held-out rows); learning rate = `head_lr`.
pub fn default_config(stage1: &TrainConfig) -> TrainConfig {
    TrainConfig {
        epochs: 30,
        min_steps: 0,
        ..stage1.clone()
    }
}
