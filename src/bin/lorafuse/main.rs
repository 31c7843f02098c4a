//! `lorafuse`: the native command line over the same engine the browser runs.
//!
//! Commands: `embed`, `train`, `predict`, `eval`, `bench-speed`. Every command reads the base model
//! from `--model-dir` (default `public/models/all-MiniLM-L6-v2`, placed there by `scripts/setup`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use lorafuse::data::{self, Example, LabelVocab, ParseOptions};
use lorafuse::engine::{self, DEFAULT_MODEL_NAME, Engine};
use lorafuse::host::block_on;
use lorafuse::lora::LoraConfig;
use lorafuse::train::{
    self, LoraTrainer, Metrics, TaskModel, TrainConfig, predict, probe::ProbeTrainer,
};
use lorafuse::workspace::task_files::{self, LoadedTask, TASK_FORMAT, TaskMeta};

mod bench;
mod bench_speed;
mod fuse;

#[derive(Parser)]
#[command(
    name = "lorafuse",
    version,
    about = "LoRA adapters and attention fusion for text classification (native CLI)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Folder with config.json, model.safetensors and tokenizer.json of a BERT-family encoder.
    #[arg(
        long,
        global = true,
        env = "LORAFUSE_MODEL_DIR",
        default_value = "public/models/all-MiniLM-L6-v2"
    )]
    model_dir: PathBuf,
    /// Compute backend: flex or ndarray (CPU), or wgpu when built with the `wgpu` feature.
    #[arg(long, global = true, default_value = lorafuse::backend::DEFAULT_CPU)]
    backend: String,
}

#[derive(Subcommand)]
enum Command {
    /// Print the L2-normalised mean-pooled sentence embedding of a text as a JSON array.
    Embed {
        /// The text to embed.
        #[arg(long)]
        text: String,
        /// An adapter folder (ours or PEFT's) to apply.
        #[arg(long)]
        adapter: Option<PathBuf>,
    },
    /// Train one task's LoRA adapter and head (stage 1) and write its adapter folder.
    Train(TrainArgs),
    /// Predict labels of texts with a trained task (`--adapter`) or with every task of a fused model (`--fused`).
    Predict {
        /// A task folder written by `train`.
        #[arg(long, required_unless_present = "fused", conflicts_with = "fused")]
        adapter: Option<PathBuf>,
        /// A fused model folder written by `fuse`: predicts every task, single-task and hybrid.
        #[arg(long)]
        fused: Option<PathBuf>,
        /// Text(s) to classify (repeat the flag for several).
        #[arg(long, required = true)]
        text: Vec<String>,
    },
    /// Evaluate a trained task on a labelled file: accuracy, macro-F1, MCC, confusion matrix.
    Eval {
        /// A task folder written by `train`.
        #[arg(long)]
        adapter: PathBuf,
        /// Labelled CSV/TSV/JSONL file.
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        columns: Columns,
    },
    /// Measure inference and LoRA training throughput at batch 32, sequence length 64.
    BenchSpeed(bench_speed::BenchArgs),
    /// Train the attention fusion (stage 2) over trained task adapters and write a fused model folder.
    Fuse(fuse::FuseArgs),
    /// Compare frozen, single-task LoRA and the hybrid on several datasets and seeds (DESIGN §1.5).
    Bench(bench::BenchArgs),
}

#[derive(Args, Clone)]
pub(crate) struct Columns {
    /// Name of the text column (CSV/TSV header or JSON key).
    #[arg(long, default_value = "text")]
    pub(crate) text_column: String,
    /// Name of the label column.
    #[arg(long, default_value = "label")]
    pub(crate) label_column: String,
}

#[derive(Args)]
struct TrainArgs {
    /// Task name recorded in the adapter folder.
    #[arg(long)]
    task: String,
    /// Labelled training file (CSV/TSV/JSONL).
    #[arg(long)]
    data: PathBuf,
    /// Labelled test file; without it 10 % of the training rows are held out for evaluation.
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
}

/// LoRA and stage-1 settings shared by `train` and `bench`.
#[derive(Args, Clone)]
pub(crate) struct TrainingArgs {
    /// LoRA rank.
    #[arg(long, default_value_t = 4)]
    pub(crate) r: usize,
    /// LoRA alpha (scaling = alpha / r).
    #[arg(long, default_value_t = 32.0)]
    pub(crate) alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) lora_dropout: f64,
    /// Comma-separated PEFT target modules.
    #[arg(long, default_value = "query,key,value", value_delimiter = ',')]
    pub(crate) targets: Vec<String>,
    /// Epochs.
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    /// Peak learning rate of the adapter.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Peak learning rate of the head.
    #[arg(long)]
    pub(crate) head_lr: Option<f64>,
    /// Batch size.
    #[arg(long)]
    pub(crate) batch: Option<usize>,
}

impl TrainingArgs {
    /// The LoRA settings.
    pub(crate) fn lora(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.lora_dropout,
            target_modules: self.targets.clone(),
            ..Default::default()
        }
    }

    /// The training settings, library defaults where not given.
    pub(crate) fn train(&self, seed: u64) -> TrainConfig {
        let d = TrainConfig::default();
        TrainConfig {
            epochs: self.epochs.unwrap_or(d.epochs),
            lr: self.lr.unwrap_or(d.lr),
            head_lr: self.head_lr.unwrap_or(d.head_lr),
            batch_size: self.batch.unwrap_or(d.batch_size),
            seed,
            ..d
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Embed { text, adapter } => {
            let engine = load_engine(&cli.common)?;
            let adapter = adapter.map(|dir| read_task(&engine, &dir)).transpose()?;
            let v = block_on(engine.embed(&[text], adapter.as_ref().map(|t| &t.adapter)))?;
            println!("{}", serde_json::to_string(&v[0])?);
        }
        Command::Train(args) => train_cmd(&cli.common, args)?,
        Command::Predict {
            fused: Some(dir),
            text,
            ..
        } => {
            let engine = load_engine(&cli.common)?;
            fuse::predict(&engine, &dir, &text)?;
        }
        Command::Predict { adapter, text, .. } => {
            let engine = load_engine(&cli.common)?;
            let adapter = adapter.context("--adapter or --fused is required")?;
            let task = read_task(&engine, &adapter)?;
            let (head, meta) = head_and_meta(task.head.as_ref(), task.meta.as_ref(), &adapter)?;
            let probs = block_on(predict::probabilities(
                &engine.encoder,
                &engine.tokenizer,
                Some(&task.adapter),
                head,
                &text,
                &engine.device,
            ))?;
            for (t, p) in text.iter().zip(&probs) {
                let best = predict::argmax(p);
                let probs: BTreeMap<&str, f32> = meta
                    .labels
                    .iter()
                    .map(String::as_str)
                    .zip(p.iter().copied())
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"text": t, "label": meta.labels[best], "probabilities": probs})
                );
            }
        }
        Command::Eval {
            adapter,
            data,
            columns,
        } => {
            let engine = load_engine(&cli.common)?;
            let task = read_task(&engine, &adapter)?;
            let (head, meta) = head_and_meta(task.head.as_ref(), task.meta.as_ref(), &adapter)?;
            let vocab = LabelVocab::from_names(meta.labels.clone());
            let examples = read_examples(&data, &columns)?;
            let (texts, labels) = engine::labelled(&examples, &vocab)?;
            let pb = spinner(&format!("evaluating {} examples", texts.len()));
            let probs = block_on(predict::probabilities(
                &engine.encoder,
                &engine.tokenizer,
                Some(&task.adapter),
                head,
                &texts,
                &engine.device,
            ))?;
            pb.finish_and_clear();
            let (m, cm) = predict::evaluate(&probs, &labels, vocab.len());
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"metrics": m, "labels": vocab.names(), "confusion_matrix": cm.counts})
                )?
            );
        }
        Command::BenchSpeed(args) => bench_speed::run(&cli.common.model_dir, args)?,
        Command::Fuse(args) => fuse::run(&load_engine(&cli.common)?, args)?,
        Command::Bench(args) => bench::run(&load_engine(&cli.common)?, args)?,
    }
    Ok(())
}

pub(crate) fn load_engine(common: &Common) -> Result<Engine> {
    let dir = &common.model_dir;
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| {
            format!("cannot read {} (run ./scripts/setup to install the default model, or pass --model-dir)", dir.join(name).display())
        })
    };
    let (config, weights, tokenizer) = (
        read("config.json")?,
        read("model.safetensors")?,
        read("tokenizer.json")?,
    );
    let device = lorafuse::backend::device(&common.backend)?;
    Ok(Engine::load(&config, &weights, &tokenizer, &device)?)
}

pub(crate) fn read_task(engine: &Engine, dir: &Path) -> Result<LoadedTask> {
    if !dir.is_dir() {
        bail!("adapter folder {} does not exist", dir.display());
    }
    let mut files = BTreeMap::new();
    for name in [
        task_files::ADAPTER_CONFIG,
        task_files::ADAPTER_WEIGHTS,
        task_files::HEAD,
        task_files::META,
    ] {
        let p = dir.join(name);
        if p.exists() {
            files.insert(
                name.to_string(),
                std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
            );
        }
    }
    let task = task_files::from_files(&files, &engine.encoder.config, &engine.device)
        .with_context(|| format!("loading adapter folder {}", dir.display()))?;
    if let Some(meta) = &task.meta
        && !meta.base_model_sha256.is_empty()
        && meta.base_model_sha256 != engine.model_sha256
    {
        eprintln!(
            "warning: this adapter was trained on a base model with sha256 {}, not the loaded one",
            meta.base_model_sha256
        );
    }
    Ok(task)
}

fn head_and_meta<'a>(
    head: Option<&'a lorafuse::model::ClassifierHead>,
    meta: Option<&'a TaskMeta>,
    dir: &Path,
) -> Result<(&'a lorafuse::model::ClassifierHead, &'a TaskMeta)> {
    match (head, meta) {
        (Some(h), Some(m)) => Ok((h, m)),
        _ => bail!(
            "{} has no classifier head (a plain PEFT adapter?): train one with `lorafuse train`",
            dir.display()
        ),
    }
}

pub(crate) fn read_examples(path: &Path, columns: &Columns) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = ParseOptions {
        text_column: columns.text_column.clone(),
        label_column: columns.label_column.clone(),
        ..Default::default()
    };
    let parsed =
        data::parse(&bytes, &name, &opts).with_context(|| format!("{}", path.display()))?;
    if !parsed.rejected.is_empty() {
        eprintln!(
            "{}: {} row(s) rejected:",
            path.display(),
            parsed.rejected.len()
        );
        for r in parsed.rejected.iter().take(10) {
            eprintln!("  line {}: {}", r.line, r.reason);
        }
        if parsed.rejected.len() > 10 {
            eprintln!("  … and {} more", parsed.rejected.len() - 10);
        }
    }
    Ok(parsed.examples)
}

pub(crate) fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

pub(crate) fn step_bar(total: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps, {elapsed} < {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

fn train_cmd(common: &Common, a: TrainArgs) -> Result<()> {
    let mut train_rows = read_examples(&a.data, &a.columns)?;
    if let Some(n) = a.train_rows {
        train_rows = data::stratified_subset(&train_rows, n, a.seed);
    }
    let vocab = data::validate_for_training(&train_rows)?;
    let (train_rows, test_rows, test_name) = match &a.test {
        Some(p) => {
            let mut t = read_examples(p, &a.columns)?;
            if let Some(n) = a.test_rows {
                t.truncate(n);
            }
            (train_rows, t, p.display().to_string())
        }
        None => {
            let (tr, te) = data::stratified_split(&train_rows, 0.1, a.seed);
            (tr, te, "10 % of the training rows, held out".to_string())
        }
    };
    let counts = data::class_counts(&train_rows, &vocab);
    eprintln!(
        "task {:?}: {} training rows ({}), {} evaluation rows ({test_name})",
        a.task,
        train_rows.len(),
        vocab
            .names()
            .iter()
            .zip(&counts)
            .map(|(n, c)| format!("{n}: {c}"))
            .collect::<Vec<_>>()
            .join(", "),
        test_rows.len()
    );
    let (texts, labels) = engine::labelled(&train_rows, &vocab)?;
    let (test_texts, test_labels) = engine::labelled(&test_rows, &vocab)?;
    let engine = load_engine(common)?;

    let cfg = a.training.train(a.seed);
    let lora = a.training.lora();

    let mut report = serde_json::Map::new();
    if a.compare_frozen {
        let t0 = Instant::now();
        let pb = spinner("frozen baseline: encoding training rows once");
        let feats = block_on(predict::pooled_vectors(
            &engine.encoder,
            &engine.tokenizer,
            None,
            &texts,
            &engine.device,
        ))?;
        pb.finish_and_clear();
        let probe_cfg = train::probe::default_config(&cfg);
        let mut trainer =
            ProbeTrainer::new(feats, &labels, vocab.len(), &probe_cfg, &engine.device)?;
        while block_on(trainer.step())?.is_some() {}
        let head = trainer.finish();
        let probs = block_on(predict::probabilities(
            &engine.encoder,
            &engine.tokenizer,
            None,
            &head,
            &test_texts,
            &engine.device,
        ))?;
        let (m, _) = predict::evaluate(&probs, &test_labels, vocab.len());
        eprintln!(
            "frozen: {} ({:.1} s)",
            fmt_metrics(&m),
            t0.elapsed().as_secs_f64()
        );
        report.insert("frozen".into(), serde_json::to_value(m)?);
    }

    let t0 = Instant::now();
    let mut trainer = LoraTrainer::new(
        &engine.encoder,
        &engine.tokenizer,
        &texts,
        &labels,
        vocab.len(),
        &lora,
        &cfg,
        &engine.device,
    )?;
    let pb = step_bar(trainer.total_steps(), "lora");
    let mut log = a
        .loss_log
        .as_ref()
        .map(std::fs::File::create)
        .transpose()
        .context("creating the loss log")?;
    let mut losses = Vec::new();
    while let Some(p) = block_on(trainer.step())? {
        pb.set_position(p.step as u64);
        pb.set_message(format!(
            "epoch {} loss {:.4} ({:.1} ex/s)",
            p.epoch + 1,
            p.loss,
            p.examples_per_sec
        ));
        losses.push(p.loss);
        if let Some(f) = log.as_mut() {
            use std::io::Write;
            writeln!(f, "{}", serde_json::to_string(&p)?)?;
        }
    }
    pb.finish_and_clear();
    let model: TaskModel = trainer.finish();
    let train_secs = t0.elapsed().as_secs_f64();
    let probs = block_on(predict::probabilities(
        &engine.encoder,
        &engine.tokenizer,
        Some(&model.adapter),
        &model.head,
        &test_texts,
        &engine.device,
    ))?;
    let (m, cm) = predict::evaluate(&probs, &test_labels, vocab.len());
    eprintln!(
        "lora:   {} (trained {:.1} s; loss first epoch {:.4} → last epoch {:.4})",
        fmt_metrics(&m),
        train_secs,
        mean_head(
            &losses,
            trainer_steps_per_epoch(texts.len(), cfg.batch_size)
        ),
        mean_tail(
            &losses,
            trainer_steps_per_epoch(texts.len(), cfg.batch_size)
        )
    );
    report.insert("lora".into(), serde_json::to_value(&m)?);
    report.insert("confusion_matrix".into(), serde_json::to_value(&cm.counts)?);
    report.insert("labels".into(), serde_json::to_value(vocab.names())?);
    report.insert("train_seconds".into(), serde_json::to_value(train_secs)?);

    let steps_per_epoch = trainer_steps_per_epoch(texts.len(), cfg.batch_size);
    let meta = TaskMeta {
        format: TASK_FORMAT.into(),
        task: a.task.clone(),
        labels: vocab.names().to_vec(),
        base_model: DEFAULT_MODEL_NAME.into(),
        base_model_sha256: engine.model_sha256.clone(),
        lora,
        train: cfg,
        train_examples: texts.len(),
        metrics: Some(m),
        adapter_sha256: String::new(),
        history: losses
            .chunks(steps_per_epoch)
            .enumerate()
            .map(|(e, c)| task_files::EpochRecord {
                epoch: e + 1,
                loss: c.iter().sum::<f32>() / c.len() as f32,
                val_accuracy: None,
            })
            .collect(),
    };
    let files = block_on(task_files::to_files(&model, &meta))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, bytes) in &files {
        std::fs::write(a.out.join(name), bytes)
            .with_context(|| format!("writing {}", a.out.join(name).display()))?;
    }
    eprintln!("wrote {}", a.out.display());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn trainer_steps_per_epoch(n: usize, batch: usize) -> usize {
    n.div_ceil(batch.max(1)).max(1)
}

fn mean_head(v: &[f32], n: usize) -> f32 {
    let s = &v[..n.min(v.len())];
    s.iter().sum::<f32>() / s.len().max(1) as f32
}

fn mean_tail(v: &[f32], n: usize) -> f32 {
    let s = &v[v.len().saturating_sub(n)..];
    s.iter().sum::<f32>() / s.len().max(1) as f32
}

fn fmt_metrics(m: &Metrics) -> String {
    format!(
        "accuracy {:.4}, macro-F1 {:.4}, MCC {:.4} (n = {})",
        m.accuracy, m.macro_f1, m.mcc, m.n
    )
}
