//! The session's jobs: stage 1 of a task, the fusion over all trained tasks and live prediction —
//! each through [`crate::experiment`], the code the CLI and `bench` run,
//! with progress sent to the page and a Cancel honoured between steps.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Fusion, Host, Session, Task, Trained};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::experiment::fusion_job::{FusionObserver, FusionSpec, SHARED_JOB, train_fusion};
use crate::experiment::stage1::task_meta;
use crate::experiment::stage1::{Start, run_stage1_from};
use crate::experiment::start::{
    AUTO_START_BELOW_ROWS, Source, check_start, named_start, recorded_start,
};
use crate::experiment::{FusionTarget, PreparedTask, Stage1Observer, fusion_train_config};
use crate::fusion::AttentionFusion;
use crate::fusion::files::{self as fusion_files, FusedAdapter};
use crate::infer::{Answerer, FreshHead, MultiTaskOutput, TaskParts, predict_all};
use crate::lora::{LoraAdapter, LoraConfig};
use crate::model::ClassifierHead;
use crate::train::{LoraTrainer, Observer, Outcome, Progress, TaskModel, TrainConfig, now_sec};
use crate::worker::protocol::{EpochPoint, Event, Job, JobProgress};
use crate::workspace::bundle::{StartFrom, TaskSettings};
use crate::workspace::task_files;
use crate::workspace::task_files::StartCheck;

/// Stage 1 as the page sees it: progress events, the curve after every epoch, Cancel, and
/// checkpoints saved with the workspace ([`checkpoint_due`]), so a reload during training keeps
/// what the completed epochs produced (docs/reliability.md).
struct PageStage1<'a, H> {
    session: &'a mut Session,
    host: &'a H,
    job: &'a Job,
    task: usize,
    prepared: &'a PreparedTask,
    settings: &'a TaskSettings,
    /// The LoRA settings the adapter trains with (the source's, when it starts from one).
    lora: &'a LoraConfig,
    /// Where the adapter started.
    start: &'a StartCheck,
    /// When the last checkpoint was saved ([`now_sec`]); `None` before the first.
    last_checkpoint: Option<f64>,
}

/// Seconds of training between two checkpoints of a run, at least.
pub(crate) const CHECKPOINT_EVERY_SEC: f64 = 10.0;

/// Whether a run saves a checkpoint after the epoch that just ended: after its first epoch always
/// (so a reload finds the task trained from then on), then once at least
/// [`CHECKPOINT_EVERY_SEC`] have passed since the last one (`since_last`, `None` before the
/// first). A reload so loses at most that much training plus the epoch under way.
///
/// Why not after every epoch: a checkpoint packs the whole workspace on the engine thread while
/// the training threads wait (10–60 ms in `scripts/bench-web`, more as the workspace grows), and
/// the page then stores it in IndexedDB on the same cores. With short epochs (small tasks, many
/// threads; about 1 s in that benchmark at 2 threads) that is several percent of the training
/// time, for a save that a few seconds later is superseded.
pub(crate) fn checkpoint_due(epochs_done: usize, since_last: Option<f64>) -> bool {
    epochs_done >= 1 && since_last.is_none_or(|s| s >= CHECKPOINT_EVERY_SEC)
}

impl<H: Host> Stage1Observer for PageStage1<'_, H> {
    async fn should_stop(&mut self) -> bool {
        self.host.pause().await;
        self.session.cancel.swap(false, Ordering::Relaxed)
    }
    fn on_step(&mut self, p: &Progress) {
        self.host.emit(progress_event(self.job, p));
    }
    fn on_epoch(&mut self, history: &[EpochPoint]) {
        self.session.tasks[self.task].curve = history.to_vec();
        self.host.emit(Event::Workspace(self.session.view()));
    }
    fn wants_checkpoint(&self, history: &[EpochPoint]) -> bool {
        checkpoint_due(history.len(), self.last_checkpoint.map(|t| now_sec() - t))
    }
    /// Saves the adapter of the completed epochs as the task's files (the in-memory model, and so
    /// what the page shows as trained, changes only when the run ends).
    async fn checkpoint(&mut self, model: &TaskModel, history: &[EpochPoint]) -> Result<()> {
        self.last_checkpoint = Some(now_sec());
        let s = self.settings;
        let name = self.session.tasks[self.task].state.name.clone();
        let mut meta = task_meta(
            &self.session.engine,
            &name,
            self.prepared,
            self.lora,
            &s.train,
            history,
        );
        meta.start = Some(self.start.clone());
        let files = task_files::to_files(model, &meta).await?;
        self.session.tasks[self.task].state.adapter = Some(files);
        self.session.drop_fusion(
            self.host,
            &format!("the adapter of {name:?} is being trained"),
        );
        self.session.changed(self.host, true)
    }
}

/// The fusion as the page sees it: progress events named after the run, Cancel.
struct PageFusion<'a, H> {
    host: &'a H,
    cancel: &'a AtomicBool,
    job: Job,
}

impl<H: Host, T> Observer<T> for PageFusion<'_, H> {
    async fn should_stop(&mut self) -> bool {
        self.host.pause().await;
        self.cancel.swap(false, Ordering::Relaxed)
    }
    fn on_step(&mut self, p: &Progress) {
        self.host.emit(progress_event(&self.job, p));
    }
}

impl<H: Host> FusionObserver for PageFusion<'_, H> {
    fn start(&mut self, job: &str, _total_steps: usize) {
        self.job = Job::Fusion(job.to_string());
    }
}

fn progress_event(job: &Job, p: &Progress) -> Event {
    Event::Progress(JobProgress {
        job: job.clone(),
        step: p.step,
        total_steps: p.total_steps,
        epoch: p.epoch,
        loss: p.loss,
        examples_per_sec: p.examples_per_sec,
        eta_sec: p.eta_sec(),
    })
}

impl Session {
    /// Compares this session's backend with `cpu` on the embedding of `text`, and runs one LoRA
    /// training step on this session's backend (reading only the loss back, asynchronously).
    pub async fn backend_check(&self, cpu: &Engine, text: &str) -> Result<Event> {
        let e = &self.engine;
        let start = now_sec();
        let a = e.embed(&[text], None).await?;
        let embed_ms = (now_sec() - start) * 1000.0;
        let b = cpu.embed(&[text], None).await?;
        let max_abs_diff = a[0]
            .iter()
            .zip(&b[0])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 2,
            ..Default::default()
        };
        let texts = [
            text.to_string(),
            "a completely different sentence".to_string(),
        ];
        let start = now_sec();
        let mut tr = LoraTrainer::new(
            &e.encoder,
            &e.tokenizer,
            &texts,
            &[0, 1],
            2,
            &crate::lora::LoraConfig::default(),
            &cfg,
            &e.device,
        )?;
        let p = tr
            .step()
            .await?
            .ok_or_else(|| Error::Train("the check's training step did not run".into()))?;
        Ok(Event::BackendCheck {
            max_abs_diff,
            step_loss: p.loss,
            embed_ms,
            step_ms: (now_sec() - start) * 1000.0,
        })
    }

    /// Stage 1 of one task on its training rows (the held-out policy of its settings), through
    /// [`run_stage1`]; a cancelled run keeps what it trained.
    pub(super) async fn train_task<H: Host>(&mut self, task: &str, host: &H) -> Result<()> {
        let i = self.index(task)?;
        let state = self.tasks[i].state.clone();
        if state.examples.is_empty() {
            return Err(Error::Train(format!(
                "task {task:?} has no examples: upload a file first"
            )));
        }
        let s = &state.settings;
        let prepared = PreparedTask::new(
            &state.examples,
            &state.test_examples,
            &s.holdout,
            s.train.seed,
        )?;
        let engine = self.engine.clone();
        let job = Job::Task(task.to_string());
        self.cancel.store(false, Ordering::Relaxed);
        self.tasks[i].curve.clear();
        host.emit(Event::Workspace(self.view()));
        let (start, source) = self.choose_start(i, &prepared, host).await?;
        let lora = match &source {
            Some(a) => a.config.clone(),
            None => s.lora.clone(),
        };
        let from = match &source {
            Some(a) => Start::From(a),
            None => Start::Fresh(&s.lora),
        };
        let mut obs = PageStage1 {
            session: self,
            host,
            job: &job,
            task: i,
            prepared: &prepared,
            settings: s,
            lora: &lora,
            start: &start,
            last_checkpoint: None,
        };
        let run = run_stage1_from(&engine, &prepared, from, &s.train, true, &mut obs).await?;
        if run.steps > 0 {
            let mut meta = run.meta(&engine, task, &prepared, &lora, &s.train, None);
            meta.start = Some(start);
            let files = task_files::to_files(&run.model, &meta).await?;
            let sha256 = task_files::sha256_hex(&files[task_files::ADAPTER_WEIGHTS]);
            let t = &mut self.tasks[i];
            t.state.adapter = Some(files);
            t.curve = run.history.clone();
            t.trained = Some(Trained {
                adapter: run.model.adapter,
                head: Some(run.model.head),
                labels: prepared.vocab.names().to_vec(),
                sha256,
                history: run.history,
                temperature: run.temperature,
                epochs_planned: s
                    .train
                    .stage1_epochs(prepared.train.len(), prepared.vocab.len()),
            });
            self.drop_fusion(host, &format!("the adapter of {task:?} changed"));
        }
        host.emit(Event::JobDone {
            job,
            cancelled: run.outcome == Outcome::Cancelled,
            seconds: run.seconds,
        });
        self.changed(host, run.steps > 0)
    }

    /// Every trained task's adapter but task `skip`'s, as a start to train from.
    fn start_sources(&self, skip: Option<usize>) -> Vec<Source<'_>> {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != skip)
            .filter_map(|(_, t)| {
                let tr = t.trained.as_ref()?;
                Some(Source {
                    task: &t.state.name,
                    adapter: &tr.adapter,
                    sha256: &tr.sha256,
                })
            })
            .collect()
    }

    /// Where task `i`'s adapter starts, by its "Start from" setting: a fresh adapter, the named
    /// task's adapter, or the automatic choice among the other trained tasks' adapters
    /// ([`check_start`]). Returns the record and the adapter to start from (a copy).
    async fn choose_start<H: Host>(
        &self,
        i: usize,
        prepared: &PreparedTask,
        host: &H,
    ) -> Result<(StartCheck, Option<LoraAdapter>)> {
        let sources = self.start_sources(Some(i));
        let adapter_of = |name: &str| {
            sources
                .iter()
                .find(|s| s.task == name)
                .map(|s| s.adapter.clone())
        };
        let s = &self.tasks[i].state.settings;
        match &s.start {
            StartFrom::Fresh => Ok((named_start(None), None)),
            StartFrom::Task(name) => match sources.iter().find(|s| s.task == name) {
                Some(src) => Ok((named_start(Some(src)), Some(src.adapter.clone()))),
                None => Err(Error::Train(format!(
                    "\"Start from\" names task {name:?}, which has no trained adapter: train it \
                     first, or choose another start"
                ))),
            },
            StartFrom::Automatic => {
                let n = prepared.train.len();
                if !sources.is_empty() && n < AUTO_START_BELOW_ROWS {
                    host.emit(Event::Notice(format!(
                        "task {:?}: reading its {n} examples with {} other tasks' adapters to \
                         choose where it starts",
                        self.tasks[i].state.name,
                        sources.len()
                    )));
                    host.pause().await;
                }
                let classes = prepared.vocab.len();
                let check =
                    check_start(&self.engine, &prepared.train, classes, &sources, &s.train).await?;
                let adapter = check.from.as_deref().and_then(adapter_of);
                Ok((check, adapter))
            }
        }
    }

    /// The start the adapter of task `t` trained from, for its cross-validated gate's fold
    /// adapters ([`recorded_start`]).
    fn recorded_start<'s>(&'s self, t: &'s Task) -> Start<'s> {
        let meta = t.state.adapter.as_ref().and_then(task_files::peek_meta);
        let sources = self.start_sources(None);
        recorded_start(
            meta.and_then(|m| m.start).as_ref(),
            &t.state.settings.lora,
            &sources,
        )
    }

    /// Every task with an adapter and a head, in order; an error names the first that lacks one.
    pub(super) fn ready_tasks(&self) -> Result<Vec<(&Task, &Trained, &ClassifierHead)>> {
        if self.tasks.is_empty() {
            return Err(Error::Train("there are no tasks yet".into()));
        }
        self.tasks
            .iter()
            .map(|t| match &t.trained {
                Some(tr) => match &tr.head {
                    Some(h) => Ok((t, tr, h)),
                    None => Err(Error::Train(format!(
                        "task {:?} has an adapter without a classifier head: train it",
                        t.state.name
                    ))),
                },
                None => Err(Error::Train(format!(
                    "task {:?} has no adapter yet: train it first",
                    t.state.name
                ))),
            })
            .collect()
    }

    /// Stage 2 over every ready task: one fusion per task (the default), or with `shared` one
    /// fusion for all tasks with per-task heads, trained on all their rows together with the
    /// first task's settings. Each task's fusion trains on its stage-1 training rows only. With
    /// `gate_folds` > 1 (per-task fusion only), each task's epoch and gate are decided by
    /// cross-validation over its training rows, which trains that many more adapters per task; a
    /// task that holds no rows out is always cross-validated ([`gate_folds_for`]).
    ///
    /// [`gate_folds_for`]: crate::experiment::gate::gate_folds_for
    pub(super) async fn train_fusion<H: Host>(
        &mut self,
        shared: bool,
        gate_folds: usize,
        host: &H,
    ) -> Result<()> {
        let ready = self.ready_tasks()?;
        if ready.len() < 2 {
            return Err(Error::Fusion(
                "the fusion needs at least two tasks with trained adapters".into(),
            ));
        }
        let engine = self.engine.clone();
        let cancel = self.cancel.clone();
        let adapters: Vec<&LoraAdapter> = ready.iter().map(|(_, tr, _)| &tr.adapter).collect();
        let start = now_sec();
        cancel.store(false, Ordering::Relaxed);
        let mut targets = Vec::new();
        for (own, (t, tr, head)) in ready.iter().enumerate() {
            let name = &t.state.name;
            let s = &t.state.settings;
            let (rows, held) = t.rows(&tr.labels);
            host.emit(Event::Notice(format!(
                "fusion of {name:?}: encoding {} examples with the base model and {} adapters",
                rows.len(),
                adapters.len()
            )));
            host.pause().await;
            if cancel.swap(false, Ordering::Relaxed) {
                host.emit(Event::JobDone {
                    job: Job::Fusion(name.clone()),
                    cancelled: true,
                    seconds: now_sec() - start,
                });
                return Ok(());
            }
            let cfg = fusion_train_config(&s.train, None, None);
            let labels = tr.labels.clone();
            let target = FusionTarget::encode(&engine, &adapters, name, labels, &rows, cfg).await?;
            let target = target.with_held_out(&engine, &adapters, &held).await?;
            let target = target.with_own(own, head);
            let folds = crate::experiment::gate::gate_folds_for(gate_folds, held.len());
            let target = match (shared, folds) {
                (false, k) if k > 1 => {
                    host.emit(Event::Notice(format!(
                        "fusion of {name:?}: training {k} adapters for its cross-validated check"
                    )));
                    let mut obs = PageFusion {
                        host,
                        cancel: &cancel,
                        job: Job::Fusion(format!("{name} (cross-validation, {k} folds)")),
                    };
                    let from = self.recorded_start(t);
                    let (t, outcome) = target
                        .with_cv_folds(&engine, &rows, from, &s.train, k, &mut obs)
                        .await?;
                    if outcome == Outcome::Cancelled {
                        host.emit(Event::JobDone {
                            job: Job::Fusion(name.clone()),
                            cancelled: true,
                            seconds: now_sec() - start,
                        });
                        return Ok(());
                    }
                    t
                }
                _ => target,
            };
            targets.push(target);
        }
        let fused: Vec<FusedAdapter> = ready
            .iter()
            .map(|(t, tr, _)| FusedAdapter {
                task: t.state.name.clone(),
                adapter_sha256: tr.sha256.clone(),
            })
            .collect();
        let spec = FusionSpec {
            shared,
            ..FusionSpec::default()
        };
        let mut obs = PageFusion {
            host,
            cancel: &cancel,
            job: Job::Fusion(String::new()),
        };
        let (model, outcome) = train_fusion(&engine, &fused, &targets, &spec, &mut obs).await?;
        let files = fusion_files::to_files(&model.manifest, &model.layers, &model.heads).await?;
        let last = match shared {
            true => SHARED_JOB.to_string(),
            false => model
                .manifest
                .tasks
                .last()
                .map(|t| t.task.clone())
                .unwrap_or_default(),
        };
        self.fusion = Some(Fusion {
            manifest: model.manifest,
            layers: model.layers,
            heads: model.heads,
            files,
        });
        host.emit(Event::JobDone {
            job: Job::Fusion(last),
            cancelled: outcome == Outcome::Cancelled,
            seconds: now_sec() - start,
        });
        self.changed(host, true)
    }

    /// The temperature of a task's own LoRA's probabilities: the one its fusion's cross-validated
    /// gate chose out of fold, else its adapter's own `stage1`.
    pub(super) fn lora_temperature(&self, task: &str, stage1: f64) -> f64 {
        self.fused_index(task).map_or(stage1, |(f, i)| {
            f.manifest.tasks[i].lora_temperature_or(stage1)
        })
    }

    /// The temperature of a task's hybrid probabilities (1 when not fused).
    pub(super) fn hybrid_temperature(&self, task: &str) -> f64 {
        let tasks = self.fusion.as_ref().map(|f| f.manifest.tasks.as_slice());
        tasks
            .and_then(|ts| ts.iter().find(|t| t.task == task))
            .map_or(1.0, |t| t.temperature)
    }

    /// The model a task answers with: its answer setting, by default the gate's choice; the
    /// own LoRA when not fused, or when the chosen model is missing.
    pub(super) fn answerer(&self, task: &Task) -> Answerer {
        let Some((f, i)) = self.fused_index(&task.state.name) else {
            return Answerer::Lora;
        };
        let ft = &f.manifest.tasks[i];
        let chosen = task.state.settings.answer.resolve(ft.answerer());
        let present = match chosen {
            Answerer::Lora | Answerer::Hybrid => true,
            a => f
                .heads
                .get(i)
                .is_some_and(|h| FreshHead::of(h, ft, a).is_some()),
        };
        match present {
            true => chosen,
            false => Answerer::Lora,
        }
    }

    /// The fusion and the position of `task` among its fused tasks.
    pub(super) fn fused_index(&self, task: &str) -> Option<(&Fusion, usize)> {
        let f = self.fusion.as_ref()?;
        let i = f.manifest.tasks.iter().position(|t| t.task == task)?;
        Some((f, i))
    }

    pub(super) fn fusion_for(&self, task: &str) -> Option<&AttentionFusion> {
        let (f, i) = self.fused_index(task)?;
        f.layers.get(i)
    }

    /// The fresh head `task` answers with, when it answers with one.
    fn fresh_for(&self, task: &Task) -> Option<FreshHead<'_>> {
        let (f, i) = self.fused_index(&task.state.name)?;
        FreshHead::of(f.heads.get(i)?, &f.manifest.tasks[i], self.answerer(task))
    }

    /// Every ready task's single-task and (where fused) hybrid prediction for each text.
    pub async fn predict(&self, texts: &[String]) -> Result<MultiTaskOutput> {
        if texts.is_empty() || texts.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::Invalid("type some text to classify".into()));
        }
        if texts.len() > crate::limits::MAX_PREDICT_TEXTS {
            return Err(Error::Invalid(format!(
                "{} texts at once is more than the limit of {}; predict them in parts",
                texts.len(),
                crate::limits::MAX_PREDICT_TEXTS
            )));
        }
        let ready: Vec<_> = self
            .tasks
            .iter()
            .filter_map(|t| {
                let tr = t.trained.as_ref()?;
                Some((t, tr, tr.head.as_ref()?))
            })
            .collect();
        if ready.is_empty() {
            return Err(Error::Train(
                "no task has a trained adapter and head yet".into(),
            ));
        }
        // The fusion is kept only while it matches the adapters of all tasks, so its K equals
        // ready.len() whenever it exists.
        let parts: Vec<TaskParts> = ready
            .iter()
            .map(|(t, tr, head)| TaskParts {
                name: &t.state.name,
                labels: &tr.labels,
                adapter: &tr.adapter,
                head,
                fusion: self.fusion_for(&t.state.name),
                temperature: self.lora_temperature(&t.state.name, tr.temperature),
                hybrid_temperature: self.hybrid_temperature(&t.state.name),
                answer: self.answerer(t),
                fresh: self.fresh_for(t),
            })
            .collect();
        let e = &self.engine;
        predict_all(&e.encoder, &e.tokenizer, &parts, texts, &e.device).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_after_the_first_epoch_then_at_most_every_interval() {
        assert!(
            !checkpoint_due(0, None),
            "nothing to save before an epoch ends"
        );
        assert!(checkpoint_due(1, None), "the first epoch is always saved");
        assert!(
            checkpoint_due(3, None),
            "a run not yet saved saves at its next epoch"
        );
        assert!(!checkpoint_due(2, Some(0.5)));
        assert!(!checkpoint_due(7, Some(CHECKPOINT_EVERY_SEC - 0.01)));
        assert!(checkpoint_due(7, Some(CHECKPOINT_EVERY_SEC)));
        assert!(checkpoint_due(2, Some(60.0)));
    }
}
