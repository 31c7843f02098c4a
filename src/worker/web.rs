//! The Web Worker's glue: receives [`Request`]s with `postMessage`, runs them one at a time on the
//! [`Session`], and posts [`Event`]s back. It also starts the engine: picks the backend (WebGPU
//! with an async init and a smoke test, else the CPU backend) and loads the base model, the
//! default one ([`super::model_fetch`]) or the user's own ([`super::own_model`]).
//!
//! A Cancel is applied at once (it only sets a flag the training loop checks between steps); other
//! requests queue, and of several queued predictions only the newest runs.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use super::model_fetch::fetch_model;
use super::own_model;
use super::protocol::{BackendChoice, EngineReady, Event, LoadPhase, ModelSource, Request};
use super::session::{Host, Session};
use crate::engine::{Engine, ModelFiles};
use crate::train::now_sec;

thread_local! {
    /// Destroys the WebGPU device ([`Request::LoseDevice`]), when one is in use.
    static GPU_DESTROY: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct State {
    session: RefCell<Option<Session>>,
    queue: RefCell<VecDeque<Request>>,
    busy: Cell<bool>,
    cancel: RefCell<Option<Arc<AtomicBool>>>,
    /// The model's files, kept so a CPU engine can be built without reading them again (backend
    /// check).
    bytes: RefCell<Option<Rc<ModelFiles>>>,
}

pub(super) struct WebHost {
    pub(super) scope: DedicatedWorkerGlobalScope,
}

impl Host for WebHost {
    fn emit(&self, event: Event) {
        post(&self.scope, &event);
    }

    async fn pause(&self) {
        gloo_timers::future::TimeoutFuture::new(0).await;
    }
}

pub(super) fn post(scope: &DedicatedWorkerGlobalScope, event: &Event) {
    match serde_wasm_bindgen::to_value(event) {
        Ok(v) => {
            if let Err(e) = scope.post_message(&v) {
                web_sys::console::error_2(&"lorafuse worker: postMessage failed".into(), &e);
            }
        }
        Err(e) => web_sys::console::error_1(&format!("lorafuse worker: {e}").into()),
    }
}

pub(super) fn js_err(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Starts the worker: installs the message handler, then (threaded build) starts the thread pool,
/// then says [`Event::Started`].
pub fn start() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    if !scope.name().starts_with(super::ENGINE_WORKER_NAME) {
        return;
    }
    let state = Rc::new(State::default());
    let host = Rc::new(WebHost {
        scope: scope.clone(),
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let req: Request = match serde_wasm_bindgen::from_value(ev.data()) {
            Ok(r) => r,
            Err(e) => {
                host.emit(Event::Error {
                    context: "reading a message from the page".into(),
                    message: e.to_string(),
                });
                return;
            }
        };
        if req == Request::LoseDevice {
            GPU_DESTROY.with(|d| {
                if let Some(destroy) = d.borrow().as_ref() {
                    destroy();
                }
            });
            return;
        }
        if req == Request::Cancel {
            if let Some(c) = state.cancel.borrow().as_ref() {
                c.store(true, Ordering::Relaxed);
            }
            return;
        }
        state.queue.borrow_mut().push_back(req);
        if !state.busy.get() {
            spawn_local(drain(state.clone(), host.clone()));
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    // Messages sent before the handler existed are lost: the page waits for this.
    #[cfg(feature = "threads")]
    spawn_local(async move {
        super::pool::start(&scope).await;
        post(&scope, &Event::Started);
    });
    #[cfg(not(feature = "threads"))]
    post(&scope, &Event::Started);
}

async fn drain(state: Rc<State>, host: Rc<WebHost>) {
    state.busy.set(true);
    loop {
        let next = {
            let mut q = state.queue.borrow_mut();
            let req = q.pop_front();
            // Only the newest of several waiting predictions is worth running.
            match req {
                Some(Request::Predict { .. })
                    if q.iter().any(|r| matches!(r, Request::Predict { .. })) =>
                {
                    continue;
                }
                other => other,
            }
        };
        let Some(req) = next else { break };
        match req {
            Request::Init {
                backend,
                bundle,
                model,
            } => init(&state, &host, backend, bundle, model).await,
            Request::InstallModel { name, files } => {
                own_model::install(&host, &name, files).await;
            }
            Request::BackendCheck { text } => backend_check(&state, &host, &text).await,
            req => {
                let taken = state.session.borrow_mut().take();
                match taken {
                    Some(mut session) => {
                        session.handle(req, host.as_ref()).await;
                        *state.session.borrow_mut() = Some(session);
                    }
                    None => host.emit(Event::Error {
                        context: "handling a request".into(),
                        message: "the model is not loaded yet".into(),
                    }),
                }
            }
        }
    }
    state.busy.set(false);
}

async fn init(
    state: &State,
    host: &WebHost,
    choice: BackendChoice,
    bundle: Option<Vec<u8>>,
    source: ModelSource,
) {
    let start = now_sec();
    let mut phases = Phases::new(start);
    let result = async {
        let (device, backend, fallback_reason) = pick_device(choice).await?;
        phases.done("backend");
        // The user's own encoder, else (when it is not there, or does not load) the default.
        let own = match source {
            ModelSource::Own => match own_model::read(host).await {
                Ok(files) => match Engine::from_files(&files, &device) {
                    Ok(engine) => Some((engine, files)),
                    Err(e) => {
                        host.emit(Event::Notice(format!(
                            "your encoder did not load ({e}); the default model is used"
                        )));
                        None
                    }
                },
                Err(e) => {
                    host.emit(Event::Notice(format!("{e}; the default model is used")));
                    None
                }
            },
            ModelSource::Default => None,
        };
        let (engine, files, is_own) = match own {
            Some((engine, files)) => (engine, files, true),
            None => {
                let files = fetch_model(host).await?;
                phases.done("model files (read, sha256)");
                let engine = Engine::from_files(&files, &device).map_err(|e| e.to_string())?;
                (engine, files, false)
            }
        };
        phases.done("weights to tensors, tokenizer");
        Ok::<_, String>((engine, backend, fallback_reason, files, is_own))
    }
    .await;
    match result {
        Ok((engine, backend, fallback_reason, bytes, own_model)) => {
            let model = engine.name.clone();
            let mut session = Session::new(engine);
            *state.cancel.borrow_mut() = Some(session.cancel_flag());
            // The workspace first, then "ready": the page never shows a ready engine next to the
            // previous engine's view of the workspace (after a switch of encoders, say).
            session
                .handle(
                    Request::Init {
                        backend: choice,
                        bundle,
                        model: source,
                    },
                    host,
                )
                .await;
            phases.done("workspace restore");
            host.emit(Event::Ready(EngineReady {
                backend: backend.clone(),
                fallback_reason,
                model,
                model_bytes: bytes.weights.len() as u64,
                own_model,
                load_sec: now_sec() - start,
                phases: phases.list,
            }));
            *state.session.borrow_mut() = Some(session);
            *state.bytes.borrow_mut() = Some(Rc::new(bytes));
        }
        Err(message) => host.emit(Event::Error {
            context: "loading the model".into(),
            message,
        }),
    }
}

/// The steps of [`init`] as they finish, each with its seconds.
struct Phases {
    list: Vec<LoadPhase>,
    last: f64,
}

impl Phases {
    fn new(start: f64) -> Self {
        Self {
            list: Vec::new(),
            last: start,
        }
    }

    fn done(&mut self, name: &str) {
        let now = now_sec();
        self.list.push(LoadPhase {
            name: name.into(),
            sec: now - self.last,
        });
        self.last = now;
    }
}

async fn backend_check(state: &State, host: &WebHost, text: &str) {
    let bytes = state.bytes.borrow().clone();
    let taken = state.session.borrow_mut().take();
    let (Some(session), Some(bytes)) = (taken, bytes) else {
        host.emit(Event::Error {
            context: "checking the backend".into(),
            message: "the model is not loaded yet".into(),
        });
        return;
    };
    let result = async {
        let cpu = Engine::from_files(
            &bytes,
            &crate::backend::cpu_device(crate::backend::DEFAULT_CPU).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        session
            .backend_check(&cpu, text)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(ev) => host.emit(ev),
        Err(message) => host.emit(Event::Error {
            context: "checking the backend".into(),
            message,
        }),
    }
    *state.session.borrow_mut() = Some(session);
}

/// `(device, backend in words, why not WebGPU)`.
async fn pick_device(choice: BackendChoice) -> Result<(Device, String, Option<String>), String> {
    let cpu = || crate::backend::cpu_device(crate::backend::DEFAULT_CPU).map_err(|e| e.to_string());
    if choice == BackendChoice::Cpu {
        return Ok((
            cpu()?,
            super::pool::cpu_name(),
            Some("CPU chosen in the URL".into()),
        ));
    }
    match webgpu().await {
        Ok((d, name)) => Ok((d, name, None)),
        Err(reason) if choice == BackendChoice::Auto => {
            Ok((cpu()?, super::pool::cpu_name(), Some(reason)))
        }
        Err(reason) => Err(format!(
            "WebGPU was asked for but is not available: {reason}"
        )),
    }
}

#[cfg(feature = "wgpu")]
async fn webgpu() -> Result<(Device, String), String> {
    if !crate::backend::browser_has_webgpu() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| {
            let e = e.to_string();
            if e.to_lowercase().contains("no adapter") {
                "the browser offers no WebGPU adapter".to_string()
            } else {
                format!("no WebGPU device: {e}")
            }
        })?;
    // A smoke test: one kernel and one async read.
    let t = burn::tensor::Tensor::<1>::ones([4], &device)
        .mul_scalar(2.0)
        .sum();
    let v = crate::host::scalar(t).await.map_err(|e| e.to_string())?;
    if v != 8.0 {
        return Err(format!("WebGPU computed 4 × 2 = {v}"));
    }
    // A lost device (a driver reset, a crashed GPU process, or `LoseDevice`) ends this engine: the
    // page restarts it on the CPU backend with the saved workspace.
    setup.device.set_device_lost_callback(|reason, message| {
        let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
        post(
            &scope,
            &Event::DeviceLost {
                reason: format!("{reason:?}: {message}"),
            },
        );
    });
    let gpu = setup.device.clone();
    GPU_DESTROY.with(|d| *d.borrow_mut() = Some(Box::new(move || gpu.destroy())));
    let info = setup.adapter.get_info();
    // Browsers often withhold the adapter's name.
    let name = [info.name, info.driver, info.driver_info]
        .into_iter()
        .find(|s| !s.trim().is_empty());
    Ok((
        device,
        name.map_or("WebGPU".into(), |n| format!("WebGPU ({n})")),
    ))
}

/// The build without WebGPU (the threaded worker, which the page starts when the browser offers no
/// adapter, or the CPU backend is asked for): says why WebGPU is not used.
#[cfg(not(feature = "wgpu"))]
async fn webgpu() -> Result<(Device, String), String> {
    crate::backend::browser_webgpu_adapter().await?;
    Err("the threaded CPU engine runs (this build has no WebGPU backend)".into())
}
