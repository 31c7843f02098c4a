//! Multi-task prediction: for a batch of texts, every task's single-task (LoRA) prediction and,
//! where a fusion layer exists, its hybrid prediction with the attention over the adapters, and
//! the fresh head's where one answers — from K + 1 encoder passes per text (the base once, each
//! adapter once), shared by all tasks.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::batch::{EVAL_BATCH, SortedBatches};
use super::types::{Answerer, MultiTaskOutput, Prediction, TaskPrediction, argmax};
use crate::error::{Error, Result};
use crate::fusion::AttentionFusion;
use crate::fusion::files::{AnswerHeads, FusedTask};
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
    /// Which model answers (its gate, or the user's choice). The single-task and (where fused)
    /// hybrid predictions are computed either way; a fresh head's only when it answers.
    pub answer: Answerer,
    /// The fresh head that answers when `answer` is the frozen model or another task's adapter.
    pub fresh: Option<FreshHead<'a>>,
}

/// A fresh linear head a task answers with, and the vectors it reads.
pub struct FreshHead<'a> {
    /// The head.
    pub head: &'a ClassifierHead,
    /// The adapter (by task position) whose vectors it reads; `None`: the frozen base's.
    pub reads: Option<usize>,
    /// Temperature of its probabilities.
    pub temperature: f64,
}

impl<'a> FreshHead<'a> {
    /// The head `answer` names among fused task `task`'s stored `heads`, with the vectors it
    /// reads and its temperature (both recorded in the task's gate). `None` for the own LoRA and
    /// the hybrid, or when the head is not stored.
    pub fn of(heads: &'a AnswerHeads, task: &FusedTask, answer: Answerer) -> Option<Self> {
        let head = heads.get(answer)?;
        let check = task.gate.and_then(|g| g.source)?;
        let (reads, temperature) = match answer {
            Answerer::Frozen => (None, check.frozen_temperature),
            _ => (Some(check.best?), check.temperature),
        };
        Some(Self {
            head,
            reads,
            temperature,
        })
    }
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
        if let Some(FreshHead { reads: Some(s), .. }) = t.fresh
            && s >= k
        {
            return Err(Error::Fusion(format!(
                "task {:?} answers with adapter {s}, but {k} tasks are loaded",
                t.name
            )));
        }
        // Every model of the task must give one probability per label (files from elsewhere
        // may disagree).
        let c = t.labels.len();
        let classes = [
            Some(("its head", t.head.classes())),
            t.fusion.map(|f| ("its fusion layer", f.classes())),
            t.fresh
                .as_ref()
                .map(|f| ("its fresh head", f.head.classes())),
        ];
        if let Some((what, n)) = classes.into_iter().flatten().find(|(_, n)| *n != c) {
            return Err(Error::Fusion(format!(
                "task {:?} has {c} labels, but {what} gives {n} classes",
                t.name
            )));
        }
    }
    let n = texts.len();
    let before = crate::model::encoder::rows_encoded();
    let batches = SortedBatches::new(tokenizer, texts, EVAL_BATCH)?;
    // Every task's adapter pass, and the base's when a fusion or a fresh head needs it, at once
    // where there are threads.
    let needs_base = tasks
        .iter()
        .any(|t| t.fusion.is_some() || t.fresh.as_ref().is_some_and(|f| f.reads.is_none()));
    let mut passes: Vec<Option<&LoraAdapter>> = tasks.iter().map(|t| Some(t.adapter)).collect();
    if needs_base {
        passes.push(None);
    }
    let mut vectors = batches.pooled_each(encoder, &passes, device).await?;
    let base = match needs_base {
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
        let probe = match (&t.fresh, t.answer) {
            (Some(f), Answerer::Frozen | Answerer::Source) => {
                let x = match f.reads {
                    Some(s) => Some(vectors[s].clone()),
                    None => base.clone(),
                };
                match x {
                    Some(x) => Some(rows(
                        &host::floats(softmax(scaled(f.head.forward(x, false), f.temperature), 1))
                            .await?,
                        c,
                    )),
                    None => None,
                }
            }
            _ => None,
        };
        per_task.push((single, hybrid, attention, probe));
    }
    let predictions = (0..n)
        .map(|i| {
            tasks
                .iter()
                .zip(&per_task)
                .map(|(t, (single, hybrid, attention, probe))| {
                    let mut tp = TaskPrediction {
                        task: t.name.to_string(),
                        single: prediction(t.labels, single[i].clone()),
                        hybrid: hybrid.as_ref().map(|h| prediction(t.labels, h[i].clone())),
                        uses_hybrid: false,
                        attention: attention.as_ref().map(|a| a[i].clone()),
                        probe: probe.as_ref().map(|p| prediction(t.labels, p[i].clone())),
                        answered_by: Some(t.answer),
                    };
                    // What actually answers (the own LoRA where the named model is missing).
                    let by = tp.answerer();
                    tp.answered_by = Some(by);
                    tp.uses_hybrid = by == Answerer::Hybrid;
                    tp
                })
                .collect()
        })
        .collect();
    Ok(MultiTaskOutput {
        predictions,
        encoder_passes_per_text: passes,
    })
}
