//! The engine's thread pool. In the threaded build (feature `threads`, `scripts/build_threads.sh`)
//! the worker starts rayon's global pool on Web Workers sharing its memory (`wasm-bindgen-rayon`),
//! sized by the page (`lorafuse-engine:N` as the worker's name); burn's CPU kernels then use it. In
//! the single-thread build there is no pool, and the backend line says why.
//!
//! Left out: resizing a running pool (rayon's global pool is built once; the page restarts the
//! worker instead).

use std::cell::Cell;

use js_sys::Reflect;
#[cfg(feature = "threads")]
use web_sys::DedicatedWorkerGlobalScope;

thread_local! {
    /// Threads in rayon's pool (see [`threads`]).
    static POOL_THREADS: Cell<usize> = const { Cell::new(1) };
}

/// The pool size the page asked for (`lorafuse-engine:N` as the worker's name; not the URL, which
/// is the service worker's cached one once it serves the page), at least 1.
#[cfg(feature = "threads")]
fn requested(scope: &DedicatedWorkerGlobalScope) -> usize {
    scope
        .name()
        .strip_prefix(super::ENGINE_WORKER_NAME)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, crate::limits::MAX_THREADS)
}

/// Starts rayon's global pool on Web Workers sharing this module's memory (wasm-bindgen-rayon).
/// Where that fails, the engine still runs: rayon then works on this thread alone, and the page
/// hears why.
#[cfg(feature = "threads")]
pub async fn start(scope: &DedicatedWorkerGlobalScope) {
    let n = requested(scope);
    match wasm_bindgen_futures::JsFuture::from(wasm_bindgen_rayon::init_thread_pool(n)).await {
        Ok(_) => POOL_THREADS.with(|t| t.set(n)),
        Err(e) => super::web::post(
            scope,
            &super::protocol::Event::Notice(format!(
                "the thread pool did not start ({}); the engine runs on one thread",
                super::web::js_err(e)
            )),
        ),
    }
}

/// Threads of the engine's pool: 1 in the single-thread build, or where the pool did not start.
pub fn threads() -> usize {
    POOL_THREADS.with(Cell::get)
}

/// The CPU backend in words, with its threads (and why only one, where the page cannot share
/// memory with workers).
pub fn cpu_name() -> String {
    let isolated = Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let threads = match threads() {
        1 if !cfg!(feature = "threads") && !isolated => {
            "1 thread: the page is not cross-origin isolated".to_string()
        }
        1 => "1 thread".to_string(),
        n => format!("{n} threads"),
    };
    format!("CPU (WebAssembly, {threads})")
}
