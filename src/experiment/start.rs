//! Where a task's adapter starts (docs/design.md §1.2, "Transfer"): a fresh adapter (LoRA's init),
//! or a copy of another task's adapter trained further on this task (sequential transfer). The
//! automatic choice ([`check_start`]) reads the task's training rows through each other task's
//! adapter and through the frozen base, each with a fresh linear head (the frozen probe's trainer
//! and settings), cross-validated over the rows so no head is scored on a row it trained on, and
//! starts from the best adapter only where it leads the base clearly ([`clear_lead`]: at least
//! [`START_LEAD_ROWS`] more rows right, and at least a tenth of the rows): where that adapter
//! knows something about this task that the base model does not. The task then trains through the one stage-1 driver ([`super::stage1::run_stage1_from`]).
//!
//! What it leaves out: combining several sources, and tasks of [`AUTO_START_BELOW_ROWS`] rows or
//! more (their own rows teach them; they start fresh unless a source is named).

use burn::tensor::{Device, Tensor};

use super::compare::train_probe;
use super::gate::{CROSS_VALIDATE_BELOW_ROWS, DEFAULT_GATE_FOLDS, cv_fold_count};
use super::split::Labelled;
use super::stage1::Start;
use crate::engine::Engine;
use crate::error::Result;
use crate::fusion::files::{CLEAR_LEAD_SHARE, SOURCE_LEAD_ROWS, clear_lead};
use crate::infer::{argmax, pooled_vectors};
use crate::lora::{LoraAdapter, LoraConfig};
use crate::train::TrainConfig;
use crate::train::crossfit::folds;
use crate::workspace::task_files::StartCheck;

/// Training rows below which the automatic start looks for another task's adapter: where few
/// rows make a head start pay, as for the cross-validated gate.
pub const AUTO_START_BELOW_ROWS: usize = CROSS_VALIDATE_BELOW_ROWS;

/// Folds of the automatic start's check.
pub const START_FOLDS: usize = DEFAULT_GATE_FOLDS;

/// Rows by which the best other adapter must beat the frozen base at least to be started from
/// (and a tenth of the rows, [`clear_lead`]): the best of several noisy heads leads by one row by
/// chance, as in the gate's relatedness check.
pub const START_LEAD_ROWS: usize = SOURCE_LEAD_ROWS;

/// The rows a lead must reach on `n` checked rows ([`clear_lead`]), as recorded.
fn lead_rows(n: usize) -> usize {
    START_LEAD_ROWS.max((CLEAR_LEAD_SHARE * n as f64).ceil() as usize)
}

/// Another task's trained adapter a task may start from.
pub struct Source<'a> {
    /// The task's name.
    pub task: &'a str,
    /// Its adapter.
    pub adapter: &'a LoraAdapter,
    /// sha256 of its `adapter_model.safetensors`.
    pub sha256: &'a str,
}

/// Rows of `rows` (out of `n`) each scored by a fresh head on `x` fitted on the other folds:
/// how many the heads got right.
async fn cross_validated_correct(
    x: &Tensor<2>,
    rows: &Labelled,
    classes: usize,
    fold: &[usize],
    k: usize,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<usize> {
    let n = rows.len();
    let mut correct = 0;
    for f in 0..k {
        let fit: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
        let out: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
        if fit.is_empty() || out.is_empty() {
            continue;
        }
        let pick = |idx: &[usize]| {
            let i = Tensor::<1, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(
                    idx.iter().map(|&j| j as i64).collect::<Vec<_>>(),
                    [idx.len()],
                ),
                device,
            );
            x.clone().select(0, i)
        };
        let fit_y: Vec<usize> = fit.iter().map(|&i| rows.labels[i]).collect();
        let head = train_probe(pick(&fit), &fit_y, classes, cfg, device).await?;
        let logits = crate::host::floats(head.forward(pick(&out), false)).await?;
        correct += logits
            .chunks(classes.max(1))
            .zip(&out)
            .filter(|(l, i)| argmax(l) == rows.labels[**i])
            .count();
    }
    Ok(correct)
}

/// The automatic start of a task with training rows `rows` (of `classes` classes) among the
/// other tasks' adapters `sources` (docs/design.md §1.2, "Transfer"): the evidence, and the
/// source it starts from (`from`; none: a fresh adapter). Tasks of [`AUTO_START_BELOW_ROWS`] rows
/// or more, too few rows for two folds, or no sources: a fresh adapter, no check (`rows` 0).
/// The fresh heads train with the frozen probe's settings derived from `cfg`.
pub async fn check_start(
    engine: &Engine,
    rows: &Labelled,
    classes: usize,
    sources: &[Source<'_>],
    cfg: &TrainConfig,
) -> Result<StartCheck> {
    let n = rows.len();
    let k = cv_fold_count(n, START_FOLDS);
    let mut check = StartCheck {
        from: None,
        from_sha256: String::new(),
        automatic: true,
        rows: 0,
        folds: 0,
        lead: lead_rows(n),
        frozen_accuracy: 0.0,
        sources: Vec::new(),
    };
    if sources.is_empty() || n >= AUTO_START_BELOW_ROWS || k == 0 {
        return Ok(check);
    }
    let e = engine;
    let fold = folds(&rows.labels, k);
    let device = &e.device;
    let score = async |adapter: Option<&LoraAdapter>| {
        let x = pooled_vectors(&e.encoder, &e.tokenizer, adapter, &rows.texts, device).await?;
        cross_validated_correct(&x, rows, classes, &fold, k, cfg, device).await
    };
    let frozen = score(None).await?;
    let mut best: Option<(usize, usize)> = None;
    for (s, src) in sources.iter().enumerate() {
        let correct = score(Some(src.adapter)).await?;
        check
            .sources
            .push((src.task.to_string(), correct as f64 / n as f64));
        if best.is_none_or(|(_, b)| correct > b) {
            best = Some((s, correct));
        }
    }
    check.rows = n;
    check.folds = k;
    check.frozen_accuracy = frozen as f64 / n as f64;
    if let Some((s, correct)) = best
        && clear_lead(correct as f64 - frozen as f64, n)
    {
        check.from = Some(sources[s].task.to_string());
        check.from_sha256 = sources[s].sha256.to_string();
    }
    Ok(check)
}

/// The start a task's adapter trained from, as its record `check` says, for training its like
/// again (the cross-validated gate's fold adapters): the adapter it names among `sources` if that
/// adapter is still the one it started from (same sha256), else a fresh adapter with `lora`.
pub fn recorded_start<'a>(
    check: Option<&StartCheck>,
    lora: &'a LoraConfig,
    sources: &[Source<'a>],
) -> Start<'a> {
    let named = check.and_then(|c| {
        let from = c.from.as_deref()?;
        sources
            .iter()
            .find(|s| s.task == from && s.sha256 == c.from_sha256)
    });
    match named {
        Some(s) => Start::From(s.adapter),
        None => Start::Fresh(lora),
    }
}

/// The record of a start the user named: `from` (none: a fresh adapter), no check.
pub fn named_start(from: Option<&Source<'_>>) -> StartCheck {
    StartCheck {
        from: from.map(|s| s.task.to_string()),
        from_sha256: from.map_or(String::new(), |s| s.sha256.to_string()),
        automatic: false,
        rows: 0,
        folds: 0,
        lead: START_LEAD_ROWS,
        frozen_accuracy: 0.0,
        sources: Vec::new(),
    }
}
