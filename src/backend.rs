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
