//! Multi-task prediction: for a batch of texts, every task's single-task (LoRA) prediction and,
//! where a fusion layer exists, its hybrid prediction with the attention over the adapters — from
//! K + 1 encoder passes per text (the base once, each adapter once), shared by all tasks.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::module::AttentionFusion;
use crate::error::{Error, Result};
use crate::host;
use crate::lora::LoraAdapter;
use crate::model::{ClassifierHead, Encoder, TextTokenizer};
use crate::train::predict::{EVAL_BATCH, SortedBatches, argmax};

/// One task as the predictor needs it. Tasks are given in fusion order (adapter `s` = task `s`).
pub struct TaskParts<'a> {
    /// Task name.
    pub name: &'a str,
    /// Label names in class order.
    pub labels: &'a [String],
    /// The task's adapter.
    pub adapter: &'a LoraAdapter,
    /// The task's stage-1 head.
    pub head: &'a ClassifierHead,
    /// The task's fusion layer over all tasks' adapters, if trained.
    pub fusion: Option<&'a AttentionFusion>,
}

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

fn rows(v: &[f32], width: usize) -> Vec<Vec<f32>> {
    v.chunks(width.max(1)).map(<[f32]>::to_vec).collect()
}

fn prediction(labels: &[String], p: Vec<f32>) -> Prediction {
    Prediction {
        label: labels.get(argmax(&p)).cloned().unwrap_or_default(),
        probabilities: p,
    }
}

/// Predicts every task for every text.
pub async fn predict_all<S: AsRef<str>>(
    encoder: &Encoder,
    tokenizer: &TextTokenizer,
    tasks: &[TaskParts<'_>],
    texts: &[S],
    device: &Device,
) -> Result<MultiTaskOutput> {
    if tasks.is_empty() {
        return Err(Error::Fusion("no trained task to predict with".into()));
    }
    let k = tasks.len();
    for t in tasks {
        if let Some(f) = t.fusion
            && f.adapters() != k
        {
            return Err(Error::Fusion(format!(
                "the fusion of task {:?} expects {} adapters, but {k} tasks are loaded",
                t.name,
                f.adapters()
            )));
        }
    }
    let n = texts.len();
    let before = crate::model::encoder::rows_encoded();
    let batches = SortedBatches::new(tokenizer, texts, EVAL_BATCH)?;
    let mut vectors: Vec<Tensor<2>> = Vec::with_capacity(k);
    for t in tasks {
        vectors.push(batches.pooled(encoder, Some(t.adapter), device).await?);
    }
    let base = match tasks.iter().any(|t| t.fusion.is_some()) {
        true => Some(batches.pooled(encoder, None, device).await?),
        false => None,
    };
    let passes = (crate::model::encoder::rows_encoded() - before) as f64 / n.max(1) as f64;
    let stacked = Tensor::stack::<3>(vectors.clone(), 1); // [n, K, d]
    let mut per_task = Vec::with_capacity(k);
    for (s, t) in tasks.iter().enumerate() {
        let c = t.labels.len();
        let single = rows(
            &host::floats(softmax(t.head.forward(vectors[s].clone(), false), 1)).await?,
            c,
        );
        let (hybrid, attention) = match (t.fusion, &base) {
            (Some(f), Some(b)) => {
                let out = f.forward(b.clone(), stacked.clone(), None, false);
                (
                    Some(rows(&host::floats(softmax(out.logits, 1)).await?, c)),
                    Some(rows(&host::floats(out.weights).await?, k)),
                )
            }
            _ => (None, None),
        };
        per_task.push((single, hybrid, attention));
    }
    let predictions = (0..n)
        .map(|i| {
            tasks
                .iter()
                .zip(&per_task)
                .map(|(t, (single, hybrid, attention))| TaskPrediction {
                    task: t.name.to_string(),
                    single: prediction(t.labels, single[i].clone()),
                    hybrid: hybrid.as_ref().map(|h| prediction(t.labels, h[i].clone())),
                    attention: attention.as_ref().map(|a| a[i].clone()),
                })
                .collect()
        })
        .collect();
    Ok(MultiTaskOutput {
        predictions,
        encoder_passes_per_text: passes,
    })
}
