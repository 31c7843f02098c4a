//! Stage 1 of a task as one job (docs/design.md §1.2): a LoRA adapter and head trained on the
//! task's training rows through the driver, validated on up to 200 held-out rows at the end of
//! every epoch, and the metadata recorded beside the adapter. The page, `lorafuse train` and
//! `bench` all train through [`run_stage1`].

use super::split::{Labelled, PreparedTask};
use crate::engine::Engine;
use crate::error::Result;
use crate::experiment::compare::train_probe;
use crate::infer;
use crate::infer::pooled_vectors;
use crate::lora::{LoraAdapter, LoraConfig};
use crate::train::calibration::choose_temperature;
use crate::train::contrastive::ContrastiveTrainer;
use crate::train::metrics::evaluate;
use crate::train::{
    EpochEnd, HeadInit, LoraTrainer, Metrics, Objective, Observer, Outcome, Progress, TaskModel,
    TrainConfig, drive, now_sec,
};
use crate::workspace::task_files::{EpochRecord, TASK_FORMAT, TaskMeta};

/// What the caller of [`run_stage1`] sees of the run.
#[allow(async_fn_in_trait)]
pub trait Stage1Observer {
    /// Called before every step; `true` stops the run (what was trained is kept).
    async fn should_stop(&mut self) -> bool {
        false
    }
    /// Called after every step.
    fn on_step(&mut self, _p: &Progress) {}
    /// Called after every epoch with the curve so far (the new record last).
    fn on_epoch(&mut self, _history: &[EpochRecord]) {}
    /// Called after every completed epoch (the curve so far, the new record last): whether to
    /// call [`Stage1Observer::checkpoint`] now (it costs a copy of the model, and whatever the
    /// observer does to keep it).
    fn wants_checkpoint(&self, _history: &[EpochRecord]) -> bool {
        false
    }
    /// Called after a completed epoch when [`Stage1Observer::wants_checkpoint`] says so, with the
    /// model as trained so far and the curve, so a run cut short (the page reloaded) keeps what
    /// its completed epochs produced.
    async fn checkpoint(&mut self, _model: &TaskModel, _history: &[EpochRecord]) -> Result<()> {
        Ok(())
    }
}

impl Stage1Observer for () {}

/// A finished (or stopped) stage-1 run.
pub struct Stage1Run {
    /// The adapter and head as trained.
    pub model: TaskModel,
    /// One record per completed epoch (and one for a final partial epoch).
    pub history: Vec<EpochRecord>,
    /// Whether every step ran.
    pub outcome: Outcome,
    /// Steps run.
    pub steps: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// Temperature of the head's probabilities fitted on all held-out rows after training (1
    /// without held-out rows, or when not asked to use them).
    pub temperature: f64,
}

/// Adds per-epoch validation to the caller's observer.
struct Validating<'a, O> {
    inner: &'a mut O,
    engine: &'a Engine,
    validation: &'a Labelled,
    classes: usize,
    history: Vec<EpochRecord>,
}

impl<O: Stage1Observer> Observer<LoraTrainer> for Validating<'_, O> {
    async fn should_stop(&mut self) -> bool {
        self.inner.should_stop().await
    }

    fn on_step(&mut self, p: &Progress) {
        self.inner.on_step(p)
    }

    async fn on_epoch_end(&mut self, trainer: &LoraTrainer, e: EpochEnd) -> Result<()> {
        let m = trainer.snapshot();
        let val_accuracy =
            validation_accuracy(self.engine, &m, self.validation, self.classes).await?;
        self.history.push(EpochRecord {
            epoch: e.epoch,
            loss: e.mean_loss,
            val_accuracy,
        });
        self.inner.on_epoch(&self.history);
        if self.inner.wants_checkpoint(&self.history) {
            self.inner
                .checkpoint(&trainer.snapshot(), &self.history)
                .await?;
        }
        Ok(())
    }
}

/// Trains `task`'s adapter and head with `lora` and `cfg`. With `validate`, the held-out rows are
/// used: the accuracy of the first 200 after every epoch, and all of them to fit the head's
/// temperature at the end.
pub async fn run_stage1<O: Stage1Observer>(
    engine: &Engine,
    task: &PreparedTask,
    lora: &LoraConfig,
    cfg: &TrainConfig,
    validate: bool,
    observer: &mut O,
) -> Result<Stage1Run> {
    run_stage1_from(engine, task, Start::Fresh(lora), cfg, validate, observer).await
}

/// Where a stage-1 adapter starts.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    /// A fresh adapter with these settings (LoRA's init: A random, B zero).
    Fresh(&'a LoraConfig),
    /// A copy of another task's adapter (sequential transfer; its settings).
    From(&'a LoraAdapter),
}

/// [`run_stage1`] with the adapter starting at `start`.
///
/// The objective is [`TrainConfig::objective_for`] the task's size: classification (with
/// [`HeadInit::Probe`] the head starts from the probe's solution: LP-FT) or the contrastive stage
/// followed by a head fitted on the adapter's vectors.
pub async fn run_stage1_from<O: Stage1Observer>(
    engine: &Engine,
    task: &PreparedTask,
    start_at: Start<'_>,
    cfg: &TrainConfig,
    validate: bool,
    observer: &mut O,
) -> Result<Stage1Run> {
    let e = engine;
    let start = now_sec();
    // The adapter records the base model it is trained on (`adapter_config.json`).
    let mut lora = match start_at {
        Start::Fresh(l) => l.clone(),
        Start::From(a) => a.config.clone(),
    };
    lora.base_model_name_or_path = e.name.clone();
    let validation = if validate {
        task.validation()
    } else {
        Labelled::default()
    };
    let classes = task.vocab.len();
    let (model, history, outcome, steps) = match cfg.objective_for(task.train.len(), classes) {
        Objective::Contrastive => {
            contrastive(e, task, start_at, &lora, cfg, &validation, observer).await?
        }
        _ => classify(e, task, start_at, &lora, cfg, &validation, observer).await?,
    };
    let temperature = match validate && steps > 0 && !task.held_out.is_empty() {
        true => {
            let h = &task.held_out;
            let probs = infer::probabilities(
                &e.encoder,
                &e.tokenizer,
                Some(&model.adapter),
                &model.head,
                &h.texts,
                &e.device,
            )
            .await?;
            choose_temperature(&probs, &h.labels)
        }
        false => 1.0,
    };
    Ok(Stage1Run {
        steps,
        model,
        history,
        outcome,
        seconds: now_sec() - start,
        temperature,
    })
}

/// What either objective's run hands back: the model, the epoch records, how it ended, steps run.
type Trained = (TaskModel, Vec<EpochRecord>, Outcome, usize);

/// Stage 1 by cross-entropy through the adapter and head, validated after every epoch.
async fn classify<O: Stage1Observer>(
    e: &Engine,
    task: &PreparedTask,
    start_at: Start<'_>,
    lora: &LoraConfig,
    cfg: &TrainConfig,
    validation: &Labelled,
    observer: &mut O,
) -> Result<Trained> {
    let classes = task.vocab.len();
    let trainer = LoraTrainer::new(
        &e.encoder,
        &e.tokenizer,
        &task.train.texts,
        &task.train.labels,
        classes,
        lora,
        &cfg.scaled_to(task.train.len()),
        &e.device,
    )?;
    let source = match start_at {
        Start::Fresh(_) => None,
        Start::From(a) => Some(a),
    };
    let mut trainer = match source {
        None => trainer,
        Some(a) => trainer.starting_from(a).await?,
    };
    if cfg.head_init == HeadInit::Probe {
        // LP-FT: the head fitted on the starting adapter's vectors (a fresh adapter's are the
        // base's: B is zero), so fine-tuning starts where the probe ends.
        let x = pooled_vectors(
            &e.encoder,
            &e.tokenizer,
            source,
            &task.train.texts,
            &e.device,
        )
        .await?;
        let head = train_probe(x, &task.train.labels, classes, cfg, &e.device).await?;
        trainer = trainer.with_head(&head).await?;
    }
    let mut obs = Validating {
        inner: observer,
        engine: e,
        validation,
        classes,
        history: Vec::new(),
    };
    let outcome = drive(&mut trainer, &mut obs).await?;
    let history = obs.history;
    let steps = trainer.steps_done();
    Ok((trainer.finish(), history, outcome, steps))
}

/// Passes the caller's cancel and step reports through, and keeps the mean loss of the run.
struct Forwarding<'a, O> {
    inner: &'a mut O,
    mean_loss: f32,
}

impl<O: Stage1Observer> Observer<ContrastiveTrainer> for Forwarding<'_, O> {
    async fn should_stop(&mut self) -> bool {
        self.inner.should_stop().await
    }
    fn on_step(&mut self, p: &Progress) {
        self.inner.on_step(p)
    }
    async fn on_epoch_end(&mut self, _t: &ContrastiveTrainer, e: EpochEnd) -> Result<()> {
        self.mean_loss = e.mean_loss;
        Ok(())
    }
}

/// Stage 1 by the contrastive objective ([`crate::train::contrastive`]), then a head fitted on
/// the adapter's vectors; one epoch record (the pass over the pairs) with the held-out accuracy
/// of the finished model. A stopped run fits its head on the adapter as trained so far.
async fn contrastive<O: Stage1Observer>(
    e: &Engine,
    task: &PreparedTask,
    start_at: Start<'_>,
    lora: &LoraConfig,
    cfg: &TrainConfig,
    validation: &Labelled,
    observer: &mut O,
) -> Result<Trained> {
    let classes = task.vocab.len();
    let trainer = ContrastiveTrainer::new(
        &e.encoder,
        &e.tokenizer,
        &task.train.texts,
        &task.train.labels,
        lora,
        cfg,
        &e.device,
    )?;
    let mut trainer = match start_at {
        Start::Fresh(_) => trainer,
        Start::From(a) => trainer.starting_from(a).await?,
    };
    let mut obs = Forwarding {
        inner: observer,
        mean_loss: f32::NAN,
    };
    let outcome = drive(&mut trainer, &mut obs).await?;
    let mean_loss = obs.mean_loss;
    let steps = trainer.steps_done();
    let adapter = trainer.finish();
    let x = pooled_vectors(
        &e.encoder,
        &e.tokenizer,
        Some(&adapter),
        &task.train.texts,
        &e.device,
    )
    .await?;
    let head = train_probe(x, &task.train.labels, classes, cfg, &e.device).await?;
    let model = TaskModel { adapter, head };
    let mut history = Vec::new();
    if steps > 0 {
        let val_accuracy = validation_accuracy(e, &model, validation, classes).await?;
        history.push(EpochRecord {
            epoch: 1,
            loss: mean_loss,
            val_accuracy,
        });
        observer.on_epoch(&history);
    }
    Ok((model, history, outcome, steps))
}

/// Accuracy of `model` on `validation`; `None` without rows.
async fn validation_accuracy(
    e: &Engine,
    model: &TaskModel,
    validation: &Labelled,
    classes: usize,
) -> Result<Option<f64>> {
    if validation.is_empty() {
        return Ok(None);
    }
    let probs = infer::probabilities(
        &e.encoder,
        &e.tokenizer,
        Some(&model.adapter),
        &model.head,
        &validation.texts,
        &e.device,
    )
    .await?;
    Ok(Some(
        evaluate(&probs, &validation.labels, classes).0.accuracy,
    ))
}

impl Stage1Run {
    /// The metadata written beside the adapter (`lorafuse_task.json`).
    pub fn meta(
        &self,
        engine: &Engine,
        name: &str,
        task: &PreparedTask,
        lora: &LoraConfig,
        cfg: &TrainConfig,
        metrics: Option<Metrics>,
    ) -> TaskMeta {
        let mut meta = task_meta(engine, name, task, lora, cfg, &self.history);
        meta.metrics = metrics;
        meta.temperature = self.temperature;
        meta
    }
}

/// The metadata of `task`'s adapter after the epochs of `history` (no metrics, temperature 1:
/// what a checkpoint records; [`Stage1Run::meta`] adds them at the end of a run).
pub fn task_meta(
    engine: &Engine,
    name: &str,
    task: &PreparedTask,
    lora: &LoraConfig,
    cfg: &TrainConfig,
    history: &[EpochRecord],
) -> TaskMeta {
    TaskMeta {
        format: TASK_FORMAT.into(),
        task: name.to_string(),
        labels: task.vocab.names().to_vec(),
        base_model: engine.name.clone(),
        base_model_sha256: engine.model_sha256.clone(),
        lora: LoraConfig {
            base_model_name_or_path: engine.name.clone(),
            ..lora.clone()
        },
        train: cfg.clone(),
        train_examples: task.train.len(),
        metrics: None,
        adapter_sha256: String::new(),
        history: history.to_vec(),
        temperature: 1.0,
        start: None,
    }
}
