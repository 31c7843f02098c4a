//! The results of prediction as plain data: no tensors, nothing from burn, so the UI (and the
//! worker's messages) can use them without importing the engine.

use serde::{Deserialize, Serialize};

/// A label and the class probabilities behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The most probable label.
    pub label: String,
    /// Probability per class, in label order.
    pub probabilities: Vec<f32>,
}

/// One task's predictions for one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPrediction {
    /// Task name.
    pub task: String,
    /// Single-task LoRA prediction.
    pub single: Prediction,
    /// Hybrid (fusion) prediction, when the task has a fusion layer.
    pub hybrid: Option<Prediction>,
    /// Attention of the fusion over the task adapters (sums to 1), in task order.
    pub attention: Option<Vec<f32>>,
}

/// Predictions for a batch of texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiTaskOutput {
    /// `[text][task]`.
    pub predictions: Vec<Vec<TaskPrediction>>,
    /// Encoder passes per text that were run (K + 1 with fusion, K without).
    pub encoder_passes_per_text: f64,
}
