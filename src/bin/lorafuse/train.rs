//! `lorafuse train`: stage 1 of one task through the shared experiment (held-out split, driver,
//! per-epoch validation, frozen probe, comparison), then its adapter folder.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use lorafuse::data;
use lorafuse::engine::Engine;
use lorafuse::experiment::stage1::{Start, run_stage1_from};
use lorafuse::experiment::start::{Source, check_start, named_start};
use lorafuse::experiment::{
    EvalVectors, Methods, PreparedTask, Stage1Observer, compare, train_probe,
};
use lorafuse::host::block_on;
use lorafuse::infer::pooled_vectors;
use lorafuse::model::ClassifierHead;
use lorafuse::train::{Metrics, Progress, TaskModel, TrainConfig};
use lorafuse::workspace::task_files::{self, EpochRecord};

use crate::args::{Columns, Common, TrainingArgs};
use crate::io::{Bars, load_engine, method_json, read_examples, read_task, spinner};

#[derive(Args)]
pub struct TrainArgs {
    /// Task name recorded in the adapter folder.
    #[arg(long)]
    task: String,
    /// Labelled training file (CSV/TSV/JSONL).
    #[arg(long)]
    data: PathBuf,
    /// Labelled test file; without it `--holdout` of the training rows are held out for evaluation
    /// (none from a file of fewer than `--train-all-below` rows).
    #[arg(long)]
    test: Option<PathBuf>,
    /// Output folder for the adapter (created).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    columns: Columns,
    /// Use a class-stratified subset of this many training rows.
    #[arg(long)]
    train_rows: Option<usize>,
    /// Evaluate on at most this many test rows (the first ones).
    #[arg(long)]
    test_rows: Option<usize>,
    #[command(flatten)]
    training: TrainingArgs,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also train the `frozen` baseline (linear head on the frozen base) and report both.
    #[arg(long)]
    compare_frozen: bool,
    /// Write per-step losses as JSON lines to this file.
    #[arg(long)]
    loss_log: Option<PathBuf>,
    /// Where the adapter starts: an adapter folder (sequential transfer: that adapter trained
    /// further on this task, with its LoRA settings), or `auto`: the adapter among `--sources`
    /// that reads this task's rows clearly better than the base model, if one does (docs/design.md
    /// §1.2, "Transfer"). Without it: a fresh adapter.
    #[arg(long)]
    init_from: Option<String>,
    /// The adapter folders `--init-from auto` chooses among (trained on the same base model).
    #[arg(long, value_delimiter = ',')]
    sources: Vec<PathBuf>,
}

/// Progress bar, loss log, and one line per epoch.
struct Cli {
    bars: Bars,
    log: Option<std::fs::File>,
    log_error: Option<std::io::Error>,
}

impl Stage1Observer for Cli {
    fn on_step(&mut self, p: &Progress) {
        self.bars.step(p);
        if let Some(f) = self.log.as_mut() {
            use std::io::Write;
            let line = serde_json::to_string(p).unwrap_or_default();
            if let Err(e) = writeln!(f, "{line}") {
                self.log_error.get_or_insert(e);
            }
        }
    }
    fn on_epoch(&mut self, history: &[EpochRecord]) {
        if let Some(r) = history.last() {
            let val = r
                .val_accuracy
                .map(|a| format!(", held-out accuracy {a:.4}"))
                .unwrap_or_default();
            self.bars
                .println(&format!("epoch {}: loss {:.4}{val}", r.epoch, r.loss));
        }
    }
}

pub fn run(common: &Common, a: TrainArgs) -> Result<()> {
    let task = prepare(&a)?;
    let engine = load_engine(common)?;
    let cfg = a.training.train(a.seed);
    let lora = a.training.lora();
    let frozen = match a.compare_frozen {
        true => Some(frozen_probe(&engine, &task, &cfg)?),
        false => None,
    };
    let mut obs = Cli {
        bars: Bars::new("lora"),
        log: a
            .loss_log
            .as_ref()
            .map(std::fs::File::create)
            .transpose()
            .context("creating the loss log")?,
        log_error: None,
    };
    // Where the adapter starts, and the record of it.
    let sources = match a.init_from.as_deref() {
        Some("auto") => a.sources.clone(),
        Some(dir) => vec![PathBuf::from(dir)],
        None => Vec::new(),
    };
    let loaded = sources
        .iter()
        .map(|d| {
            let t = read_task(&engine, d)?;
            let name = t.meta.as_ref().map_or_else(
                || {
                    d.file_name()
                        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
                },
                |m| m.task.clone(),
            );
            Ok((name, t))
        })
        .collect::<Result<Vec<_>>>()?;
    let start_sources: Vec<Source> = loaded
        .iter()
        .map(|(name, t)| Source {
            task: name,
            adapter: &t.adapter,
            sha256: &t.adapter_sha256,
        })
        .collect();
    let start = match a.init_from.as_deref() {
        Some("auto") => {
            anyhow::ensure!(
                !start_sources.is_empty(),
                "--init-from auto needs --sources"
            );
            let classes = task.vocab.len();
            Some(block_on(check_start(
                &engine,
                &task.train,
                classes,
                &start_sources,
                &cfg,
            ))?)
        }
        Some(_) => Some(named_start(start_sources.first())),
        None => None,
    };
    if let Some(s) = &start {
        eprintln!("{}", s.describe());
    }
    let from = start
        .as_ref()
        .and_then(|s| s.from.as_deref())
        .and_then(|f| start_sources.iter().find(|s| s.task == f));
    let (from, lora) = match from {
        Some(s) => (Start::From(s.adapter), s.adapter.config.clone()),
        None => (Start::Fresh(&lora), lora.clone()),
    };
    let run = block_on(run_stage1_from(&engine, &task, from, &cfg, true, &mut obs))?;
    obs.bars.finish();
    if let Some(e) = obs.log_error {
        return Err(e).context("writing the loss log");
    }
    let (first, last) = (run.history.first(), run.history.last());
    eprintln!(
        "lora trained in {:.1} s; mean loss first epoch {:.4} → last epoch {:.4}",
        run.seconds,
        first.map_or(f32::NAN, |r| r.loss),
        last.map_or(f32::NAN, |r| r.loss),
    );
    let mut report = serde_json::Map::new();
    let lora_metrics = score(&engine, &task, frozen.as_ref(), &run.model, &mut report)?;
    report.insert("labels".into(), serde_json::to_value(task.vocab.names())?);
    report.insert("train_seconds".into(), serde_json::to_value(run.seconds)?);
    report.insert("temperature".into(), serde_json::to_value(run.temperature)?);

    let mut meta = run.meta(&engine, &a.task, &task, &lora, &cfg, lora_metrics);
    meta.start = start;
    let files = block_on(task_files::to_files(&run.model, &meta))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, bytes) in &files {
        std::fs::write(a.out.join(name), bytes)
            .with_context(|| format!("writing {}", a.out.join(name).display()))?;
    }
    eprintln!("wrote {}", a.out.display());
    outln!("{}", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

/// Reads the rows, takes the subset, splits by the shared policy, and says what it got.
fn prepare(a: &TrainArgs) -> Result<PreparedTask> {
    let mut rows = read_examples(&a.data, &a.columns)?;
    if let Some(n) = a.train_rows {
        rows = data::stratified_subset(&rows, n, a.seed);
    }
    let test = match &a.test {
        Some(p) => {
            let mut t = read_examples(p, &a.columns)?;
            if let Some(n) = a.test_rows {
                t.truncate(n);
            }
            t
        }
        None => Vec::new(),
    };
    let task = PreparedTask::new(&rows, &test, &a.training.holdout(), a.seed)?;
    let mut counts = vec![0usize; task.vocab.len()];
    for &l in &task.train.labels {
        counts[l] += 1;
    }
    let source = match &a.test {
        Some(p) => p.display().to_string(),
        None => task.source.clone(),
    };
    let classes: Vec<String> = task
        .vocab
        .names()
        .iter()
        .zip(&counts)
        .map(|(n, c)| format!("{n}: {c}"))
        .collect();
    eprintln!(
        "task {:?}: {} training rows ({}), {} evaluation rows ({source})",
        a.task,
        task.train.len(),
        classes.join(", "),
        task.held_out.len()
    );
    if task.held_out_dropped > 0 {
        eprintln!(
            "warning: {} evaluation row(s) have a label the training rows lack; they are left out",
            task.held_out_dropped
        );
    }
    Ok(task)
}

/// The frozen probe on the training rows' base vectors.
fn frozen_probe(engine: &Engine, task: &PreparedTask, cfg: &TrainConfig) -> Result<ClassifierHead> {
    let t0 = Instant::now();
    let pb = spinner("frozen baseline: encoding training rows once");
    let e = engine;
    let x = block_on(pooled_vectors(
        &e.encoder,
        &e.tokenizer,
        None,
        &task.train.texts,
        &e.device,
    ))?;
    pb.finish_and_clear();
    let head = block_on(train_probe(
        x,
        &task.train.labels,
        task.vocab.len(),
        cfg,
        &e.device,
    ))?;
    eprintln!("frozen probe trained ({:.1} s)", t0.elapsed().as_secs_f64());
    Ok(head)
}

/// Scores the probe (if any) and the trained task on the held-out rows into `report`; returns
/// LoRA's metrics (none without held-out rows).
fn score(
    engine: &Engine,
    task: &PreparedTask,
    frozen: Option<&ClassifierHead>,
    model: &TaskModel,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Metrics>> {
    if task.held_out.is_empty() {
        eprintln!(
            "no evaluation rows (held out: {}; give --test to score): nothing scored",
            task.source
        );
        return Ok(None);
    }
    let pb = spinner(&format!("scoring {} evaluation rows", task.held_out.len()));
    let texts = &task.held_out.texts;
    let v = block_on(EvalVectors::encode(
        engine,
        texts,
        &[&model.adapter],
        0,
        frozen.is_some(),
    ))?;
    let methods = Methods {
        frozen,
        lora: Some(&model.head),
        hybrid: None,
    };
    let cmp = block_on(compare(
        &v,
        &task.held_out.labels,
        task.vocab.len(),
        &methods,
    ))?;
    pb.finish_and_clear();
    let mut lora = None;
    for r in &cmp.results {
        eprintln!(
            "{:<7} {}",
            format!("{}:", r.method),
            fmt_metrics(&r.metrics)
        );
        report.insert(r.method.clone(), method_json(r, &task.held_out.labels)?);
        if r.method == "lora" {
            report.insert(
                "confusion_matrix".into(),
                serde_json::to_value(&r.confusion.counts)?,
            );
            lora = Some(r.metrics.clone());
        }
    }
    Ok(lora)
}

fn fmt_metrics(m: &Metrics) -> String {
    format!(
        "accuracy {:.4}, macro-F1 {:.4}, MCC {:.4} (n = {})",
        m.accuracy, m.macro_f1, m.mcc, m.n
    )
}
