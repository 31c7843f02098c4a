//! The base model in the header: which encoder runs (name and size), and "Use another encoder":
//! the user picks a BERT-family sentence encoder as a folder or as files (`config.json`,
//! `model.safetensors` in F32 or F16, `tokenizer.json`, and sentence-transformers' `modules.json`
//! and `1_Pooling/config.json` when present). The worker checks it and keeps it in Cache Storage
//! (`worker/own_model.rs`); the page then remembers the choice (localStorage) and restarts the
//! engine on it with the saved workspace. Adapters and fusions trained on the other encoder do
//! not load on this one (the worker says so, keeping the tasks' data and settings), so the page
//! asks first when there are some. "Use the default model" switches back.
//!
//! Left out: picking a model from a hub (no network beyond the page's own origin), and other
//! architectures than BERT's (the engine is a BERT encoder).

use js_sys::Reflect;
use leptos::prelude::*;
use web_sys::{File, HtmlInputElement};

use super::{ModelState, Ui, bridge, files, mb, prefs, send};
use crate::engine::MODEL_FILE_NAMES;
use crate::limits::MAX_MODEL_BYTES;
use crate::worker::protocol::{ModelSource, NamedFile, Request};

/// localStorage key of the chosen model.
const KEY: &str = "lorafuse-model";

/// The model chosen in this browser (default when nothing was chosen, or storage is blocked).
pub fn chosen() -> ModelSource {
    match prefs::get(KEY).as_deref() {
        Some("own") => ModelSource::Own,
        _ => ModelSource::Default,
    }
}

/// Remembers the choice for the next visit.
pub fn remember(source: ModelSource) {
    let v = match source {
        ModelSource::Own => "own",
        ModelSource::Default => "default",
    };
    prefs::set(KEY, v);
}

/// The worker kept the picked encoder: run on it from now on.
pub fn installed(ui: Ui, name: String, bytes: u64) {
    ui.installing.set(None);
    remember(ModelSource::Own);
    ui.say(
        false,
        format!(
            "Encoder {name:?} ({}) checked and kept in this browser; the engine restarts on it.",
            mb(bytes)
        ),
    );
    ui.model.set(ModelState::Loading(Default::default()));
    bridge::restart_on(ModelSource::Own);
}

/// A picked file's path inside the model folder: the folder's own name is dropped from a folder
/// pick (`my-model/1_Pooling/config.json` → `1_Pooling/config.json`).
fn path_in_folder(file: &File) -> (Option<String>, String) {
    let rel = Reflect::get(file, &"webkitRelativePath".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    match rel.split_once('/') {
        Some((folder, rest)) if !rest.is_empty() => (Some(folder.to_string()), rest.to_string()),
        _ => (None, file.name()),
    }
}

/// Reads the model files among `list` (others, such as `pytorch_model.bin` or `onnx/`, are not
/// read) and asks the worker to check them.
async fn pick(ui: Ui, list: Vec<File>) -> Result<(), String> {
    let mut folder = None;
    let mut wanted = Vec::new();
    for f in list {
        let (dir, path) = path_in_folder(&f);
        folder = folder.or(dir);
        if MODEL_FILE_NAMES.contains(&path.as_str()) {
            wanted.push((path, f));
        }
    }
    let total: f64 = wanted.iter().map(|(_, f)| f.size()).sum();
    if total > MAX_MODEL_BYTES as f64 {
        return Err(format!(
            "the model's files hold {:.0} MB; at most {} MB fit in the page",
            total / 1e6,
            MAX_MODEL_BYTES >> 20
        ));
    }
    let mut named = Vec::new();
    for (path, f) in wanted {
        let bytes = files::read(&f).await?;
        // Files picked one by one carry no folder: of two `config.json`, the pooling one is the
        // one that sets a pooling mode.
        let path = if path == "config.json" && folder.is_none() {
            match String::from_utf8_lossy(&bytes).contains("\"pooling_mode_") {
                true => "1_Pooling/config.json".to_string(),
                false => path,
            }
        } else {
            path
        };
        named.push(NamedFile { name: path, bytes });
    }
    if named.is_empty() {
        return Err(format!(
            "none of the picked files is a model file ({})",
            MODEL_FILE_NAMES.join(", ")
        ));
    }
    let name = folder.unwrap_or_else(|| "your encoder".to_string());
    let trained = ui
        .ws
        .with_untracked(|w| w.tasks.iter().any(|t| t.has_adapter));
    if trained {
        let ok = web_sys::window()
            .and_then(|w| {
                w.confirm_with_message(&format!(
                    "Run the engine on {name:?}? Your tasks, data and settings stay. Adapters and \
                     fusions trained on the current encoder do not fit another one: they are \
                     not loaded, and are replaced when you next train (download the workspace \
                     first to keep them)."
                ))
                .ok()
            })
            .unwrap_or(false);
        if !ok {
            return Ok(());
        }
    }
    ui.installing.set(Some(name.clone()));
    send(Request::InstallModel { name, files: named });
    Ok(())
}

fn file_list(ev: &leptos::ev::Event) -> Vec<File> {
    let input: HtmlInputElement = event_target(ev);
    let list = input.files();
    let out = list
        .map(|l| (0..l.length()).filter_map(|i| l.get(i)).collect())
        .unwrap_or_default();
    input.set_value("");
    out
}

/// Name and size of the running encoder, and the controls to change it.
#[component]
pub fn ModelPicker() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let on_pick = move |ev: leptos::ev::Event| {
        let list = file_list(&ev);
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = pick(ui, list).await {
                ui.installing.set(None);
                ui.say(true, format!("the encoder was not used: {e}"));
            }
        });
    };
    let to_default = move |_| {
        remember(ModelSource::Default);
        ui.model.set(ModelState::Loading(Default::default()));
        bridge::restart_on(ModelSource::Default);
    };
    let current = move || match ui.model.get() {
        ModelState::Ready(r) => format!("{} ({})", r.model, mb(r.model_bytes)),
        _ => "…".into(),
    };
    let own = move || matches!(ui.model.get(), ModelState::Ready(r) if r.own_model);
    // A folder picker: `webkitdirectory` (every current browser has it; the view macro does not
    // know the attribute, so it is set on the element).
    let folder = NodeRef::<leptos::html::Input>::new();
    Effect::new(move || {
        if let Some(el) = folder.get() {
            el.set_webkitdirectory(true);
        }
    });
    view! {
        <span class="encoder">"Encoder: "<strong data-testid="model-name">{current}</strong></span>
        <details class="own-model">
            <summary>"Use another encoder"</summary>
            <div class="own-model-body">
                <p class="hint">"A BERT-family sentence encoder from your disk: config.json, "
                    "model.safetensors (F32 or F16) and tokenizer.json; sentence-transformers' "
                    "modules.json and 1_Pooling/config.json pick the pooling. It is kept in this "
                    "browser. Adapters trained on one encoder do not fit another."</p>
                <label>"Model folder "
                    <input type="file" data-testid="model-folder" node_ref=folder
                        disabled=move || !ui.idle() || ui.installing.get().is_some()
                        on:change=on_pick/></label>
                <label>" or its files "
                    <input type="file" multiple data-testid="model-files"
                        disabled=move || !ui.idle() || ui.installing.get().is_some()
                        on:change=on_pick/></label>
                <Show when=move || ui.installing.get().is_some()>
                    <p class="small" role="status" data-testid="model-installing">
                        {move || format!("Checking {}…", ui.installing.get().unwrap_or_default())}
                    </p>
                </Show>
                <Show when=own>
                    <button data-testid="default-model" on:click=to_default
                        disabled=move || !ui.idle()>"Use the default model"</button>
                </Show>
            </div>
        </details>
    }
}
