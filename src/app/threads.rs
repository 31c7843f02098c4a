//! The engine's threads. Where the page is cross-origin isolated (served with
//! `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`), the
//! CPU backend runs in the threaded worker (`scripts/build_threads.sh`) on a pool of Web Workers
//! sharing its memory; the pool's size is every core the browser reports, or the user's choice
//! (kept in localStorage; a change restarts the engine with the saved workspace). Elsewhere the
//! single-thread worker runs, and the backend line says why.
//!
//! Left out: resizing a running pool (rayon's global pool is built once per worker).

use js_sys::Reflect;
use leptos::prelude::*;

use super::{ModelState, Ui, bridge, prefs};
use crate::limits::MAX_THREADS;

/// localStorage key of the chosen thread count.
const KEY: &str = "lorafuse-threads";

/// Whether the page may share memory with its workers (the isolation headers were sent).
pub fn isolated() -> bool {
    web_sys::window()
        .and_then(|w| Reflect::get(&w, &"crossOriginIsolated".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Logical cores the browser reports (`navigator.hardwareConcurrency`), 1 to [`MAX_THREADS`].
pub fn cores() -> usize {
    web_sys::window()
        .and_then(|w| Reflect::get(&w, &"navigator".into()).ok())
        .and_then(|n| Reflect::get(&n, &"hardwareConcurrency".into()).ok())
        .and_then(|v| v.as_f64())
        .map_or(1, |c| c as usize)
        .clamp(1, MAX_THREADS)
}

/// Threads for the engine's pool: the user's choice, else every core.
pub fn chosen() -> usize {
    prefs::get(KEY)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(cores)
        .clamp(1, cores())
}

/// The thread count next to the backend: a choice where threads run, else nothing (the backend
/// line says why the engine has one thread).
#[component]
pub fn ThreadsPicker() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let threaded = move || {
        isolated() && matches!(ui.model.get(), ModelState::Ready(r) if r.backend.starts_with("CPU"))
    };
    let on_change = move |ev: leptos::ev::Event| {
        let Ok(n) = event_target_value(&ev).parse::<usize>() else {
            return;
        };
        if n == chosen() {
            return;
        }
        prefs::set(KEY, &n.to_string());
        ui.model.set(ModelState::Loading(Default::default()));
        bridge::restart();
    };
    view! {
        <Show when=threaded>
            <label class="threads">"Threads "
                <select data-testid="threads" on:change=on_change disabled=move || !ui.idle()
                    title="Threads of the CPU backend (the engine restarts with the saved workspace)">
                    {(1..=cores())
                        .map(|n| view! { <option value=n.to_string() selected=n == chosen()>{n}</option> })
                        .collect_view()}
                </select>
            </label>
        </Show>
    }
}
