//! The web page (Leptos, client-side rendered). It holds only view state; everything with tensors
//! runs in the engine worker, reached through [`bridge`] with the messages of
//! [`crate::worker::protocol`].
//!
//! Layout: the model status bar, then the tasks (upload, settings, training, curves), the fusion,
//! the live try-out, the evaluation report and the workspace's files. Element ids and
//! `data-testid`s are what the browser test (`tests/e2e/`) drives. This file is the page's
//! top-level view, the header and the small panels, and the start-up (`start`); the page's state
//! and its event handler are in [`state`], each larger panel in its own file.

mod bridge;
mod files;
mod live;
mod model;
mod offline;
mod prefs;
mod report;
mod state;
mod storage;
mod tabs;
mod tasks;
mod threads;

use leptos::prelude::*;

pub use state::{Message, ModelState, Ui};

use crate::experiment::gate::{CROSS_VALIDATE_BELOW_ROWS, DEFAULT_GATE_FOLDS as CV_GATE_FOLDS};
use crate::worker::protocol::{BackendChoice, EngineReady, Job, ModelProgress, Request};

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
    // Where the load's seconds went (hover the status; scripts/bench-web reads it).
    let phases = move || match ui.model.get() {
        ModelState::Ready(r) => r
            .phases
            .iter()
            .map(|p| format!("{}: {:.2} s", p.name, p.sec))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
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
                <span data-testid="model-status" role="status" aria-live="polite"
                    title=phases data-phases=phases>{status}</span>
                <Show when=move || progress().is_some()>
                    <progress data-testid="model-progress" aria-label="Model download"
                        max="1" value=move || progress().unwrap_or(0.0)></progress>
                </Show>
                <span class="backend">"Backend: "<strong data-testid="backend">{backend}</strong>" "<small>{fallback}</small></span>
                <button id="backend-check" on:click=check disabled=move || !ui.idle()
                    title="Compare this backend's embedding with the CPU backend's and run one training step">
                    "Check backend"</button>
                <span data-testid="backend-check">{move || ui.check.get().unwrap_or_default()}</span>
                <threads::ThreadsPicker/>
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
    // The fusion goes over every task: one without a trained adapter and head blocks it.
    let untrained = move || {
        ui.ws.with(|w| {
            w.tasks
                .iter()
                .filter(|t| !t.has_head)
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        })
    };
    let running = move || ui.job.get().filter(|j| matches!(j.job, Job::Fusion(_)));
    let shared = RwSignal::new(false);
    // Cross-validate the gate: the user's choice, else on while some task is small.
    let cv_choice = RwSignal::new(None::<bool>);
    let cross_validate = move || {
        cv_choice.get().unwrap_or_else(|| {
            ui.ws.with(|w| {
                w.tasks
                    .iter()
                    .any(|t| t.examples < CROSS_VALIDATE_BELOW_ROWS)
            })
        })
    };
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
        } else if let [first, ..] = untrained().as_slice() {
            let n = untrained().len();
            format!(
                "The fusion covers every task: train or delete {first:?}{} first.",
                if n > 1 {
                    format!(
                        " and {} more untrained task{}",
                        n - 1,
                        if n > 2 { "s" } else { "" }
                    )
                } else {
                    String::new()
                }
            )
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
            <label class="inline" title=format!("Each task answers with the hybrid only where it beats the task's own LoRA on examples it did not train on. Without cross-validation that check uses the task's few held-out rows; with it, {CV_GATE_FOLDS} more adapters are trained per task, each on part of its rows, and every training row is checked by models that never saw it: this adds about {} times the task's training time. On by default while some task has fewer than {CROSS_VALIDATE_BELOW_ROWS} examples, where it was measured to pay; a task that holds no examples out (under {} examples) is cross-validated either way.", CV_GATE_FOLDS - 1, crate::data::holdout::TRAIN_ALL_BELOW_ROWS)>
                <input type="checkbox" data-testid="fusion-cv"
                    prop:checked=cross_validate
                    prop:disabled=move || shared.get()
                    on:change=move |ev| cv_choice.set(Some(event_target_checked(&ev)))/>
                {format!(" Check each task's fusion by {CV_GATE_FOLDS}-fold cross-validation (slower)")}
            </label>
            <button id="train-fusion" on:click=move |_| send(Request::TrainFusion {
                    shared: shared.get_untracked(),
                    gate_folds: if untrack(cross_validate) { CV_GATE_FOLDS } else { 0 },
                })
                disabled=move || !ui.idle() || trained_tasks() < 2 || !untrained().is_empty()>"Train fusion"</button>
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
    bridge::mark_ui_started();
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
        bridge::mark_tab_claimed();
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
