//! Stage 2 of the hybrid method (docs/design.md §1.3, the authors' AttEns): an attention fusion over the
//! pooled vectors of K frozen task adapters plus the frozen base.
//!
//! - [`module`]: the fusion layer itself ([`AttentionFusion`]);
//! - [`options`]: the variants ([`FusionOptions`]);
//! - [`files`]: saving a fused model as safetensors + a JSON manifest;
//! - [`gate_check`]: the gate's verdict recorded in the manifest.
//!
//! Training lives in [`crate::train::stage2`]; multi-task inference in [`crate::infer::multitask`].

pub mod files;
pub mod gate_check;
pub mod module;
pub mod options;

pub use module::{AttentionFusion, FusionConfig, FusionOutput};
pub use options::{FusionOptions, Mixer};
