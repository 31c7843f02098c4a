//! The page's state and the one event handler: [`Ui`] holds every signal the views read (the
//! model, the workspace view, the running job, live predictions, the report, messages, saving,
//! read-only, offline, an encoder being installed), and [`Ui::on_event`] is a match with one arm
//! per worker [`Event`]. No view code; the views are in `mod.rs` and one file per panel.

use std::collections::BTreeMap;

use leptos::prelude::*;

use super::{files, model, offline, storage};
use crate::infer::types::MultiTaskOutput;
use crate::worker::protocol::{
    EngineReady, Event, Job, JobProgress, ModelProgress, TaskReport, WorkspaceView,
};

/// Where the model is.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    /// Loading, with the file and its bytes.
    Loading(ModelProgress),
    /// Ready on a backend.
    Ready(EngineReady),
    /// Loading failed.
    Failed(String),
}

/// A line in the message area.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: u64,
    pub error: bool,
    pub text: String,
}

/// The page's state, shared by the components through the context.
#[derive(Clone, Copy)]
pub struct Ui {
    pub model: RwSignal<ModelState>,
    pub ws: RwSignal<WorkspaceView>,
    pub job: RwSignal<Option<JobProgress>>,
    /// Step losses of the last stage-1 run per task.
    pub losses: RwSignal<BTreeMap<String, Vec<(usize, f32)>>>,
    pub live: RwSignal<Option<(MultiTaskOutput, f64)>>,
    pub predict_id: RwSignal<u64>,
    pub report: RwSignal<Option<Vec<TaskReport>>>,
    pub evaluating: RwSignal<bool>,
    pub messages: RwSignal<Vec<Message>>,
    pub check: RwSignal<Option<String>>,
    /// A large upload being read by the worker: (task, file, fraction).
    pub reading: RwSignal<Option<(String, String, f64)>>,
    /// Another tab edits this workspace: this one only shows it and saves nothing ([`tabs`]).
    pub read_only: RwSignal<bool>,
    /// Saves under way (announced by the worker, done when IndexedDB has the bundle); closing the
    /// page meanwhile asks first.
    pub saving: RwSignal<u32>,
    /// What a screen reader should hear next about a background job (an epoch started, a report
    /// arrived): shown only to assistive technology, in a polite live region ([`Announcer`]).
    pub announce: RwSignal<String>,
    /// Whether the page works with no network ([`offline`]).
    pub offline: RwSignal<offline::Offline>,
    /// An encoder the user picked, while the worker checks it ([`model`]).
    pub installing: RwSignal<Option<String>>,
}

impl Ui {
    pub(super) fn new() -> Self {
        Self {
            model: RwSignal::new(ModelState::Loading(ModelProgress::default())),
            ws: RwSignal::new(WorkspaceView::default()),
            job: RwSignal::new(None),
            losses: RwSignal::new(BTreeMap::new()),
            live: RwSignal::new(None),
            predict_id: RwSignal::new(0),
            report: RwSignal::new(None),
            evaluating: RwSignal::new(false),
            messages: RwSignal::new(Vec::new()),
            check: RwSignal::new(None),
            reading: RwSignal::new(None),
            read_only: RwSignal::new(false),
            saving: RwSignal::new(0),
            announce: RwSignal::new(String::new()),
            offline: RwSignal::new(offline::Offline::Preparing),
            installing: RwSignal::new(None),
        }
    }

    /// Adds a line to the message area (the newest 6 are kept).
    pub fn say(&self, error: bool, text: String) {
        self.messages.update(|m| {
            let id = m.last().map_or(0, |x| x.id + 1);
            m.push(Message { id, error, text });
            let n = m.len();
            if n > 6 {
                m.drain(..n - 6);
            }
        });
    }

    /// Whether the engine is ready and idle, and this tab may edit.
    pub fn idle(&self) -> bool {
        matches!(self.model.get(), ModelState::Ready(_))
            && self.job.get().is_none()
            && !self.read_only.get()
    }

    pub(super) fn on_event(&self, ev: Event) {
        match ev {
            Event::Started => {}
            Event::ModelProgress(p) => self.model.set(ModelState::Loading(p)),
            Event::Ready(ready) => {
                // The own encoder did not load (the worker said why): the default runs now.
                if !ready.own_model {
                    model::remember(crate::worker::protocol::ModelSource::Default);
                }
                self.model.set(ModelState::Ready(ready))
            }
            Event::ModelInstalled { name, bytes } => model::installed(*self, name, bytes),
            Event::Workspace(v) => {
                self.reading.set(None);
                self.ws.set(v)
            }
            Event::Reading {
                task,
                file_name,
                fraction,
            } => self.reading.set(Some((task, file_name, fraction))),
            // The bridge restarts the engine on the CPU backend; it never reaches the page.
            Event::DeviceLost { .. } => {}
            Event::Saving if self.read_only.get_untracked() => {}
            Event::Saving => self.saving.update(|n| *n += 1),
            Event::SaveFailed { message } => {
                // That save will not come.
                self.saving.update(|n| *n = n.saturating_sub(1));
                self.say(
                    true,
                    format!(
                        "the workspace could not be packed for saving: {message}. Your work is \
                         still here in this tab; the next change saves again."
                    ),
                );
            }
            Event::Persist { .. } if self.read_only.get_untracked() => {}
            Event::Persist { bundle } => {
                let ui = *self;
                wasm_bindgen_futures::spawn_local(async move {
                    let saved = storage::save(&bundle).await;
                    ui.saving.update(|n| *n = n.saturating_sub(1));
                    if let Err(e) = saved {
                        let full = e.contains("QuotaExceeded") || e.contains("quota");
                        ui.say(
                            true,
                            if full {
                                format!(
                                    "the workspace could not be saved: this browser's storage for \
                                     the page is full ({e}). Your work is still here in this tab: \
                                     \"Download workspace\" keeps it; free space and change \
                                     anything to save again."
                                )
                            } else {
                                format!("the workspace could not be saved in the browser: {e}")
                            },
                        );
                    }
                });
            }
            Event::Progress(p) => {
                if let Job::Task(name) = &p.job {
                    self.losses.update(|l| {
                        let v = l.entry(name.clone()).or_default();
                        if p.step <= 1 {
                            v.clear();
                        }
                        v.push((p.step, p.loss));
                    });
                }
                let new_epoch = self.job.with_untracked(|j| {
                    j.as_ref()
                        .is_none_or(|j| j.job != p.job || j.epoch != p.epoch)
                });
                if new_epoch {
                    let what = match &p.job {
                        Job::Task(t) => format!("Training {t}"),
                        Job::Fusion(t) => format!("Fusion for {t}"),
                    };
                    let pct = 100 * p.step / p.total_steps.max(1);
                    self.announce.set(format!(
                        "{what}: epoch {} started, {pct} % done.",
                        p.epoch + 1
                    ));
                }
                self.job.set(Some(p));
            }
            Event::JobDone {
                job,
                cancelled,
                seconds,
            } => {
                self.job.set(None);
                let what = match job {
                    Job::Task(t) => format!("the adapter of {t:?}"),
                    Job::Fusion(_) => "the fusion".to_string(),
                };
                let how = if cancelled {
                    "cancelled; what was trained is kept"
                } else {
                    "done"
                };
                self.say(false, format!("Training {what}: {how} ({seconds:.1} s)"));
            }
            Event::Predictions { id, output, ms } => {
                if id == self.predict_id.get_untracked() {
                    self.live.set(Some((output, ms)));
                }
            }
            Event::Report(r) => {
                self.evaluating.set(false);
                self.announce.set(format!(
                    "Evaluation done for {} task{}: the report is below.",
                    r.len(),
                    if r.len() == 1 { "" } else { "s" }
                ));
                self.report.set(Some(r));
            }
            Event::File { name, bytes } => {
                if let Err(e) = files::download(&name, &bytes, "application/zip") {
                    self.say(true, format!("download of {name} failed: {e}"));
                }
            }
            Event::Error { context, message } => {
                self.reading.set(None);
                if context == "evaluating" {
                    self.evaluating.set(false);
                }
                if context == "installing the encoder" {
                    self.installing.set(None);
                }
                if context == "predicting" {
                    self.live.set(None);
                }
                if context == "loading the model" {
                    self.model.set(ModelState::Failed(message.clone()));
                }
                self.say(true, format!("Error {context}: {message}"));
            }
            Event::Notice(text) => self.say(false, text),
            Event::BackendCheck {
                max_abs_diff,
                step_loss,
                embed_ms,
                step_ms,
            } => self.check.set(Some(format!(
                "max |Δ| vs CPU = {max_abs_diff:.2e}; one LoRA step: loss {step_loss:.4} in \
                 {step_ms:.0} ms; embedding {embed_ms:.0} ms"
            ))),
        }
    }
}
