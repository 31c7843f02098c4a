//! Offline use. Registers the service worker `sw.js` (written by `scripts/pwa.py` after each build;
//! the template is `web/sw.js`), which keeps the page's own files (HTML, CSS, both wasm programs and
//! their JS) for use with no network; the engine keeps the model files itself in Cache Storage
//! (`worker/web.rs`). The workspace is in IndexedDB. So after one visit the page opens, trains and
//! predicts offline; the header says "Works offline" once the service worker is active.
//!
//! A new build served later is a new service worker: it installs in the background and takes over
//! at once, and the page says a reload brings the new version (the open page keeps running the
//! old one).
//!
//! Left out: a browser without service workers, or a page not served from https or localhost,
//! runs as before, online only, and says so. `navigator.serviceWorker` is reached through
//! `js_sys::Reflect`, so no web-sys features (and no rebuild of every web-sys user) are needed.

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use wasm_bindgen_futures::JsFuture;

use super::Ui;

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
        let state = match activate(&container).await {
            Ok(()) => Offline::Ready,
            Err(e) => Offline::Unavailable(format!("the service worker failed: {e}")),
        };
        ui.offline.set(state);
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
