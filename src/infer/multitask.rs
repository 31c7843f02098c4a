//! Multi-task prediction: for a batch of texts, every task's single-task (LoRA) prediction and,
//! where a fusion layer exists, its hybrid prediction with the attention over the adapters — from
//! K + 1 encoder passes per text (the base once, each adapter once), shared by all tasks.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::batch::{EVAL_BATCH, SortedBatches};
use super::types::{MultiTaskOutput, Prediction, TaskPrediction, argmax};
use crate::error::{Error, Result};
use crate::fusion::AttentionFusion;
use crate::host;
use crate::lora::LoraAdapter;
use crate::model::{ClassifierHead, Encoder, TextTokenizer};

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
    /// Temperature of the single-task probabilities (`softmax(logits / T)`; 1 = none).
    pub temperature: f64,
    /// Temperature of the hybrid probabilities.
    pub hybrid_temperature: f64,
    /// Whether the task's answer is the hybrid's (its gate, or the user's choice) rather than
    /// its own LoRA's. Both predictions are computed either way.
    pub use_hybrid: bool,
}

/// `logits / t` (a positive, finite temperature; anything else leaves the logits as they are).
fn scaled(logits: Tensor<2>, t: f64) -> Tensor<2> {
    match t.is_finite() && t > 0.0 && t != 1.0 {
        true => logits.div_scalar(t as f32),
        false => logits,
    }
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
    // Every task's adapter pass, and the base's when a fusion needs it, at once where there are
    // threads.
    let fused = tasks.iter().any(|t| t.fusion.is_some());
    let mut passes: Vec<Option<&LoraAdapter>> = tasks.iter().map(|t| Some(t.adapter)).collect();
    if fused {
        passes.push(None);
    }
    let mut vectors = batches.pooled_each(encoder, &passes, device).await?;
    let base = match fused {
        true => vectors.pop(),
        false => None,
    };
    let passes = (crate::model::encoder::rows_encoded() - before) as f64 / n.max(1) as f64;
    let stacked = Tensor::stack::<3>(vectors.clone(), 1); // [n, K, d]
    let mut per_task = Vec::with_capacity(k);
    for (s, t) in tasks.iter().enumerate() {
        let c = t.labels.len();
        let single = rows(
            &host::floats(softmax(
                scaled(t.head.forward(vectors[s].clone(), false), t.temperature),
                1,
            ))
            .await?,
            c,
        );
        let (hybrid, attention) = match (t.fusion, &base) {
            (Some(f), Some(b)) => {
                let out = f.forward(b.clone(), stacked.clone(), None, false);
                (
                    Some(rows(
                        &host::floats(softmax(scaled(out.logits, t.hybrid_temperature), 1)).await?,
                        c,
                    )),
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
                    uses_hybrid: t.use_hybrid && hybrid.is_some(),
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
