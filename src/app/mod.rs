//! The web page (Leptos, client-side rendered). It holds only view state; everything with tensors
//! runs in the engine worker, reached through [`bridge`] with the messages of
//! [`crate::worker::protocol`].
//!
//! Layout: the model status bar, then the tasks (upload, settings, training, curves), the fusion,
//! the live try-out, the evaluation report and the workspace's files. Element ids and
//! `data-testid`s are what the browser test (`tests/e2e/`) drives. This file is about 420 lines:
//! the page's state, the one event handler (a match with one arm per worker event) and the page's
//! top-level view; each panel lives in its own file.

mod bridge;
mod files;
mod live;
mod model;
mod offline;
mod report;
mod storage;
mod tabs;
mod tasks;

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::infer::types::MultiTaskOutput;
use crate::worker::protocol::{
    BackendChoice, EngineReady, Event, Job, JobProgress, ModelProgress, Request, TaskReport,
    WorkspaceView,
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
    fn new() -> Self {
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

    fn on_event(&self, ev: Event) {
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

/// Sends a request to the engine. A read-only tab ([`tabs`]) sends only the requests that change
/// nothing: predictions, evaluation, exports and the backend check.
pub fn send(req: Request) {
    let harmless = matches!(
        req,
        Request::Predict { .. }
            | Request::Evaluate
            | Request::ExportTask { .. }
            | Request::ExportWorkspace
            | Request::BackendCheck { .. }
            | Request::LoseDevice
            | Request::Cancel
    );
    if bridge::read_only() && !harmless {
        return;
    }
    bridge::send(&req);
}

fn backend_from_url() -> BackendChoice {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok();
    match params.and_then(|p| p.get("backend")).as_deref() {
        Some("cpu") => BackendChoice::Cpu,
        Some("webgpu") => BackendChoice::WebGpu,
        _ => BackendChoice::Auto,
    }
}

pub(crate) fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[component]
fn ModelBar() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let status = move || match ui.model.get() {
        ModelState::Loading(ModelProgress {
            file,
            loaded,
            total,
            cached,
        }) => {
            let src = if cached { "browser cache" } else { "network" };
            if file.is_empty() {
                "Starting the engine…".to_string()
            } else {
                match total {
                    Some(t) => {
                        format!("Loading {file} from the {src}: {} of {}", mb(loaded), mb(t))
                    }
                    None => format!("Loading {file} from the {src}: {}", mb(loaded)),
                }
            }
        }
        ModelState::Ready(r) => format!("Model ready ({:.1} s)", r.load_sec),
        ModelState::Failed(e) => format!("The model could not be loaded: {e}"),
    };
    let progress = move || match ui.model.get() {
        ModelState::Loading(ModelProgress {
            loaded,
            total: Some(t),
            ..
        }) if t > 0 => Some((loaded as f64 / t as f64).min(1.0)),
        _ => None,
    };
    let backend = move || match ui.model.get() {
        ModelState::Ready(r) => r.backend,
        _ => "…".into(),
    };
    let fallback = move || match ui.model.get() {
        ModelState::Ready(EngineReady {
            fallback_reason: Some(r),
            ..
        }) => format!("({r})"),
        _ => String::new(),
    };
    let check = move |_| {
        ui.check.set(Some("checking…".into()));
        send(Request::BackendCheck {
            text: "A short sentence to compare the backends.".into(),
        });
    };
    view! {
        <header class="topbar">
            <h1>"lorafuse"</h1>
            <p class="tagline">"Multi-task text classification with LoRA adapters and attention fusion, trained in your browser."</p>
            <div class="model">
                <span data-testid="model-status" role="status" aria-live="polite">{status}</span>
                <Show when=move || progress().is_some()>
                    <progress data-testid="model-progress" aria-label="Model download"
                        max="1" value=move || progress().unwrap_or(0.0)></progress>
                </Show>
                <span class="backend">"Backend: "<strong data-testid="backend">{backend}</strong>" "<small>{fallback}</small></span>
                <button id="backend-check" on:click=check disabled=move || !ui.idle()
                    title="Compare this backend's embedding with the CPU backend's and run one training step">
                    "Check backend"</button>
                <span data-testid="backend-check">{move || ui.check.get().unwrap_or_default()}</span>
                <model::ModelPicker/>
                <span class="small offline" data-testid="offline"
                    data-state=move || match ui.offline.get() {
                        offline::Offline::Preparing => "preparing",
                        offline::Offline::Ready => "ready",
                        offline::Offline::Unavailable(_) => "unavailable",
                    }>{move || ui.offline.get().describe()}</span>
            </div>
            <Show when=move || { ui.saving.get() > 0 }>
                <span class="small saving" data-testid="saving" role="status">"Saving…"</span>
            </Show>
            <Show when=move || ui.read_only.get()>
                <p class="read-only" data-testid="read-only" role="alert">
                    "This workspace is open in another tab of this browser. This tab only shows it: "
                    "live predictions, evaluation and downloads work, changes are off and nothing here is saved. "
                    "Close the other tab to edit here; this tab then reloads by itself."
                </p>
            </Show>
        </header>
    }
}

#[component]
fn Messages() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <div class="messages" aria-live="polite">
            <For each=move || ui.messages.get() key=|m| m.id let:m>
                <p class=if m.error { "msg error" } else { "msg notice" }
                    role=m.error.then_some("alert")
                    data-testid=if m.error { "error" } else { "notice" }>{m.text.clone()}</p>
            </For>
        </div>
    }
}

/// A polite live region, visible only to screen readers, that says what background jobs do
/// ([`Ui::announce`]). Job ends and errors are said by [`Messages`], live predictions by the live
/// panel's own summary.
#[component]
fn Announcer() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <p class="sr-only" role="status" aria-live="polite" data-testid="announcer">
            {move || ui.announce.get()}
        </p>
    }
}

#[component]
fn FusionPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let trained_tasks = move || {
        ui.ws
            .with(|w| w.tasks.iter().filter(|t| t.has_head).count())
    };
    let running = move || ui.job.get().filter(|j| matches!(j.job, Job::Fusion(_)));
    let shared = RwSignal::new(false);
    let status = move || {
        let w = ui.ws.get();
        if w.fused {
            let kind = if w.fused_shared {
                "one shared fusion, a head per task"
            } else {
                "one fusion per task"
            };
            format!("Fusion trained over {} ({kind})", w.fused_tasks.join(", "))
        } else if trained_tasks() < 2 {
            "Train at least two tasks' adapters first.".into()
        } else {
            "Not trained yet.".into()
        }
    };
    view! {
        <section id="fusion" class="panel" data-trained=move || ui.ws.get().fused.to_string()>
            <h2>"Fusion (stage 2)"</h2>
            <p class="hint">"Every task's adapter encodes the input; an attention layer over those task vectors, plus the frozen base model, feeds each task's head. Adapters stay frozen."</p>
            <label class="inline" title="Default (as the paper's authors): each task trains its own fusion on its own data. Shared: one fusion trained on every task's data, with a head per task.">
                <input type="checkbox" data-testid="fusion-shared"
                    prop:checked=move || shared.get()
                    on:change=move |ev| shared.set(event_target_checked(&ev))/>
                " One fusion shared by all tasks"
            </label>
            <button id="train-fusion" on:click=move |_| send(Request::TrainFusion { shared: shared.get_untracked() })
                disabled=move || !ui.idle() || trained_tasks() < 2>"Train fusion"</button>
            <Show when=move || running().is_some()>
                <button data-testid="cancel-fusion" on:click=move |_| send(Request::Cancel)>"Cancel"</button>
            </Show>
            <p data-testid="fusion-status">{status}</p>
            {move || running().map(|j| view! { <tasks::ProgressLine job=j/> })}
        </section>
    }
}

#[component]
fn WorkspacePanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let import = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        input.set_value("");
        // Zips unpack to at most 1 GiB in the engine; refuse larger files before reading them.
        const MAX_ZIP: f64 = 512.0 * 1024.0 * 1024.0;
        if file.size() > MAX_ZIP {
            ui.say(
                true,
                format!(
                    "{} is {:.0} MB; zips are limited to 512 MiB",
                    file.name(),
                    file.size() / 1e6
                ),
            );
            return;
        }
        wasm_bindgen_futures::spawn_local(async move {
            match files::read(&file).await {
                Ok(bytes) => send(Request::Import {
                    file_name: file.name(),
                    bytes,
                }),
                Err(e) => ui.say(true, e),
            }
        });
    };
    view! {
        <section id="workspace" class="panel">
            <h2>"Files"</h2>
            <p class="hint">"Download the whole workspace (data, settings, adapters, fusion) as one zip, or load a workspace zip or one adapter zip (ours, or PEFT's adapter_config.json + adapter_model.safetensors) back. The workspace is also kept in this browser and restored on reload."</p>
            <button id="download-bundle" on:click=move |_| send(Request::ExportWorkspace)
                disabled=move || !ui.idle()>"Download workspace"</button>
            <label class="file">"Load a zip "
                <input id="import-file" type="file" accept=".zip" on:change=import
                    disabled=move || !ui.idle()/>
            </label>
        </section>
    }
}

#[component]
fn App(ui: Ui) -> impl IntoView {
    provide_context(ui);
    view! {
        <ModelBar/>
        <main>
            <Messages/>
            <Announcer/>
            <tasks::TasksPanel/>
            <FusionPanel/>
            <live::LivePanel/>
            <report::ReportPanel/>
            <WorkspacePanel/>
        </main>
    }
}

/// Asks before the page is closed or reloaded while a save is under way (after a large upload the
/// worker packs the workspace for several seconds), so the upload is not lost.
fn warn_before_unload_while_saving(ui: Ui) {
    use wasm_bindgen::JsCast;
    let Some(window) = web_sys::window() else {
        return;
    };
    let handler = wasm_bindgen::closure::Closure::<dyn Fn(wasm_bindgen::JsValue)>::new(
        move |ev: wasm_bindgen::JsValue| {
            if ui.saving.get_untracked() > 0 {
                if let Ok(f) = js_sys::Reflect::get(&ev, &"preventDefault".into())
                    .and_then(|f| f.dyn_into::<js_sys::Function>().map_err(Into::into))
                {
                    let _ = f.call0(&ev);
                }
                let _ = js_sys::Reflect::set(&ev, &"returnValue".into(), &"".into());
            }
        },
    );
    let _ =
        window.add_event_listener_with_callback("beforeunload", handler.as_ref().unchecked_ref());
    handler.forget();
}

/// `window.lorafuseLoseDevice()`: destroys the engine's WebGPU device, so the browser test (and a
/// curious user, from the console) can see the page continue on the CPU backend.
fn expose_device_loss_for_tests() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let f = wasm_bindgen::closure::Closure::<dyn Fn()>::new(|| send(Request::LoseDevice));
    let _ = js_sys::Reflect::set(&window, &"lorafuseLoseDevice".into(), f.as_ref());
    f.forget();
}

/// Mounts the page and starts the engine with the workspace saved in this browser.
pub fn start() {
    console_error_panic_hook::set_once();
    // The state lives as long as the page: created outside any owner, passed to the root.
    let ui = Ui::new();
    leptos::mount::mount_to_body(move || view! { <App ui=ui/> });
    warn_before_unload_while_saving(ui);
    expose_device_loss_for_tests();
    offline::register(ui);
    wasm_bindgen_futures::spawn_local(async move {
        if !tabs::claim().await {
            bridge::set_read_only();
            ui.read_only.set(true);
            tabs::reload_when_free();
        }
        let bundle = match storage::load().await {
            Ok(b) => b,
            Err(e) => {
                ui.say(true, format!("the saved workspace could not be read: {e}"));
                None
            }
        };
        bridge::start(backend_from_url(), model::chosen(), bundle, move |ev| {
            ui.on_event(ev)
        });
    });
}
