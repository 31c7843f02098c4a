//! The engine worker of the web page: the message protocol ([`protocol`]), the session that
//! handles it ([`session`], plain Rust, tested natively) and, in the browser, the Web Worker glue
//! (`web`).

#[cfg(target_arch = "wasm32")]
mod model_fetch;
#[cfg(target_arch = "wasm32")]
mod own_model;
#[cfg(target_arch = "wasm32")]
mod pool;
pub mod protocol;
pub mod session;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// The engine worker's name (`WorkerOptions.name`, set by the page; the threaded worker's is
/// `lorafuse-engine:N` with N threads for its pool). The threaded build's pool threads run the same
/// module without it, and must not start an engine of their own.
pub const ENGINE_WORKER_NAME: &str = "lorafuse-engine";
