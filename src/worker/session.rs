//! The engine side of the page: a workspace of tasks with their data, adapters and fusion, and the
//! handling of every [`Request`]. It is plain async Rust with no browser types, so the same code
//! runs in the Web Worker and in native tests; the worker glue (`web.rs`) only moves messages.
//!
//! Each task's uploaded training data is split once (seeded, stratified) into a training part and a
//! held-out part of [`HOLDOUT_FRACTION`], unless a test file was uploaded; stage 1, the fusion and
//! the frozen probe all train on the training part only, and the report and per-epoch validation
//! accuracy use the held-out part. Training checks for cancellation between steps and gives the
//! event loop a turn ([`Host::pause`]) so a Cancel message can arrive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::protocol::{
    DataRole, EpochPoint, Event, Job, JobProgress, MethodResult, Request, TaskReport, TaskView,
    WorkspaceView,
};
use crate::data::{self, Example, LabelVocab, ParseOptions, RejectedRow};
use crate::engine::{self, DEFAULT_MODEL_NAME, Engine};
use crate::error::{Error, Result};
use crate::fusion::files::{
    self as fusion_files, FUSION_FORMAT, FusedAdapter, FusedTask, FusionManifest,
};
use crate::fusion::predict::{TaskParts, predict_all};
use crate::fusion::{AttentionFusion, FusionConfig};
use crate::lora::LoraAdapter;
use crate::model::ClassifierHead;
use crate::train::predict::{evaluate, pooled_vectors, probabilities};
use crate::train::probe::{self, ProbeTrainer};
use crate::train::stage2::{self, FusionCache, FusionTrainer, VectorSource};
use crate::train::{LoraTrainer, Progress, TrainConfig, now_sec};
use crate::workspace::bundle::{self, TaskSettings, TaskState, Upload, Workspace};
use crate::workspace::task_files::{self, TaskMeta};
use crate::workspace::zipfile;

/// Share of a task's uploaded examples held out for evaluation when no test file is given.
pub const HOLDOUT_FRACTION: f64 = 0.2;
/// Held-out examples used for the per-epoch validation accuracy (the report uses all of them).
pub const VALIDATION_CAP: usize = 200;
/// Rows shown in a task's preview.
pub const PREVIEW_ROWS: usize = 5;
/// Longest task name.
pub const MAX_TASK_NAME: usize = 64;
/// Most tasks in a workspace.
pub const MAX_TASKS: usize = 16;
/// Seed of the train/held-out split.
const SPLIT_SEED: u64 = 7;

/// What the session needs from where it runs.
#[allow(async_fn_in_trait)]
pub trait Host {
    /// Sends an event to the UI.
    fn emit(&self, event: Event);
    /// Lets the event loop run (the browser delivers messages, e.g. a Cancel); natively a no-op.
    async fn pause(&self);
}

/// A trained or loaded adapter with its head.
struct Trained {
    adapter: LoraAdapter,
    head: Option<ClassifierHead>,
    labels: Vec<String>,
    sha256: String,
    history: Vec<EpochPoint>,
}

/// One task: its persistent state and what is loaded in memory.
struct Task {
    state: TaskState,
    trained: Option<Trained>,
    rejected: Vec<RejectedRow>,
    columns: Vec<String>,
    file_name: Option<String>,
    curve: Vec<EpochPoint>,
}

/// The fused model: one fusion layer per task in `manifest.tasks`.
struct Fusion {
    manifest: FusionManifest,
    layers: Vec<AttentionFusion>,
    files: BTreeMap<String, Vec<u8>>,
}

/// The worker's state.
pub struct Session {
    engine: Engine,
    tasks: Vec<Task>,
    fusion: Option<Fusion>,
    cancel: Arc<AtomicBool>,
}

fn err(context: &str, e: impl std::fmt::Display) -> Event {
    Event::Error {
        context: context.to_string(),
        message: e.to_string(),
    }
}

/// The job name of a shared fusion run (per-task runs are named after their task).
const SHARED_FUSION_JOB: &str = "all tasks (shared)";

impl Session {
    /// A session with an empty workspace.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            tasks: Vec::new(),
            fusion: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag a Cancel request sets; the worker glue sets it directly while a job runs.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Handles one request, reporting results and errors as events. Never panics on bad input.
    pub async fn handle<H: Host>(&mut self, req: Request, host: &H) {
        let context = match &req {
            Request::Init { .. } => "loading the workspace",
            Request::AddTask { .. } => "creating the task",
            Request::RemoveTask { .. } => "deleting the task",
            Request::Upload { .. } => "reading the upload",
            Request::Settings { .. } => "changing the settings",
            Request::Train { .. } => "training the adapter",
            Request::TrainFusion { .. } => "training the fusion",
            Request::Cancel => "cancelling",
            Request::Predict { .. } => "predicting",
            Request::Evaluate => "evaluating",
            Request::ExportTask { .. } => "exporting the adapter",
            Request::ExportWorkspace => "exporting the workspace",
            Request::Import { .. } => "importing the zip",
            Request::BackendCheck { .. } => "checking the backend",
        };
        if let Err(e) = self.dispatch(req, host).await {
            host.emit(err(context, e));
        }
    }

    async fn dispatch<H: Host>(&mut self, req: Request, host: &H) -> Result<()> {
        match req {
            Request::Init { bundle, .. } => {
                if let Some(b) = bundle {
                    match bundle::classify(&b)? {
                        Upload::Workspace(ws) => self.restore(ws, host).await?,
                        Upload::Task(_) => {
                            return Err(Error::Bundle(
                                "the saved workspace is not a bundle".into(),
                            ));
                        }
                    }
                }
                self.changed(host, false)
            }
            Request::AddTask { name } => {
                let name = self.check_new_name(&name)?;
                self.tasks.push(Task::new(name));
                self.changed(host, true)
            }
            Request::RemoveTask { task } => {
                let i = self.index(&task)?;
                self.tasks.remove(i);
                self.drop_fusion(host, "a task was deleted");
                self.changed(host, true)
            }
            Request::Upload {
                task,
                role,
                file_name,
                bytes,
                text_column,
                label_column,
            } => {
                let i = self.index(&task)?;
                let opts = ParseOptions {
                    text_column: non_empty(text_column, "text"),
                    label_column: non_empty(label_column, "label"),
                    ..ParseOptions::default()
                };
                let parsed = match data::parse(&bytes, &file_name, &opts) {
                    Ok(p) => p,
                    Err(e) => {
                        // Show the file's columns so the user can pick the right ones; the
                        // task's data stays as it was.
                        if let data::DataError::MissingColumn { available, .. } = &e {
                            let t = &mut self.tasks[i];
                            t.columns = available.clone();
                            t.file_name = Some(file_name);
                            host.emit(Event::Workspace(self.view()));
                        }
                        return Err(Error::Data(e));
                    }
                };
                let t = &mut self.tasks[i];
                t.rejected = parsed.rejected;
                t.columns = parsed.columns;
                t.file_name = Some(file_name);
                match role {
                    DataRole::Train => t.state.examples = parsed.examples,
                    DataRole::Test => t.state.test_examples = parsed.examples,
                }
                let classes = LabelVocab::from_examples(&t.state.examples).len();
                if role == DataRole::Train && classes < 2 {
                    host.emit(Event::Notice(format!(
                        "task {task:?}: the data has {classes} class; training needs at least 2"
                    )));
                }
                self.changed(host, true)
            }
            Request::Settings { task, settings } => {
                settings.lora.validate()?;
                settings.train.validate()?;
                let i = self.index(&task)?;
                self.tasks[i].state.settings = settings;
                self.changed(host, true)
            }
            Request::Train { task } => self.train_task(&task, host).await,
            Request::TrainFusion { shared } => self.train_fusion(shared, host).await,
            Request::Cancel => {
                self.cancel.store(true, Ordering::Relaxed);
                Ok(())
            }
            Request::Predict { id, text } => {
                let start = now_sec();
                let output = self.predict(&[text]).await?;
                host.emit(Event::Predictions {
                    id,
                    output,
                    ms: (now_sec() - start) * 1000.0,
                });
                Ok(())
            }
            Request::Evaluate => {
                let report = self.evaluate(host).await?;
                host.emit(Event::Report(report));
                Ok(())
            }
            Request::ExportTask { task } => {
                let i = self.index(&task)?;
                let files = self.tasks[i].state.adapter.as_ref().ok_or_else(|| {
                    Error::Adapter(format!("task {task:?} has no adapter yet: train it first"))
                })?;
                host.emit(Event::File {
                    name: format!("{}-adapter.zip", file_stem(&task)),
                    bytes: zipfile::write(files)?,
                });
                Ok(())
            }
            Request::ExportWorkspace => {
                host.emit(Event::File {
                    name: "lorafuse-workspace.zip".into(),
                    bytes: self.workspace().to_zip()?,
                });
                Ok(())
            }
            Request::Import { file_name, bytes } => {
                match bundle::classify(&bytes)? {
                    Upload::Workspace(ws) => {
                        // Check everything before replacing anything.
                        let mut fresh = Session::new(self.engine.clone());
                        fresh.restore(ws, host).await?;
                        self.tasks = fresh.tasks;
                        self.fusion = fresh.fusion;
                    }
                    Upload::Task(files) => self.import_task(&file_name, files, host)?,
                }
                self.changed(host, true)
            }
            Request::BackendCheck { .. } => Err(Error::Invalid(
                "the backend check needs a CPU engine: the worker runs it".into(),
            )),
        }
    }

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

    fn index(&self, task: &str) -> Result<usize> {
        self.tasks
            .iter()
            .position(|t| t.state.name == task)
            .ok_or_else(|| Error::Invalid(format!("no task named {task:?}")))
    }

    fn check_new_name(&self, name: &str) -> Result<String> {
        let name = name.trim();
        let bad = |m: String| Err(Error::Invalid(m));
        if name.is_empty() {
            return bad("a task needs a name".into());
        }
        if name.chars().count() > MAX_TASK_NAME {
            return bad(format!("task names are at most {MAX_TASK_NAME} characters"));
        }
        if name.chars().any(char::is_control) {
            return bad("task names cannot contain control characters".into());
        }
        if self.tasks.iter().any(|t| t.state.name == name) {
            return bad(format!("there is already a task named {name:?}"));
        }
        if self.tasks.len() >= MAX_TASKS {
            return bad(format!("a workspace holds at most {MAX_TASKS} tasks"));
        }
        Ok(name.to_string())
    }

    /// Emits the new view and, when `persist`, the bundle to save.
    fn changed<H: Host>(&self, host: &H, persist: bool) -> Result<()> {
        host.emit(Event::Workspace(self.view()));
        if persist {
            host.emit(Event::Persist {
                bundle: self.workspace().to_zip()?,
            });
        }
        Ok(())
    }

    fn drop_fusion<H: Host>(&mut self, host: &H, why: &str) {
        if self.fusion.take().is_some() {
            host.emit(Event::Notice(format!(
                "the fusion was removed because {why}: train it again"
            )));
        }
    }

    /// The persistent part of the session.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            tasks: self.tasks.iter().map(|t| t.state.clone()).collect(),
            fusion: self.fusion.as_ref().map(|f| f.files.clone()),
        }
    }

    /// What the UI shows.
    pub fn view(&self) -> WorkspaceView {
        WorkspaceView {
            tasks: self.tasks.iter().map(Task::view).collect(),
            fused: self.fusion.is_some(),
            fused_tasks: self
                .fusion
                .as_ref()
                .map(|f| f.manifest.tasks.iter().map(|t| t.task.clone()).collect())
                .unwrap_or_default(),
            fused_shared: self.fusion.as_ref().is_some_and(|f| f.manifest.shared),
        }
    }

    async fn restore<H: Host>(&mut self, ws: Workspace, host: &H) -> Result<()> {
        let mut tasks = Vec::new();
        for state in ws.tasks {
            let trained = match &state.adapter {
                Some(files) => Some(self.load_trained(files)?.0),
                None => None,
            };
            let mut t = Task::new(state.name.clone());
            t.curve = trained
                .as_ref()
                .map(|x| x.history.clone())
                .unwrap_or_default();
            t.state = state;
            t.trained = trained;
            tasks.push(t);
        }
        self.tasks = tasks;
        self.fusion = None;
        if let Some(files) = ws.fusion {
            match self.load_fusion(files) {
                Ok(f) => self.fusion = Some(f),
                Err(e) => host.emit(Event::Notice(format!(
                    "the saved fusion was not loaded ({e}); train it again"
                ))),
            }
        }
        Ok(())
    }

    /// A task's adapter folder loaded for use, with its metadata (if the folder has it).
    fn load_trained(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(Trained, Option<TaskMeta>)> {
        let loaded =
            task_files::from_files(files, &self.engine.encoder.config, &self.engine.device)?;
        let meta = loaded.meta;
        let trained = Trained {
            labels: meta.as_ref().map(|m| m.labels.clone()).unwrap_or_default(),
            history: meta.as_ref().map(|m| m.history.clone()).unwrap_or_default(),
            adapter: loaded.adapter,
            head: loaded.head,
            sha256: loaded.adapter_sha256,
        };
        Ok((trained, meta))
    }

    fn load_fusion(&self, files: BTreeMap<String, Vec<u8>>) -> Result<Fusion> {
        let (manifest, layers) = fusion_files::from_files(&files, &self.engine.device)?;
        if manifest.base_model_sha256 != self.engine.model_sha256 {
            return Err(Error::Fusion("it was trained on another base model".into()));
        }
        let shas: Vec<Option<&str>> = self
            .tasks
            .iter()
            .map(|t| t.trained.as_ref().map(|x| x.sha256.as_str()))
            .collect();
        let want: Vec<Option<&str>> = manifest
            .adapters
            .iter()
            .map(|a| Some(a.adapter_sha256.as_str()))
            .collect();
        if shas != want {
            return Err(Error::Fusion(
                "its adapters are not the workspace's current adapters".into(),
            ));
        }
        Ok(Fusion {
            manifest,
            layers,
            files,
        })
    }

    fn import_task<H: Host>(
        &mut self,
        file_name: &str,
        files: BTreeMap<String, Vec<u8>>,
        host: &H,
    ) -> Result<()> {
        let (trained, loaded_meta) = self.load_trained(&files)?;
        let name = loaded_meta
            .as_ref()
            .map(|m| m.task.clone())
            .unwrap_or_else(|| {
                file_name
                    .trim_end_matches(".zip")
                    .trim_end_matches("-adapter")
                    .to_string()
            });
        let i = match self.index(&name) {
            Ok(i) => i,
            Err(_) => {
                let name = self.check_new_name(&name)?;
                self.tasks.push(Task::new(name));
                self.tasks.len() - 1
            }
        };
        if trained.head.is_none() {
            host.emit(Event::Notice(format!(
                "{file_name}: a PEFT adapter without a classifier head; task {name:?} can predict \
                 after training"
            )));
        }
        let t = &mut self.tasks[i];
        if let Some(m) = &loaded_meta {
            t.state.settings = TaskSettings {
                lora: m.lora.clone(),
                train: m.train.clone(),
            };
        }
        t.state.adapter = Some(files);
        t.curve = trained.history.clone();
        t.trained = Some(trained);
        self.drop_fusion(host, "an adapter was replaced");
        Ok(())
    }

    /// `(train, held-out, source of the held-out part)` of a task.
    fn split(state: &TaskState) -> (Vec<Example>, Vec<Example>, String) {
        if state.test_examples.is_empty() {
            let (train, holdout) =
                data::stratified_split(&state.examples, HOLDOUT_FRACTION, SPLIT_SEED);
            let source = format!(
                "{} % of the uploaded examples, held out from training",
                (HOLDOUT_FRACTION * 100.0).round()
            );
            (train, holdout, source)
        } else {
            (
                state.examples.clone(),
                state.test_examples.clone(),
                "the uploaded test file".into(),
            )
        }
    }

    async fn train_task<H: Host>(&mut self, task: &str, host: &H) -> Result<()> {
        let i = self.index(task)?;
        let state = self.tasks[i].state.clone();
        if state.examples.is_empty() {
            return Err(Error::Train(format!(
                "task {task:?} has no examples: upload a file first"
            )));
        }
        let (train, holdout, _) = Self::split(&state);
        let vocab = data::validate_for_training(&train).map_err(Error::Data)?;
        let (texts, labels) = engine::labelled(&train, &vocab)?;
        let val: Vec<Example> = holdout
            .into_iter()
            .filter(|e| vocab.index_of(&e.label).is_some())
            .take(VALIDATION_CAP)
            .collect();
        let (val_texts, val_labels) = engine::labelled(&val, &vocab)?;
        let e = self.engine.clone();
        let cfg = &state.settings.train;
        let mut tr = LoraTrainer::new(
            &e.encoder,
            &e.tokenizer,
            &texts,
            &labels,
            vocab.len(),
            &state.settings.lora,
            cfg,
            &e.device,
        )?;
        let job = Job::Task(task.to_string());
        let steps_per_epoch = texts.len().div_ceil(cfg.batch_size.max(1));
        let start = now_sec();
        self.cancel.store(false, Ordering::Relaxed);
        self.tasks[i].curve.clear();
        let mut epoch_loss = (0.0f64, 0usize);
        let mut cancelled = false;
        loop {
            host.pause().await;
            if self.cancel.swap(false, Ordering::Relaxed) {
                cancelled = true;
                break;
            }
            let Some(p) = tr.step().await? else { break };
            epoch_loss = (epoch_loss.0 + p.loss as f64, epoch_loss.1 + 1);
            host.emit(progress_event(&job, &p));
            if p.step % steps_per_epoch == 0 || p.step == p.total_steps {
                let val_accuracy = if val_texts.is_empty() {
                    None
                } else {
                    let m = tr.snapshot();
                    let probs = probabilities(
                        &e.encoder,
                        &e.tokenizer,
                        Some(&m.adapter),
                        &m.head,
                        &val_texts,
                        &e.device,
                    )
                    .await?;
                    Some(evaluate(&probs, &val_labels, vocab.len()).0.accuracy)
                };
                self.tasks[i].curve.push(EpochPoint {
                    epoch: p.step.div_ceil(steps_per_epoch),
                    loss: (epoch_loss.0 / epoch_loss.1.max(1) as f64) as f32,
                    val_accuracy,
                });
                epoch_loss = (0.0, 0);
                host.emit(Event::Workspace(self.view()));
            }
        }
        let steps = tr.steps_done();
        let model = tr.finish();
        if steps > 0 {
            let meta = TaskMeta {
                format: task_files::TASK_FORMAT.into(),
                task: task.to_string(),
                labels: vocab.names().to_vec(),
                base_model: DEFAULT_MODEL_NAME.into(),
                base_model_sha256: e.model_sha256.clone(),
                lora: state.settings.lora.clone(),
                train: cfg.clone(),
                train_examples: texts.len(),
                metrics: None,
                adapter_sha256: String::new(),
                history: self.tasks[i].curve.clone(),
            };
            let files = task_files::to_files(&model, &meta).await?;
            let sha256 = task_files::sha256_hex(&files[task_files::ADAPTER_WEIGHTS]);
            let t = &mut self.tasks[i];
            t.state.adapter = Some(files);
            t.trained = Some(Trained {
                adapter: model.adapter,
                head: Some(model.head),
                labels: vocab.names().to_vec(),
                sha256,
                history: t.curve.clone(),
            });
            self.drop_fusion(host, &format!("the adapter of {task:?} changed"));
        }
        host.emit(Event::JobDone {
            job,
            cancelled,
            seconds: now_sec() - start,
        });
        self.changed(host, steps > 0)
    }

    /// Every task with an adapter and a head, in order; an error names the first that lacks one.
    fn ready_tasks(&self) -> Result<Vec<(&Task, &Trained, &ClassifierHead)>> {
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
    /// first task's settings.
    async fn train_fusion<H: Host>(&mut self, shared: bool, host: &H) -> Result<()> {
        let ready = self.ready_tasks()?;
        if ready.len() < 2 {
            return Err(Error::Fusion(
                "the fusion needs at least two tasks with trained adapters".into(),
            ));
        }
        let e = &self.engine;
        let adapters: Vec<&LoraAdapter> = ready.iter().map(|(_, tr, _)| &tr.adapter).collect();
        // Every task's layer has the default settings; only the class count differs.
        let fusion_config =
            |classes| FusionConfig::new(e.encoder.config.hidden_size, adapters.len(), classes);
        let start = now_sec();
        self.cancel.store(false, Ordering::Relaxed);
        // Each task's training rows, encoded once by the base and every adapter.
        let mut targets = Vec::new();
        for (t, tr, _) in &ready {
            let name = t.state.name.clone();
            let (train, _, _) = Self::split(&t.state);
            let vocab = LabelVocab::from_names(tr.labels.clone());
            let train: Vec<Example> = train
                .into_iter()
                .filter(|x| vocab.index_of(&x.label).is_some())
                .collect();
            let (texts, labels) = engine::labelled(&train, &vocab)?;
            host.emit(Event::Notice(format!(
                "fusion of {name:?}: encoding {} examples with the base model and {} adapters",
                texts.len(),
                adapters.len()
            )));
            host.pause().await;
            if self.cancel.swap(false, Ordering::Relaxed) {
                host.emit(Event::JobDone {
                    job: Job::Fusion(name),
                    cancelled: true,
                    seconds: now_sec() - start,
                });
                return Ok(());
            }
            let cache =
                FusionCache::build(&e.encoder, &e.tokenizer, &adapters, &texts, &e.device).await?;
            let cfg = stage2::default_config(&t.state.settings.train);
            targets.push(FusionTarget {
                name,
                labels: tr.labels.clone(),
                cache,
                y: labels,
                cfg,
            });
        }
        let mut layers = Vec::new();
        let mut cancelled = false;
        if shared {
            let parts: Vec<(&FusionCache, &[usize], usize)> = targets
                .iter()
                .map(|t| (&t.cache, t.y.as_slice(), t.labels.len()))
                .collect();
            let mut ft = FusionTrainer::new_shared_from_tasks(
                &parts,
                &fusion_config(2),
                &targets[0].cfg,
                &e.device,
            )?;
            let job = Job::Fusion(SHARED_FUSION_JOB.into());
            cancelled = drive_fusion(&mut ft, &job, &self.cancel, host).await?;
            layers = ft.finish_shared()?;
        } else {
            for t in &targets {
                let job = Job::Fusion(t.name.clone());
                let fcfg = fusion_config(t.labels.len());
                let source = VectorSource::Cached(t.cache.clone());
                let mut ft = FusionTrainer::new(source, &t.y, &fcfg, &t.cfg, &e.device)?;
                cancelled = drive_fusion(&mut ft, &job, &self.cancel, host).await?;
                layers.push(ft.finish());
                if cancelled {
                    break;
                }
            }
        }
        // The tasks that got a layer (all of them, unless a per-task run was cancelled).
        let fused_tasks: Vec<FusedTask> = targets
            .iter()
            .take(layers.len())
            .map(|t| FusedTask {
                task: t.name.clone(),
                labels: t.labels.clone(),
            })
            .collect();
        let manifest = FusionManifest {
            format: FUSION_FORMAT.into(),
            base_model_sha256: e.model_sha256.clone(),
            d_model: e.encoder.config.hidden_size,
            heads: fusion_config(2).heads,
            adapters: ready
                .iter()
                .map(|(t, tr, _)| FusedAdapter {
                    task: t.state.name.clone(),
                    adapter_sha256: tr.sha256.clone(),
                })
                .collect(),
            tasks: fused_tasks,
            shared,
        };
        let files = fusion_files::to_files(&manifest, &layers).await?;
        let last = match shared {
            true => SHARED_FUSION_JOB.to_string(),
            false => manifest
                .tasks
                .last()
                .map(|t| t.task.clone())
                .unwrap_or_default(),
        };
        self.fusion = Some(Fusion {
            manifest,
            layers,
            files,
        });
        host.emit(Event::JobDone {
            job: Job::Fusion(last),
            cancelled,
            seconds: now_sec() - start,
        });
        self.changed(host, true)
    }

    fn fusion_for(&self, task: &str) -> Option<&AttentionFusion> {
        let f = self.fusion.as_ref()?;
        let i = f.manifest.tasks.iter().position(|t| t.task == task)?;
        f.layers.get(i)
    }

    /// Every ready task's single-task and (where fused) hybrid prediction for each text.
    pub async fn predict(
        &self,
        texts: &[String],
    ) -> Result<crate::fusion::predict::MultiTaskOutput> {
        if texts.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::Invalid("type some text to classify".into()));
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
            })
            .collect();
        let e = &self.engine;
        predict_all(&e.encoder, &e.tokenizer, &parts, texts, &e.device).await
    }

    /// Frozen probe, single-task LoRA and hybrid on each trained task's held-out examples.
    pub async fn evaluate<H: Host>(&self, host: &H) -> Result<Vec<TaskReport>> {
        let ready = self.ready_tasks()?;
        let e = &self.engine;
        let mut reports = Vec::new();
        for (t, tr, head) in &ready {
            let name = &t.state.name;
            host.emit(Event::Notice(format!("evaluating {name:?}")));
            host.pause().await;
            let (train, holdout, source) = Self::split(&t.state);
            let vocab = LabelVocab::from_names(tr.labels.clone());
            let known = |v: Vec<Example>| -> Vec<Example> {
                v.into_iter()
                    .filter(|x| vocab.index_of(&x.label).is_some())
                    .collect()
            };
            let (texts, labels) = engine::labelled(&known(holdout), &vocab)?;
            if texts.is_empty() {
                reports.push(TaskReport {
                    task: name.clone(),
                    labels: tr.labels.clone(),
                    n: 0,
                    source: "no held-out examples (upload more data or a test file)".into(),
                    results: Vec::new(),
                });
                continue;
            }
            let classes = vocab.len();
            let result = |method: &str, probs: &[Vec<f32>]| {
                let (m, cm) = evaluate(probs, &labels, classes);
                MethodResult {
                    method: method.into(),
                    accuracy: m.accuracy,
                    macro_f1: m.macro_f1,
                    confusion: cm.counts.clone(),
                }
            };
            let mut results = Vec::new();
            // Frozen probe: a head on the frozen base's vectors of the training part.
            let (tr_texts, tr_labels) = engine::labelled(&known(train), &vocab)?;
            if vocab.len() >= 2 && !tr_texts.is_empty() {
                let feats =
                    pooled_vectors(&e.encoder, &e.tokenizer, None, &tr_texts, &e.device).await?;
                let cfg = probe::default_config(&t.state.settings.train);
                let mut p = ProbeTrainer::new(feats, &tr_labels, classes, &cfg, &e.device)?;
                while p.step().await?.is_some() {}
                let probe_head = p.finish();
                let probs = probabilities(
                    &e.encoder,
                    &e.tokenizer,
                    None,
                    &probe_head,
                    &texts,
                    &e.device,
                )
                .await?;
                results.push(result("frozen", &probs));
            }
            if self.fusion_for(name).is_some() {
                // One multi-task pass gives this task's single-task and hybrid probabilities.
                let out = self.predict(&texts).await?;
                let mine: Vec<_> = out
                    .predictions
                    .iter()
                    .filter_map(|row| row.iter().find(|p| &p.task == name))
                    .collect();
                let single: Vec<Vec<f32>> = mine
                    .iter()
                    .map(|p| p.single.probabilities.clone())
                    .collect();
                let hybrid: Vec<Vec<f32>> = mine
                    .iter()
                    .filter_map(|p| p.hybrid.as_ref().map(|h| h.probabilities.clone()))
                    .collect();
                results.push(result("lora", &single));
                results.push(result("hybrid", &hybrid));
            } else {
                let probs = probabilities(
                    &e.encoder,
                    &e.tokenizer,
                    Some(&tr.adapter),
                    head,
                    &texts,
                    &e.device,
                )
                .await?;
                results.push(result("lora", &probs));
            }
            reports.push(TaskReport {
                task: name.clone(),
                labels: tr.labels.clone(),
                n: texts.len(),
                source,
                results,
            });
        }
        Ok(reports)
    }
}

impl Task {
    fn new(name: String) -> Self {
        Self {
            state: TaskState {
                name,
                ..TaskState::default()
            },
            trained: None,
            rejected: Vec::new(),
            columns: Vec::new(),
            file_name: None,
            curve: Vec::new(),
        }
    }

    fn view(&self) -> TaskView {
        let s = &self.state;
        let vocab = LabelVocab::from_examples(&s.examples);
        let counts = data::class_counts(&s.examples, &vocab);
        TaskView {
            name: s.name.clone(),
            examples: s.examples.len(),
            test_examples: s.test_examples.len(),
            class_counts: vocab.names().iter().cloned().zip(counts).collect(),
            preview: s
                .examples
                .iter()
                .take(PREVIEW_ROWS)
                .map(|e| (e.text.clone(), e.label.clone()))
                .collect(),
            rejected: self.rejected.clone(),
            columns: self.columns.clone(),
            file_name: self.file_name.clone(),
            settings: s.settings.clone(),
            has_adapter: self.trained.is_some(),
            has_head: self.trained.as_ref().is_some_and(|t| t.head.is_some()),
            labels: self
                .trained
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
            curve: self.curve.clone(),
            adapter_sha256: self.trained.as_ref().map(|t| t.sha256.clone()),
        }
    }
}

/// One target task of a fusion run: its training rows encoded by the base and every adapter.
struct FusionTarget {
    name: String,
    /// Label names in class order.
    labels: Vec<String>,
    cache: FusionCache,
    /// Class of every cached row.
    y: Vec<usize>,
    /// The task's fusion training settings.
    cfg: TrainConfig,
}

/// Steps a fusion run to its end, reporting each step as `job` and yielding to the host between
/// steps; `Ok(true)` when a Cancel arrived (what was trained so far stays in `ft`).
async fn drive_fusion<H: Host>(
    ft: &mut FusionTrainer,
    job: &Job,
    cancel: &AtomicBool,
    host: &H,
) -> Result<bool> {
    loop {
        host.pause().await;
        if cancel.swap(false, Ordering::Relaxed) {
            return Ok(true);
        }
        match ft.step().await? {
            Some(p) => host.emit(progress_event(job, &p)),
            None => return Ok(false),
        }
    }
}

fn progress_event(job: &Job, p: &Progress) -> Event {
    let per_step = p.elapsed_sec / p.step.max(1) as f64;
    Event::Progress(JobProgress {
        job: job.clone(),
        step: p.step,
        total_steps: p.total_steps,
        epoch: p.epoch,
        loss: p.loss,
        examples_per_sec: p.examples_per_sec,
        eta_sec: per_step * p.total_steps.saturating_sub(p.step) as f64,
    })
}

fn non_empty(s: String, default: &str) -> String {
    if s.trim().is_empty() {
        default.to_string()
    } else {
        s.trim().to_string()
    }
}

/// A file-name-safe form of a task name.
pub fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "task".into() } else { s }
}
