//! The experiment, written once: how a task's rows are split, how its adapter is trained and
//! validated, how the frozen probe, single-task LoRA and the hybrid are compared, and how a
//! fusion job is set up and recorded. The worker session (the page), every CLI command and
//! `bench` call these functions; none of them re-implements a piece (docs/design.md §4).
//!
//! - [`split`]: the held-out policy and a task's labelled training / held-out sets;
//! - [`stage1`]: training a task's adapter + head through the driver, with per-epoch validation,
//!   and the metadata written beside it;
//! - [`start`]: where a task's adapter starts (fresh, or another task's adapter, chosen on the
//!   task's rows);
//! - [`compare`]: the frozen probe and the per-task comparison (frozen / LoRA / hybrid) on
//!   encoded held-out rows;
//! - [`target`]: a fusion's target task (training rows encoded by the base and every adapter,
//!   held-out rows, cross-validation folds);
//! - [`fusion_job`]: the fusion trained per task or shared, and the manifest;
//! - [`gate`]: the fusion's epoch chosen on held-out rows or by cross-validation over the
//!   training rows, and the gate against the own LoRA.
//!
//! What it leaves out: reading files and rendering results (the CLI, `bench` and the page do
//! that, each in its own way), and the trainers themselves ([`crate::train`]).

pub mod compare;
pub mod fusion_job;
pub mod gate;
pub mod split;
pub mod stage1;
pub mod start;
pub mod target;

pub use compare::{EvalVectors, MethodResult, Methods, compare, train_probe};
pub use fusion_job::{FusionTarget, fusion_train_config};
pub use split::{HoldoutPolicy, Labelled, PreparedTask};
pub use stage1::{Stage1Observer, Stage1Run, run_stage1};
