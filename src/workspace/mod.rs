//! A workspace's persistent pieces as plain bytes (no file system: the same code serves the CLI,
//! browser downloads and IndexedDB).
//!
//! - [`task_files`]: one task's adapter folder (DESIGN §3): PEFT's two files plus the head and
//!   the task's metadata.

pub mod task_files;

pub use task_files::{LoadedTask, TaskMeta};
