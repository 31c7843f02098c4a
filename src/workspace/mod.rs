//! A workspace's persistent pieces as plain bytes (no file system: the same code serves the CLI,
//! browser downloads and IndexedDB).
//!
//! - [`task_files`]: one task's adapter folder (docs/design.md §3): PEFT's two files plus the head and
//!   the task's metadata;
//! - [`card`]: the model card (`README.md`) in every adapter folder;
//! - [`bundle`]: the whole workspace (tasks, their data and settings, adapters, fusion) as one zip;
//! - [`zipfile`]: zip reading/writing with limits.

pub mod bundle;
pub mod card;
pub mod task_files;
pub mod zipfile;

pub use task_files::{LoadedTask, TaskMeta};
