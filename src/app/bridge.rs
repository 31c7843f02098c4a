//! The UI's side of the worker: starts the engine worker, sends [`Request`]s, and hands each
//! [`Event`] to the page. If the worker dies (a WebGPU device lost, or any crash), it is started
//! again on the CPU backend with the last saved workspace, so trained adapters are kept.

use std::cell::{Cell, RefCell};

use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::worker::protocol::{BackendChoice, Event, LoadPhase, ModelSource, Request};

/// The single-thread worker: the script Trunk writes next to the page (`data-loader-shim`; a
/// classic worker that loads the `no-modules` wasm-bindgen output). WebGPU, or the CPU backend where
/// threads cannot run.
const WORKER_SCRIPT: &str = "./worker_loader.js";
/// The threaded worker (`scripts/build_threads.sh`): a module worker that starts a pool of N Web
/// Workers for the CPU backend (N in its name, `lorafuse-engine:N`). Needs cross-origin isolation.
const THREADED_WORKER_SCRIPT: &str = "./threads/start.js";
/// Restarts after a crash before the page gives up (so a worker that cannot start does not loop).
const MAX_RESTARTS: u32 = 2;

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    static HANDLER: RefCell<Option<Box<dyn Fn(Event)>>> = const { RefCell::new(None) };
    /// Whether the worker has said [`Event::Started`].
    static STARTED: Cell<bool> = const { Cell::new(false) };
    /// Requests waiting for the worker to start.
    static PENDING: RefCell<Vec<Request>> = const { RefCell::new(Vec::new()) };
    static RESTARTS: Cell<u32> = const { Cell::new(0) };
    /// The threaded worker failed to start once: the single-thread one runs from then on.
    static THREADS_FAILED: Cell<bool> = const { Cell::new(false) };
    /// Whether the running worker is the threaded one.
    static THREADED: Cell<bool> = const { Cell::new(false) };
    /// The backend asked for at the start, and the base model the worker runs.
    static BACKEND: Cell<BackendChoice> = const { Cell::new(BackendChoice::Auto) };
    static MODEL: Cell<ModelSource> = const { Cell::new(ModelSource::Default) };
    /// Another tab edits the workspace: a restart must not restore over it either.
    static READ_ONLY: Cell<bool> = const { Cell::new(false) };
    /// When the steps of getting the engine ready happened, on the page's clock.
    static CLOCK: Cell<Clock> = const {
        Cell::new(Clock { ui: 0.0, locked: 0.0, begun: 0.0, created: 0.0, started: 0.0, busy: 0.0 })
    };
    static FIRST: Cell<bool> = const { Cell::new(true) };
    /// The running worker has said [`Event::Ready`].
    static READY_SEEN: Cell<bool> = const { Cell::new(false) };
}

/// Seconds since the page's navigation started (`performance.now()`).
fn page_clock() -> f64 {
    let global = js_sys::global();
    let now = js_sys::Reflect::get(&global, &"performance".into())
        .ok()
        .and_then(|p| {
            let f: js_sys::Function = js_sys::Reflect::get(&p, &"now".into())
                .ok()?
                .dyn_into()
                .ok()?;
            f.call0(&p).ok()?.as_f64()
        });
    now.unwrap_or(0.0) / 1000.0
}

/// Seconds since the page's navigation started, at: the UI's wasm running ([`mark_ui_started`]),
/// the tab lock ([`mark_tab_claimed`]), the engine start beginning (after the tab lock and the saved workspace), the worker created,
/// and its [`Event::Started`]; and the seconds the page spent on the engine's messages before
/// [`Event::Ready`] (reading them, and showing the restored workspace).
#[derive(Clone, Copy)]
struct Clock {
    ui: f64,
    locked: f64,
    begun: f64,
    created: f64,
    started: f64,
    busy: f64,
}

/// Sets one time of [`CLOCK`] to now.
fn clock_mark(set: fn(&mut Clock, f64)) {
    CLOCK.with(|c| {
        let mut t = c.get();
        set(&mut t, page_clock());
        c.set(t);
    });
}

/// The UI's wasm runs (the first thing `app::start` does).
pub fn mark_ui_started() {
    clock_mark(|c, t| c.ui = t);
}

/// The page is rendered and holds (or was refused) the workspace's tab lock.
pub fn mark_tab_claimed() {
    clock_mark(|c, t| c.locked = t);
}

/// The page's side of getting the engine ready, before the worker's own steps: the page itself
/// (its wasm, the saved workspace read from IndexedDB; first engine only), choosing the worker
/// (probing for a WebGPU adapter), and the engine worker's wasm (download or cache, compile,
/// start, the thread pool).
fn page_phases(worker_sec: f64) -> (Vec<LoadPhase>, Vec<LoadPhase>) {
    let c = CLOCK.with(Cell::get);
    let phase = |name: &str, sec: f64| LoadPhase {
        name: name.into(),
        sec: sec.max(0.0),
    };
    let mut v = Vec::new();
    if FIRST.with(|f| f.replace(false)) {
        v.push(phase("page: UI wasm (fetch, compile)", c.ui));
        v.push(phase("page: render, tab lock", c.locked - c.ui));
        v.push(phase(
            "page: saved workspace (IndexedDB)",
            c.begun - c.locked,
        ));
    }
    v.push(phase("choosing the engine", c.created - c.begun));
    v.push(phase(
        "engine wasm (fetch, compile, start)",
        c.started - c.created,
    ));
    let after = vec![
        phase(
            "page: reading messages, showing the restored workspace",
            c.busy,
        ),
        phase(
            "messages waiting",
            page_clock() - c.started - worker_sec - c.busy,
        ),
    ];
    (v, after)
}

/// Marks this tab read-only (another tab holds the workspace).
pub fn set_read_only() {
    READ_ONLY.with(|r| r.set(true));
}

/// Whether this tab is read-only.
pub fn read_only() -> bool {
    READ_ONLY.with(Cell::get)
}

/// Starts the worker and asks it to load `model` (and restore `bundle`); `on_event` receives
/// every event, also after a restart.
pub fn start(
    backend: BackendChoice,
    model: ModelSource,
    bundle: Option<Vec<u8>>,
    on_event: impl Fn(Event) + 'static,
) {
    HANDLER.with(|h| *h.borrow_mut() = Some(Box::new(on_event)));
    BACKEND.with(|b| b.set(backend));
    MODEL.with(|m| m.set(model));
    wasm_bindgen_futures::spawn_local(spawn(backend, bundle));
}

/// Starts the engine again on the same model with the saved workspace (the thread count changed).
pub fn restart() {
    restart_on(MODEL.with(Cell::get));
}

/// Starts the engine again on `model` (the user switched encoders) with the saved workspace, on
/// the backend asked for at the start.
pub fn restart_on(model: ModelSource) {
    if let Some(w) = WORKER.with(|w| w.borrow_mut().take()) {
        w.terminate();
    }
    STARTED.with(|s| s.set(false));
    PENDING.with(|p| p.borrow_mut().clear());
    MODEL.with(|m| m.set(model));
    wasm_bindgen_futures::spawn_local(async {
        let bundle = super::storage::load().await.ok().flatten();
        spawn(BACKEND.with(Cell::get), bundle).await;
    });
}

fn deliver(ev: Event) {
    HANDLER.with(|h| {
        if let Some(f) = h.borrow().as_ref() {
            f(ev);
        }
    });
}

/// One message from the engine worker.
fn on_message(ev: MessageEvent) {
    match serde_wasm_bindgen::from_value::<Event>(ev.data()) {
        Ok(Event::Started) => {
            clock_mark(|c, t| c.started = t);
            STARTED.with(|s| s.set(true));
            super::offline::keep_engine(THREADED.with(Cell::get));
            for req in PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())) {
                post(&req);
            }
        }
        Ok(Event::DeviceLost { reason }) => {
            restart_on_cpu(format!("the WebGPU device was lost ({reason})"));
        }
        Ok(Event::Ready(mut ready)) => {
            READY_SEEN.with(|r| r.set(true));
            let (before, after) = page_phases(ready.load_sec);
            ready.phases.splice(0..0, before);
            ready.phases.extend(after);
            deliver(Event::Ready(ready))
        }
        Ok(e) => deliver(e),
        Err(e) => deliver(Event::Error {
            context: "reading a message from the engine".into(),
            message: e.to_string(),
        }),
    }
}

/// Threads for the engine: `Some(n)` runs the threaded worker (the CPU backend on `n` threads),
/// `None` the single-thread one (WebGPU when asked for or offered, or no cross-origin isolation).
async fn threads_for(backend: BackendChoice) -> Option<usize> {
    if THREADS_FAILED.with(Cell::get) || !super::threads::isolated() {
        return None;
    }
    let cpu = match backend {
        BackendChoice::Cpu => true,
        BackendChoice::WebGpu => false,
        BackendChoice::Auto => crate::backend::browser_webgpu_adapter().await.is_err(),
    };
    cpu.then(super::threads::chosen)
}

async fn spawn(backend: BackendChoice, bundle: Option<Vec<u8>>) {
    clock_mark(|c, t| {
        c.begun = t;
        c.busy = 0.0;
    });
    READY_SEEN.with(|r| r.set(false));
    STARTED.with(|s| s.set(false));
    let threads = threads_for(backend).await;
    THREADED.with(|t| t.set(threads.is_some()));
    let opts = WorkerOptions::new();
    let name = crate::worker::ENGINE_WORKER_NAME;
    let script = match threads {
        Some(n) => {
            opts.set_type(WorkerType::Module);
            opts.set_name(&format!("{name}:{n}"));
            THREADED_WORKER_SCRIPT
        }
        None => {
            opts.set_type(WorkerType::Classic);
            opts.set_name(name);
            WORKER_SCRIPT
        }
    };
    clock_mark(|c, t| c.created = t);
    let worker = match Worker::new_with_options(script, &opts) {
        Ok(w) => w,
        Err(e) => {
            deliver(Event::Error {
                context: "starting the engine worker".into(),
                message: format!("{e:?}"),
            });
            return;
        }
    };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|ev: MessageEvent| {
        let t0 = page_clock();
        let before_ready = !READY_SEEN.with(Cell::get);
        on_message(ev);
        if before_ready {
            CLOCK.with(|c| {
                let mut t = c.get();
                t.busy += page_clock() - t0;
                c.set(t);
            });
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(|ev: web_sys::Event| {
        ev.prevent_default();
        // An ErrorEvent for an error in the worker; a plain Event when its script did not load.
        let message = js_sys::Reflect::get(&ev, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .unwrap_or_else(|| "the engine worker's script did not load".into());
        if THREADED.with(Cell::get) && !STARTED.with(Cell::get) {
            // The threaded worker did not even start (its files are missing, say): the
            // single-thread one runs from now on.
            THREADS_FAILED.with(|f| f.set(true));
        }
        restart_on_cpu(message);
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    WORKER.with(|w| *w.borrow_mut() = Some(worker));
    send(&Request::Init {
        backend,
        bundle,
        model: MODEL.with(Cell::get),
    });
}

/// The engine stopped (it crashed, or its WebGPU device was lost): starts it again on the CPU
/// backend with the last saved workspace, so trained adapters are kept; gives up after
/// [`MAX_RESTARTS`].
fn restart_on_cpu(why: String) {
    if let Some(w) = WORKER.with(|w| w.borrow_mut().take()) {
        w.terminate();
    }
    STARTED.with(|s| s.set(false));
    let restarts = RESTARTS.with(|r| {
        r.set(r.get() + 1);
        r.get()
    });
    if restarts > MAX_RESTARTS {
        deliver(Event::Error {
            context: "loading the model".into(),
            message: format!("the engine stopped: {why} (reload the page to try again)"),
        });
        return;
    }
    deliver(Event::Error {
        context: "the engine stopped".into(),
        message: format!("{why} — restarting it on the CPU backend with the saved workspace"),
    });
    PENDING.with(|p| p.borrow_mut().clear());
    wasm_bindgen_futures::spawn_local(async {
        let bundle = super::storage::load().await.ok().flatten();
        spawn(BackendChoice::Cpu, bundle).await;
    });
}

/// Sends a request to the worker (queued until the worker has started).
pub fn send(req: &Request) {
    if !STARTED.with(Cell::get) {
        PENDING.with(|p| p.borrow_mut().push(req.clone()));
        return;
    }
    post(req);
}

fn post(req: &Request) {
    let sent = WORKER.with(|w| -> Result<(), String> {
        let w = w.borrow();
        let w = w.as_ref().ok_or("the engine is not running")?;
        let v = serde_wasm_bindgen::to_value(req).map_err(|e| e.to_string())?;
        w.post_message(&v).map_err(|e| format!("{e:?}"))
    });
    if let Err(message) = sent {
        deliver(Event::Error {
            context: "sending a request to the engine".into(),
            message,
        });
    }
}
