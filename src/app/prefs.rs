//! The page's small preferences in localStorage (the chosen encoder, the engine's thread count),
//! through `Reflect`, so no web-sys feature is needed. Blocked storage (private windows, policies)
//! reads as "nothing chosen" and drops writes silently: a preference is a convenience.

use js_sys::Reflect;
use wasm_bindgen::JsValue;

fn local_storage() -> Option<JsValue> {
    let w = web_sys::window()?;
    Reflect::get(&w, &"localStorage".into())
        .ok()
        .filter(|s| !s.is_null() && !s.is_undefined())
}

fn call(target: &JsValue, method: &str, args: &[&str]) -> Option<JsValue> {
    let f: js_sys::Function = Reflect::get(target, &method.into()).ok()?.into();
    let a = js_sys::Array::new();
    for x in args {
        a.push(&JsValue::from_str(x));
    }
    f.apply(target, &a).ok()
}

/// The stored value of `key`, if any.
pub fn get(key: &str) -> Option<String> {
    local_storage()
        .and_then(|s| call(&s, "getItem", &[key]))
        .and_then(|v| v.as_string())
}

/// Stores `value` under `key` (best effort).
pub fn set(key: &str, value: &str) {
    if let Some(s) = local_storage() {
        let _ = call(&s, "setItem", &[key, value]);
    }
}
