//! LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models") for the BERT encoder.
//!
//! - [`config`]: the adapter's hyper-parameters, read and written as PEFT's `adapter_config.json`;
//! - [`adapter`]: the trainable low-rank pairs (A, B) for every targeted linear of every layer;
//! - [`linear`]: the forward of one targeted linear, `W x + b + (alpha/r) · B(A(dropout(x)))`;
//! - [`peft`]: PEFT's `adapter_model.safetensors` layout (key names, `[r,in]`/`[out,r]` shapes).
//!
//! The base weights are never touched: the encoder adds `scaling · B(A(dropout(x)))` to the output
//! of each targeted linear (through [`linear`]) when an adapter is passed to its forward.

pub mod adapter;
pub mod config;
pub mod linear;
pub mod peft;

pub use adapter::{LayerLora, LoraAdapter, LoraPair};
pub use config::{LoraConfig, Site};
