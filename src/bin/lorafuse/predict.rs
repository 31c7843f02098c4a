//! `lorafuse predict`: one task's labels (`--adapter`), or every task of a fused model,
//! single-task and hybrid with the attention (`--fused`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use lorafuse::host::block_on;
use lorafuse::infer;

use crate::args::Common;
use crate::io::{head_and_meta, load_engine, read_task};

#[derive(Args)]
pub struct PredictArgs {
    /// A task folder written by `train`.
    #[arg(long, required_unless_present = "fused", conflicts_with = "fused")]
    adapter: Option<PathBuf>,
    /// A fused model folder written by `fuse`: predicts every task, single-task and hybrid.
    #[arg(long)]
    fused: Option<PathBuf>,
    /// Text(s) to classify (repeat the flag for several).
    #[arg(long, required = true)]
    text: Vec<String>,
}

pub fn run(common: &Common, a: PredictArgs) -> Result<()> {
    let engine = load_engine(common)?;
    if let Some(dir) = &a.fused {
        return crate::fuse::predict(&engine, dir, &a.text);
    }
    let dir = a.adapter.context("--adapter or --fused is required")?;
    let task = read_task(&engine, &dir)?;
    let (head, meta) = head_and_meta(&task, &dir)?;
    let probs = block_on(infer::probabilities(
        &engine.encoder,
        &engine.tokenizer,
        Some(&task.adapter),
        head,
        &a.text,
        &engine.device,
    ))?;
    // Calibrated: at the temperature fitted on held-out rows when the task was trained.
    let probs = lorafuse::train::calibration::scale(&probs, meta.temperature);
    for (t, p) in a.text.iter().zip(&probs) {
        let best = infer::argmax(p);
        let probs: BTreeMap<&str, f32> = meta
            .labels
            .iter()
            .map(String::as_str)
            .zip(p.iter().copied())
            .collect();
        outln!(
            "{}",
            serde_json::json!({"text": t, "label": meta.labels[best], "probabilities": probs})
        )?;
    }
    Ok(())
}
