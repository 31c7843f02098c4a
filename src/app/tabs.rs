//! One tab edits the workspace at a time. The Web Locks API (`navigator.locks`) grants the lock
//! `lorafuse-workspace` to the first tab, which holds it until it closes; a second tab opens
//! read-only, says so, saves nothing, and reloads itself once the lock is free (the first tab
//! closed), so it then shows the saved workspace and can edit. No update is lost either way.
//!
//! What it leaves out: editing in two tabs at once (merging two workspaces' changes), and
//! coordination in a browser without Web Locks (every current one has it), where the page opens
//! as before.
//!
//! `navigator.locks` is called through `js_sys::Reflect`: web-sys has it only behind
//! `--cfg=web_sys_unstable_apis`, which would rebuild every web-sys user.

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use wasm_bindgen_futures::JsFuture;

/// Name of the lock.
const LOCK: &str = "lorafuse-workspace";

/// `navigator.locks` and its `request` function, when the browser has them.
fn lock_manager() -> Option<(JsValue, Function)> {
    let window = web_sys::window()?;
    let navigator = Reflect::get(&window, &"navigator".into()).ok()?;
    let locks = Reflect::get(&navigator, &"locks".into()).ok()?;
    if locks.is_undefined() || locks.is_null() {
        return None;
    }
    let request = Reflect::get(&locks, &"request".into())
        .ok()?
        .dyn_into()
        .ok()?;
    Some((locks, request))
}

/// Whether this tab may edit: `true` when it now holds the lock (until it closes) or when the
/// browser cannot coordinate tabs; `false` when another tab holds it.
pub async fn claim() -> bool {
    let Some((locks, request)) = lock_manager() else {
        return true;
    };
    let held = Promise::new(&mut |resolve: Function, _reject: Function| {
        let opts = Object::new();
        let _ = Reflect::set(&opts, &"ifAvailable".into(), &JsValue::TRUE);
        let fallback = resolve.clone();
        let granted = Closure::once_into_js(move |lock: JsValue| -> JsValue {
            let held = !lock.is_null();
            let _ = resolve.call1(&JsValue::NULL, &JsValue::from_bool(held));
            if held {
                // A promise that never settles: the lock is held until the tab goes away.
                Promise::new(&mut |_, _| {}).into()
            } else {
                JsValue::UNDEFINED
            }
        });
        if request
            .call3(&locks, &LOCK.into(), &opts, &granted)
            .is_err()
        {
            let _ = fallback.call1(&JsValue::NULL, &JsValue::TRUE);
        }
    });
    JsFuture::from(held)
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// Queues for the lock and reloads the page when it is granted (the editing tab closed).
pub fn reload_when_free() {
    let Some((locks, request)) = lock_manager() else {
        return;
    };
    let granted = Closure::once_into_js(move |_lock: JsValue| {
        if let Some(w) = web_sys::window() {
            let _ = w.location().reload();
        }
    });
    let _ = request.call2(&locks, &LOCK.into(), &granted);
}
