//! Offline use. Registers the service worker `sw.js` (written by `scripts/pwa.py` after each build;
//! the template is `web/sw.js`), which keeps the page's own files (HTML, CSS, the UI's wasm and JS)
//! for use with no network, and the files of the engine worker the page runs (the bridge says which
//! once it has started, [`keep_engine`]; the other engine's megabytes are not downloaded). The
//! engine keeps the model files itself in Cache Storage (`worker/model_fetch.rs`). The workspace is
//! in IndexedDB. So after one visit the page opens, trains and predicts offline; the header says
//! "Works offline" once the service worker is active and holds the running engine.
//!
//! A new build served later is a new service worker: it installs in the background and takes over
//! at once, and the page says a reload brings the new version (the open page keeps running the
//! old one).
//!
//! Left out: a browser without service workers, or a page not served from https or localhost,
//! runs as before, online only, and says so. `navigator.serviceWorker` is reached through
//! `js_sys::Reflect`, so no web-sys features (and no rebuild of every web-sys user) are needed.

use std::cell::Cell;

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use wasm_bindgen_futures::JsFuture;

use super::Ui;

thread_local! {
    /// The page's state, once [`register`] ran.
    static UI: Cell<Option<Ui>> = const { Cell::new(None) };
    /// The service worker is active (it holds the page's files).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// The engine the page runs (`single` or `threads`, as `sw.js` names them), once started.
    static ENGINE: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// The engine worker that started: `threaded` or the single-thread one. Its files are kept for
/// offline use as soon as the service worker is active.
pub fn keep_engine(threaded: bool) {
    ENGINE.with(|e| e.set(Some(if threaded { "threads" } else { "single" })));
    if ACTIVE.with(Cell::get) {
        wasm_bindgen_futures::spawn_local(keep());
    }
}

/// Asks the active service worker to keep the running engine's files; "Works offline" when it has.
async fn keep() {
    let (Some(ui), Some(kind)) = (UI.with(Cell::get), ENGINE.with(Cell::get)) else {
        return;
    };
    let state = match ask_to_keep(kind).await {
        Ok(()) => Offline::Ready,
        Err(e) => Offline::Unavailable(format!("the engine's files could not be kept: {e}")),
    };
    ui.offline.set(state);
}

/// Posts `{keep: kind}` to the active service worker and waits for its answer.
async fn ask_to_keep(kind: &str) -> Result<(), String> {
    let container = web_sys::window()
        .and_then(|w| get(&w, "navigator"))
        .and_then(|n| get(&n, "serviceWorker"))
        .ok_or("no service worker")?;
    let ready: Promise = get(&container, "ready")
        .and_then(|p| p.dyn_into().ok())
        .ok_or("no serviceWorker.ready")?;
    let registration = JsFuture::from(ready).await.map_err(|e| js_message(&e))?;
    let active = get(&registration, "active").ok_or("no active service worker")?;
    // The answer comes as a message event on navigator.serviceWorker; the listener is removed
    // once it has come, so each engine start leaves none behind.
    type Settle = Option<(Function, Function)>;
    let settle: std::rc::Rc<std::cell::RefCell<Settle>> = Default::default();
    let kind_owned = kind.to_string();
    let on_message = settle.clone();
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        let data = get(&ev, "data");
        let field = |k: &str| {
            data.as_ref()
                .and_then(|d| get(d, k))
                .and_then(|v| v.as_string())
        };
        let Some((resolve, reject)) = on_message.borrow().clone() else {
            return;
        };
        if field("kept").as_deref() == Some(&kind_owned) {
            let _ = resolve.call0(&JsValue::NULL);
        } else if field("keepFailed").as_deref() == Some(&kind_owned) {
            let _ = reject.call1(&JsValue::NULL, &field("error").unwrap_or_default().into());
        }
    });
    let answer = Promise::new(&mut |resolve, reject| {
        *settle.borrow_mut() = Some((resolve, reject));
    });
    let listen = ["message".into(), listener.as_ref().clone()];
    call(&container, "addEventListener", &listen);
    call(&container, "startMessages", &[]);
    let msg = js_sys::Object::new();
    Reflect::set(&msg, &"keep".into(), &kind.into()).map_err(|e| js_message(&e))?;
    call(&active, "postMessage", &[msg.into()]);
    let result = JsFuture::from(answer).await.map_err(|e| js_message(&e));
    call(&container, "removeEventListener", &listen);
    drop(listener);
    result?;
    Ok(())
}

/// `target[name](...args)`, ignoring a missing method or a throw.
fn call(target: &JsValue, name: &str, args: &[JsValue]) {
    if let Some(f) = get(target, name).and_then(|f| f.dyn_into::<Function>().ok()) {
        let _ = f.apply(target, &args.iter().collect::<js_sys::Array>());
    }
}

/// The service worker's URL, relative to the page.
const SCRIPT: &str = "./sw.js";

/// Whether the page works with no network.
#[derive(Debug, Clone, PartialEq)]
pub enum Offline {
    /// The service worker is being registered or is copying the page's files.
    Preparing,
    /// Everything the page needs is kept in this browser.
    Ready,
    /// Offline use is not possible here, and why.
    Unavailable(String),
}

impl Offline {
    /// The header's line.
    pub fn describe(&self) -> String {
        match self {
            Offline::Preparing => "Preparing offline use…".into(),
            Offline::Ready => "Works offline".into(),
            Offline::Unavailable(why) => format!("Online only ({why})"),
        }
    }
}

fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(target, &key.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn js_message(e: &JsValue) -> String {
    get(e, "message")
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Registers the service worker and keeps `ui.offline` up to date.
pub fn register(ui: Ui) {
    UI.with(|u| u.set(Some(ui)));
    let Some(window) = web_sys::window() else {
        return;
    };
    let secure = get(&window, "isSecureContext").and_then(|v| v.as_bool()) == Some(true);
    let container = get(&window, "navigator").and_then(|n| get(&n, "serviceWorker"));
    let container = match (secure, container) {
        (false, _) => {
            ui.offline.set(Offline::Unavailable(
                "the page is not served over https or from localhost".into(),
            ));
            return;
        }
        (true, None) => {
            ui.offline.set(Offline::Unavailable(
                "this browser has no service workers".into(),
            ));
            return;
        }
        (true, Some(c)) => c,
    };
    // A page that already had a service worker and gets a new one: a newer build was installed.
    let had_controller = get(&container, "controller").is_some();
    if had_controller {
        let changed = Closure::<dyn Fn()>::new(move || {
            ui.say(
                false,
                "A newer version of this page was installed: reload the page to use it.".into(),
            );
        });
        let _ = Reflect::get(&container, &"addEventListener".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .map(|f| f.call2(&container, &"controllerchange".into(), changed.as_ref()));
        changed.forget();
    }
    wasm_bindgen_futures::spawn_local(async move {
        match activate(&container).await {
            Ok(()) => {
                ACTIVE.with(|a| a.set(true));
                // Ready once the running engine's files are kept too (now, or when it starts).
                keep().await;
            }
            Err(e) => ui.offline.set(Offline::Unavailable(format!(
                "the service worker failed: {e}"
            ))),
        }
    });
}

/// `register(SCRIPT)`, then waits for `serviceWorker.ready` (an active worker: the files are kept).
async fn activate(container: &JsValue) -> Result<(), String> {
    let register: Function = get(container, "register")
        .and_then(|f| f.dyn_into().ok())
        .ok_or("no register function")?;
    let registered: Promise = register
        .call1(container, &SCRIPT.into())
        .map_err(|e| js_message(&e))?
        .dyn_into()
        .map_err(|_| "register did not return a promise".to_string())?;
    JsFuture::from(registered)
        .await
        .map_err(|e| js_message(&e))?;
    let ready: Promise = get(container, "ready")
        .and_then(|p| p.dyn_into().ok())
        .ok_or("no serviceWorker.ready")?;
    JsFuture::from(ready).await.map_err(|e| js_message(&e))?;
    Ok(())
}
