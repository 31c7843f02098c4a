//! `lorafuse eval`: a trained task scored on a labelled file through the shared comparison.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use lorafuse::data::LabelVocab;
use lorafuse::experiment::{EvalVectors, Labelled, Methods, compare};
use lorafuse::host::block_on;

use crate::args::{Columns, Common};
use crate::io::{head_and_meta, load_engine, read_examples, read_task, spinner};

#[derive(Args)]
pub struct EvalArgs {
    /// A task folder written by `train`.
    #[arg(long)]
    adapter: PathBuf,
    /// Labelled CSV/TSV/JSONL file.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    columns: Columns,
}

pub fn run(common: &Common, a: EvalArgs) -> Result<()> {
    let engine = load_engine(common)?;
    let task = read_task(&engine, &a.adapter)?;
    let (head, meta) = head_and_meta(&task, &a.adapter)?;
    let vocab = LabelVocab::from_names(meta.labels.clone());
    let rows = Labelled::all(&read_examples(&a.data, &a.columns)?, &vocab)?;
    let pb = spinner(&format!("evaluating {} examples", rows.len()));
    let v = block_on(EvalVectors::encode(
        &engine,
        &rows.texts,
        &[&task.adapter],
        0,
        false,
    ))?;
    let methods = Methods {
        lora: Some(head),
        ..Methods::default()
    };
    let cmp = block_on(compare(&v, &rows.labels, vocab.len(), &methods))?;
    pb.finish_and_clear();
    // The probabilities the adapter's users see: at the temperature recorded with its head.
    let r = cmp.results[0].at_temperature(meta.temperature, &rows.labels);
    let (lo, hi) = r.accuracy_interval();
    outln!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "metrics": r.metrics,
            "accuracy_interval": [lo, hi],
            "temperature": meta.temperature,
            "calibration": r.calibration,
            "per_class": r.confusion.per_class(),
            "labels": vocab.names(),
            "confusion_matrix": r.confusion.counts,
        }))?
    )?;
    Ok(())
}
