//! The engine worker of the web page: the message protocol ([`protocol`]), the session that
//! handles it ([`session`], plain Rust, tested natively) and, in the browser, the Web Worker glue
//! (`web`).

#[cfg(target_arch = "wasm32")]
mod model_fetch;
#[cfg(target_arch = "wasm32")]
mod own_model;
pub mod protocol;
pub mod session;
#[cfg(target_arch = "wasm32")]
pub mod web;
