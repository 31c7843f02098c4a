//! What the commands read and show: the base model, adapter folders, labelled files, progress
//! bars, and the driver observers that draw them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use lorafuse::data::{self, Example, ParseOptions};
use lorafuse::engine::{Engine, ModelFiles};
use lorafuse::model::ClassifierHead;
use lorafuse::workspace::task_files::sha256_hex;
use lorafuse::workspace::task_files::{self, LoadedTask, TaskMeta};

use crate::args::{Columns, Common};

/// Loads the base model of `--model-dir` on `--backend`.
pub fn load_engine(common: &Common) -> Result<Engine> {
    let dir = &common.model_dir;
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| {
            format!("cannot read {} (run ./scripts/setup to install the default model, or pass --model-dir)", dir.join(name).display())
        })
    };
    // sentence-transformers' files pick the pooling and normalisation when present.
    let optional = |name: &str| -> Result<Option<Vec<u8>>> {
        let p = dir.join(name);
        match p.exists() {
            true => Ok(Some(
                std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
            )),
            false => Ok(None),
        }
    };
    let weights = read("model.safetensors")?;
    let folder = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let files = ModelFiles {
        name: ModelFiles::name_for(&folder, &sha256_hex(&weights)),
        config: read("config.json")?,
        weights,
        tokenizer: read("tokenizer.json")?,
        modules: optional("modules.json")?,
        pooling: optional("1_Pooling/config.json")?,
    };
    let device = lorafuse::backend::device(&common.backend)?;
    Engine::from_files(&files, &device)
        .with_context(|| format!("loading the model in {}", dir.display()))
}

/// [`Engine::check_trained_on`], with what to do about it.
pub fn check_base_model(engine: &Engine, name: &str, sha256: &str) -> Result<()> {
    engine
        .check_trained_on(name, sha256)
        .context("pass the model it was trained on with --model-dir")
}

/// Reads an adapter folder (ours or PEFT's); refuses one trained on another base model.
pub fn read_task(engine: &Engine, dir: &Path) -> Result<LoadedTask> {
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
    // The base model first: another model's adapter would fail on shapes with a vaguer message.
    if let Some(meta) = task_files::peek_meta(&files) {
        check_base_model(engine, &meta.base_model, &meta.base_model_sha256)
            .with_context(|| format!("adapter folder {}", dir.display()))?;
    }
    task_files::from_files(&files, &engine.encoder.config, &engine.device)
        .with_context(|| format!("loading adapter folder {}", dir.display()))
}

/// The head and metadata of a task folder; a plain PEFT adapter has neither.
pub fn head_and_meta<'a>(
    task: &'a LoadedTask,
    dir: &Path,
) -> Result<(&'a ClassifierHead, &'a TaskMeta)> {
    match (task.head.as_ref(), task.meta.as_ref()) {
        (Some(h), Some(m)) => Ok((h, m)),
        _ => bail!(
            "{} has no classifier head (a plain PEFT adapter?): train one with `lorafuse train`",
            dir.display()
        ),
    }
}

/// Parses a labelled file, printing its rejected rows (the first 10) to stderr.
pub fn read_examples(path: &Path, columns: &Columns) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let delimiter = match columns.delimiter.as_deref() {
        None => None,
        Some("tab" | "\\t") => Some('\t'),
        Some(d) if d.chars().count() == 1 => d.chars().next(),
        Some(d) => anyhow::bail!("--delimiter {d:?}: give one character, or `tab`"),
    };
    let opts = ParseOptions {
        text_column: columns.text_column.clone(),
        label_column: columns.label_column.clone(),
        delimiter,
        header: !columns.no_header,
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

/// A spinner with a message.
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

/// A bar over `total` training steps.
pub fn step_bar(total: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>24} [{bar:30}] {pos}/{len} steps, {elapsed} < {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// A driver observer that draws one bar per run and shows loss and speed.
pub struct Bars {
    bar: Option<ProgressBar>,
    /// Prefix of each bar's name.
    pub prefix: String,
}

impl Bars {
    /// Bars named `prefix` + the run's name.
    pub fn new(prefix: &str) -> Self {
        Self {
            bar: None,
            prefix: prefix.to_string(),
        }
    }

    /// Starts a bar for a run of `total` steps.
    pub fn start(&mut self, name: &str, total: usize) {
        self.finish();
        self.bar = Some(step_bar(total, &format!("{}{name}", self.prefix)));
    }

    /// Shows a step (starting a bar named after the prefix if none was started).
    pub fn step(&mut self, p: &lorafuse::train::Progress) {
        if self.bar.is_none() {
            self.bar = Some(step_bar(p.total_steps, &self.prefix));
        }
        if let Some(b) = &self.bar {
            b.set_position(p.step as u64);
            b.set_message(format!(
                "epoch {} loss {:.4} ({:.1} ex/s)",
                p.epoch + 1,
                p.loss,
                p.examples_per_sec
            ));
        }
    }

    /// Prints a line above the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }

    /// Clears the current bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl<T> lorafuse::train::Observer<T> for Bars {
    fn on_step(&mut self, p: &lorafuse::train::Progress) {
        self.step(p)
    }
}

impl lorafuse::experiment::fusion_job::FusionObserver for Bars {
    fn start(&mut self, job: &str, total_steps: usize) {
        Bars::start(self, job, total_steps)
    }
}

impl lorafuse::experiment::Stage1Observer for Bars {
    fn on_step(&mut self, p: &lorafuse::train::Progress) {
        self.step(p)
    }
}

/// One method's scores as JSON: its metrics, the accuracy's 95 % Wilson interval, and the
/// calibration of its probabilities at temperature `t` (raw) and after temperature scaling
/// measured out of fold on these rows.
pub fn method_json(
    r: &lorafuse::experiment::MethodResult,
    labels: &[usize],
) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(&r.metrics)?;
    let (lo, hi) = r.accuracy_interval();
    v["accuracy_interval"] = serde_json::json!([lo, hi]);
    v["calibration"] = serde_json::to_value(&r.calibration)?;
    v["calibration_after_scaling"] = serde_json::to_value(r.cross_fitted(labels).0)?;
    v["per_class"] = serde_json::to_value(r.confusion.per_class())?;
    Ok(v)
}
