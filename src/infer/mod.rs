//! Inference, shared by training, the fusion, the page and the CLI: texts tokenised once and
//! batched by length ([`batch`]), one task's class probabilities, and every task's single-task and
//! hybrid prediction from K + 1 encoder passes ([`multitask`]). The results are plain data
//! ([`types`]) the UI can use without touching tensors.
//!
//! What it leaves out: training (it only runs models forward, in eval mode) and metrics
//! ([`crate::train::metrics`]).

pub mod batch;
pub mod multitask;
pub mod types;

pub use batch::{EVAL_BATCH, SortedBatches, pooled_vectors, probabilities};
pub use multitask::{FreshHead, TaskParts, predict_all};
pub use types::{Answerer, MultiTaskOutput, Prediction, TaskPrediction, argmax};
