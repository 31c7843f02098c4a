//! lorafuse: multi-task text classification with one LoRA adapter per task and an attention
//! fusion over them (Beiranvand et al., JECEI 2025), trained and run in the browser or natively.
//!
//! Where things are:
//! - [`model`]: the BERT encoder, tokenizer, pooling and classifier head;
//! - [`lora`]: LoRA adapters and PEFT's file format;
//! - [`train`]: step-wise trainers (stage 1, frozen probe, fusion), the one training driver,
//!   optimiser schedule, metrics;
//! - [`data`]: parsing and validating uploads, label vocabularies, subsets and splits;
//! - [`limits`]: the fixed sizes and counts every file is checked against (docs/reliability.md);
//! - [`workspace`]: tasks' files (adapter folders) as bytes, for the CLI, downloads and storage;
//! - [`backend`]: choosing the burn device at run time;
//! - [`parallel`]: work that runs at once on rayon's pool where the build has threads;
//! - [`host`]: reading tensors back to host memory, always asynchronously (and `block_on` for
//!   native callers) — not to be confused with [`worker::session::Host`], what the page's
//!   session needs from where it runs (emit events, yield);
//! - [`fusion`]: the attention fusion layer over task adapters (stage 2) and its files;
//! - [`infer`]: batched inference, single-task and multi-task prediction, plain result types;
//! - [`experiment`]: the split policy, stage-1 job, frozen probe, comparison and fusion job that
//!   the page, the CLI and `bench` share;
//! - [`worker`]: the web page's engine: message protocol and session (plain Rust), Web Worker glue;
//! - `app` (wasm32 only): the web page's UI (Leptos), which knows nothing of tensors.
//!
//! The engine never touches the DOM; the UI never touches tensors.

#[cfg(target_arch = "wasm32")]
pub mod app;
pub mod backend;
pub mod chart;
pub mod data;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod fusion;
pub mod host;
pub mod infer;
pub mod limits;
pub mod lora;
pub mod model;
pub mod parallel;
pub mod tensorfile;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod wasm_ctors;
pub mod worker;
pub mod workspace;

pub use error::{Error, Result};
