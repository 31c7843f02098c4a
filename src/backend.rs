//! Choosing the burn device at run time: a CPU backend (`flex`, burn's pure-Rust CPU backend, or
//! the deprecated `ndarray`), or `wgpu` (WebGPU in the browser, Vulkan/Metal natively) when the
//! crate is built with the `wgpu` feature.

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The default CPU backend's name.
pub const DEFAULT_CPU: &str = if cfg!(feature = "flex") {
    "flex"
} else {
    "ndarray"
};

/// A CPU device by name (`flex` or `ndarray`).
pub fn cpu_device(name: &str) -> Result<Device> {
    match name {
        #[cfg(feature = "flex")]
        "flex" => Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        other => Err(Error::Model(format!(
            "backend {other:?} is not available in this build (available: {})",
            available().join(", ")
        ))),
    }
}

/// Whether `device` is one of the CPU backends, whose tensors live in this program's memory and
/// can be read and written synchronously (also in the browser), e.g. by [`crate::model::gelu`].
pub fn is_host(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if *device == Device::ndarray() {
        return true;
    }
    let _ = device;
    false
}

/// Backends compiled into this build.
pub fn available() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("flex");
    }
    if cfg!(feature = "ndarray") {
        v.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    v
}

/// A native wgpu device (Vulkan/Metal/DX12), or an error when no adapter is found.
#[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
pub fn wgpu_device() -> Result<Device> {
    Device::wgpu_options()
        .init()
        .map_err(|e| Error::Model(format!("no wgpu adapter: {e:?}")))
}

/// Any device by name: a CPU backend, or `wgpu`.
pub fn device(name: &str) -> Result<Device> {
    match name {
        #[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
        "wgpu" => wgpu_device(),
        _ => cpu_device(name),
    }
}

/// The browser's `navigator.gpu`, where it has one (page or worker).
#[cfg(target_arch = "wasm32")]
fn navigator_gpu() -> Option<wasm_bindgen::JsValue> {
    use js_sys::Reflect;
    Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"gpu".into()))
        .ok()
        .filter(|g| !g.is_undefined() && !g.is_null())
}

/// Whether the browser has WebGPU at all (`navigator.gpu`).
#[cfg(target_arch = "wasm32")]
pub fn browser_has_webgpu() -> bool {
    navigator_gpu().is_some()
}

/// Whether the browser offers a WebGPU adapter (`navigator.gpu.requestAdapter()`), with the reason
/// when it does not. The page asks before choosing its engine worker; the threaded worker, which
/// has no WebGPU backend, asks to say why the CPU runs.
#[cfg(target_arch = "wasm32")]
pub async fn browser_webgpu_adapter() -> std::result::Result<(), String> {
    use js_sys::Reflect;
    use wasm_bindgen::JsCast;
    let gpu = navigator_gpu().ok_or("this browser has no WebGPU (navigator.gpu is missing)")?;
    let adapter = match Reflect::get(&gpu, &"requestAdapter".into())
        .and_then(|f| f.unchecked_into::<js_sys::Function>().call0(&gpu))
    {
        Ok(p) => wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&p))
            .await
            .unwrap_or(wasm_bindgen::JsValue::NULL),
        Err(_) => wasm_bindgen::JsValue::NULL,
    };
    match adapter.is_null() || adapter.is_undefined() {
        true => Err("the browser offers no WebGPU adapter".into()),
        false => Ok(()),
    }
}
