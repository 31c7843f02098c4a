//! The engine side of the page: a workspace of tasks with their data, adapters and fusion, and the
//! handling of every [`Request`]. It is plain async Rust with no browser types, so the same code
//! runs in the Web Worker and in native tests; the worker glue (`web.rs`) only moves messages.
//!
//! The rooms: this file dispatches requests; [`tasks`] names tasks, takes uploads and settings
//! and builds the view; [`store`] saves, restores, imports and exports; [`jobs`] trains (stage 1,
//! the fusion) and predicts, [`report`] evaluates — through [`crate::experiment`], the same code the CLI and
//! `bench` run. Each task's rows are split by the shared held-out policy (docs/design.md §4).
//! Training checks for cancellation between steps and gives the event loop a turn
//! ([`Host::pause`]) so a Cancel message can arrive.

mod jobs;
mod report;
mod store;
mod tasks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::protocol::{EpochPoint, Event, Request};
use crate::data::{ParseOptions, RejectedRow};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fusion::AttentionFusion;
use crate::fusion::files::{AnswerHeads, FusionManifest};
use crate::lora::LoraAdapter;
use crate::model::ClassifierHead;
use crate::workspace::bundle::{self, TaskState, Upload};
use crate::workspace::zipfile;

pub use tasks::{MAX_TASK_NAME, MAX_TASKS, PREVIEW_ROWS, file_stem};

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
    /// Temperature of the head's probabilities (1 = none).
    temperature: f64,
    /// Epochs the run that produced it was set to (more than `history` holds when it was stopped,
    /// or the page closed, before the end).
    epochs_planned: usize,
}

/// One task: its persistent state and what is loaded in memory.
struct Task {
    state: TaskState,
    trained: Option<Trained>,
    rejected: Vec<RejectedRow>,
    columns: Vec<String>,
    file_name: Option<String>,
    read_as: Option<String>,
    curve: Vec<EpochPoint>,
}

/// The fused model: one fusion layer per task in `manifest.tasks`.
struct Fusion {
    manifest: FusionManifest,
    layers: Vec<AttentionFusion>,
    /// Each task's fresh heads, in `manifest.tasks` order.
    heads: Vec<AnswerHeads>,
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
            Request::LoseDevice => "losing the device",
            Request::InstallModel { .. } => "installing the encoder",
        };
        if let Err(e) = self.dispatch(req, host).await {
            host.emit(err(context, e));
        }
    }

    /// One arm per request (a long match by nature); each delegates to the room that does the work.
    async fn dispatch<H: Host>(&mut self, req: Request, host: &H) -> Result<()> {
        match req {
            Request::Init { bundle, .. } => {
                if let Some(b) = bundle {
                    match bundle::classify(&b)? {
                        Upload::Workspace(ws) => self.restore(ws, false, host).await?,
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
                delimiter,
                header,
            } => {
                let opts = ParseOptions {
                    text_column,
                    label_column,
                    delimiter,
                    header,
                    ..ParseOptions::default()
                };
                self.upload(&task, role, file_name, &bytes, opts, host)?;
                self.changed(host, true)
            }
            Request::Settings { task, settings } => {
                settings.lora.validate()?;
                settings.train.validate()?;
                settings.holdout.validate()?;
                let i = self.index(&task)?;
                self.tasks[i].state.settings = settings;
                self.changed(host, true)
            }
            Request::Train { task } => self.train_task(&task, host).await,
            Request::TrainFusion { shared, gate_folds } => {
                self.train_fusion(shared, gate_folds, host).await
            }
            Request::Cancel => {
                self.cancel.store(true, Ordering::Relaxed);
                Ok(())
            }
            Request::Predict { id, texts } => {
                let start = crate::train::now_sec();
                let output = self.predict(&texts).await?;
                host.emit(Event::Predictions {
                    id,
                    output,
                    ms: (crate::train::now_sec() - start) * 1000.0,
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
                self.import(&file_name, &bytes, host)
                    .await
                    .map_err(|e| Error::Invalid(format!("{file_name}: {e}")))?;
                self.changed(host, true)
            }
            Request::LoseDevice => Err(Error::Invalid(
                "only the page's worker holds a device to lose".into(),
            )),
            Request::BackendCheck { .. } => Err(Error::Invalid(
                "the backend check needs a CPU engine: the worker runs it".into(),
            )),
            Request::InstallModel { .. } => Err(Error::Invalid(
                "an encoder is installed by the page's worker, into the browser's storage".into(),
            )),
        }
    }

    /// Emits the new view and, when `persist`, the bundle to save.
    fn changed<H: Host>(&self, host: &H, persist: bool) -> Result<()> {
        host.emit(Event::Workspace(self.view()));
        if persist {
            host.emit(Event::Saving);
            match self.workspace().to_zip() {
                Ok(bundle) => host.emit(Event::Persist { bundle }),
                // The change itself is done; only its save failed, and says so.
                Err(e) => host.emit(Event::SaveFailed {
                    message: e.to_string(),
                }),
            }
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
}
