//! `lorafuse fuse` and `lorafuse predict --fused`: stage 2 through the shared fusion job
//! ([`lorafuse::experiment::fusion_job`]), and prediction with the fused model.
//!
//! A fused model folder holds `fusion_manifest.json`, `fusion.safetensors` and, under `adapters/`,
//! a copy of every fused task's adapter folder, so it is self-contained; on loading, each adapter's
//! sha256 is checked against the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use lorafuse::data::LabelVocab;
use lorafuse::data::holdout::HoldoutPolicy;
use lorafuse::engine::Engine;
use lorafuse::experiment::fusion_job::{FusionSpec, train_fusion};
use lorafuse::experiment::start::{Source, recorded_start};
use lorafuse::experiment::{FusionTarget, Labelled, fusion_train_config};
use lorafuse::fusion::files::{self as fusion_files, FusedAdapter};
use lorafuse::fusion::module::FusionOptions;
use lorafuse::host::block_on;
use lorafuse::infer::{Answerer, FreshHead, TaskParts, predict_all};
use lorafuse::train::TrainConfig;
use lorafuse::workspace::task_files::{self, LoadedTask};

use crate::args::Columns;
use crate::io::{Bars, read_examples, read_task, spinner};

#[derive(Args)]
pub struct FuseArgs {
    /// Task adapter folders written by `train`, comma-separated; their order is the fusion order.
    #[arg(long, required = true, value_delimiter = ',')]
    adapters: Vec<PathBuf>,
    /// Training data per target task, `task=file`, comma-separated (task = the name given to `train`).
    #[arg(long, required = true, value_delimiter = ',')]
    data: Vec<String>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    columns: Columns,
    /// Fusion epochs.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Fusion learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Train one fusion shared by all tasks (per-task heads) on all their data together, instead
    /// of one fusion per task (the default, as the authors).
    #[arg(long)]
    shared: bool,
    /// The fusion variant (paper, residual, residual-others, adapterfusion, scalar;
    /// docs/design.md §1.6).
    #[arg(long, default_value = FusionSpec::DEFAULT_VARIANT, value_parser = parse_variant)]
    fusion: String,
    /// Always predict with the fusion: no epoch selection on held-out rows, no gate.
    #[arg(long)]
    no_gate: bool,
    #[command(flatten)]
    patience: crate::args::PatienceArgs,
    /// Share of each task's data held out (stratified, seeded with the task's training seed, as
    /// `train` does: the same file and share give the same rows stage 1 never saw). The fusion's
    /// epoch is selected, the gate decided and the temperature fitted on them.
    #[arg(long, default_value_t = lorafuse::data::holdout::DEFAULT_HOLDOUT_FRACTION)]
    holdout: f64,
    /// A task with fewer rows than this holds none out, as in `train` (docs/design.md §4).
    #[arg(long, default_value_t = lorafuse::data::holdout::TRAIN_ALL_BELOW_ROWS)]
    train_all_below: usize,
    /// Decide each task's fusion epoch and gate by cross-validation over this many folds of its
    /// training rows instead of on the held-out rows (docs/design.md §1.6): trains that many more
    /// adapters per task, with the settings in its lorafuse_task.json; 0: off, except for a task
    /// that holds no rows out, which always cross-validates.
    #[arg(long, default_value_t = 0)]
    gate_folds: usize,
}

/// A `--fusion` value: a named variant, not the bench-only authors'-code ablation.
fn parse_variant(s: &str) -> Result<String, String> {
    match FusionOptions::named(s) {
        Some(o) if !o.across_batch => Ok(s.to_string()),
        _ => Err(format!(
            "unknown fusion variant {s:?}; one of: paper, residual, residual-others, adapterfusion, scalar"
        )),
    }
}

fn task_name(t: &LoadedTask, dir: &Path) -> Result<String> {
    t.meta.as_ref().map(|m| m.task.clone()).with_context(|| {
        format!(
            "{} has no lorafuse_task.json: train it with `lorafuse train`",
            dir.display()
        )
    })
}

pub fn run(engine: &Engine, a: FuseArgs) -> Result<()> {
    if a.adapters.len() < 2 {
        bail!("fusion needs at least two task adapters");
    }
    let mut loaded = Vec::new();
    for dir in &a.adapters {
        let t = read_task(engine, dir)?;
        let name = task_name(&t, dir)?;
        if t.head.is_none() {
            bail!("{} has no classifier head", dir.display());
        }
        loaded.push((name, dir.clone(), t));
    }
    let adapters: Vec<&lorafuse::lora::LoraAdapter> =
        loaded.iter().map(|(_, _, t)| &t.adapter).collect();
    let cfg = fusion_train_config(
        &TrainConfig {
            seed: a.seed,
            ..TrainConfig::default()
        },
        Some(a.epochs),
        a.lr,
    );
    // Every target task's training rows, encoded once by the base and every adapter.
    let policy = HoldoutPolicy {
        fraction: a.holdout,
        train_all_below: a.train_all_below,
    };
    policy.validate()?;
    let mut targets = Vec::new();
    for spec in &a.data {
        let (task, file) = spec
            .split_once('=')
            .with_context(|| format!("--data entry {spec:?} is not task=file"))?;
        let own = loaded
            .iter()
            .position(|(n, _, _)| n == task)
            .with_context(|| {
                format!("--data names task {task:?}, which none of the adapters is")
            })?;
        let t = &loaded[own].2;
        let labels = t
            .meta
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        let vocab = LabelVocab::from_names(labels.clone());
        let seed = t.meta.as_ref().map_or(a.seed, |m| m.train.seed);
        let examples = read_examples(Path::new(file), &a.columns)?;
        let (train_rows, held) = policy.split(&examples, &[], seed);
        let rows = Labelled::all(&train_rows, &vocab)?;
        let held = Labelled::known(&held, &vocab).0;
        let pb = spinner(&format!(
            "{task}: encoding {} texts with the base and {} adapters",
            rows.len(),
            adapters.len()
        ));
        let target = block_on(FusionTarget::encode(
            engine,
            &adapters,
            task,
            labels,
            &rows,
            cfg.clone(),
        ))?;
        let head = t.head.as_ref().context("adapter without head")?;
        let folds = lorafuse::experiment::gate::gate_folds_for(a.gate_folds, held.len());
        let target = block_on(target.with_held_out(engine, &adapters, &held))?.with_own(own, head);
        let target = match (folds, &t.meta) {
            (0 | 1, _) => target,
            (k, Some(m)) if !a.shared => {
                pb.set_message(format!(
                    "{task}: training {k} adapters for the cross-validated check"
                ));
                // The fold adapters start where the task's adapter started.
                let sources: Vec<Source> = loaded
                    .iter()
                    .map(|(n, _, l)| Source {
                        task: n,
                        adapter: &l.adapter,
                        sha256: &l.adapter_sha256,
                    })
                    .collect();
                let from = recorded_start(m.start.as_ref(), &m.lora, &sources);
                block_on(target.with_cv_folds(engine, &rows, from, &m.train, k, &mut ()))?.0
            }
            _ => target,
        };
        targets.push(target);
        pb.finish_and_clear();
    }
    let fused: Vec<FusedAdapter> = loaded
        .iter()
        .map(|(n, _, t)| FusedAdapter {
            task: n.clone(),
            adapter_sha256: t.adapter_sha256.clone(),
        })
        .collect();
    let options = FusionOptions::named(&a.fusion).unwrap_or_default();
    let spec = FusionSpec {
        heads: a.heads,
        shared: a.shared,
        options,
        gate: !a.no_gate,
        patience: a.patience.for_options(&options),
    };
    let mut bars = Bars::new("fusion ");
    let (model, _) = block_on(train_fusion(engine, &fused, &targets, &spec, &mut bars))?;
    bars.finish();
    for t in &model.manifest.tasks {
        eprintln!("{}: {}", t.task, t.describe_gate(&model.manifest.adapters));
    }
    let files = block_on(fusion_files::to_files(
        &model.manifest,
        &model.layers,
        &model.heads,
    ))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, bytes) in &files {
        std::fs::write(a.out.join(name), bytes)?;
    }
    for (name, dir, _) in &loaded {
        let dst = a.out.join("adapters").join(name);
        std::fs::create_dir_all(&dst)?;
        for f in [
            task_files::ADAPTER_CONFIG,
            task_files::ADAPTER_WEIGHTS,
            task_files::HEAD,
            task_files::META,
        ] {
            std::fs::copy(dir.join(f), dst.join(f))
                .with_context(|| format!("copying {}", dir.join(f).display()))?;
        }
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

pub fn predict(engine: &Engine, dir: &Path, texts: &[String]) -> Result<()> {
    let mut files = BTreeMap::new();
    for name in [fusion_files::MANIFEST, fusion_files::WEIGHTS] {
        files.insert(
            name.to_string(),
            std::fs::read(dir.join(name))
                .with_context(|| format!("reading {}", dir.join(name).display()))?,
        );
    }
    let (manifest, layers, heads) =
        fusion_files::from_files(&files, engine.encoder.config.hidden_size, &engine.device)?;
    crate::io::check_base_model(engine, &manifest.base_model, &manifest.base_model_sha256)
        .with_context(|| format!("fused model {}", dir.display()))?;
    let mut tasks = Vec::new();
    for fa in &manifest.adapters {
        let t = read_task(engine, &dir.join("adapters").join(&fa.task))?;
        if t.adapter_sha256 != fa.adapter_sha256 {
            bail!(
                "adapter {:?} in {} does not match the one the fusion was trained with (sha256 differs)",
                fa.task,
                dir.display()
            );
        }
        tasks.push(t);
    }
    let labels: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            t.meta
                .as_ref()
                .map(|m| m.labels.clone())
                .unwrap_or_default()
        })
        .collect();
    let parts: Vec<TaskParts> = manifest
        .adapters
        .iter()
        .zip(&tasks)
        .zip(&labels)
        .map(|((fa, t), l)| {
            let fused = manifest.tasks.iter().position(|ft| ft.task == fa.task);
            let answer = fused.map_or(Answerer::Lora, |i| manifest.tasks[i].answerer());
            Ok(TaskParts {
                name: &fa.task,
                labels: l,
                adapter: &t.adapter,
                head: t.head.as_ref().context("adapter without head")?,
                fusion: fused.map(|i| &layers[i]),
                temperature: fused.map_or_else(
                    || t.meta.as_ref().map_or(1.0, |m| m.temperature),
                    |i| {
                        let stage1 = t.meta.as_ref().map_or(1.0, |m| m.temperature);
                        manifest.tasks[i].lora_temperature_or(stage1)
                    },
                ),
                hybrid_temperature: fused.map_or(1.0, |i| manifest.tasks[i].temperature),
                answer,
                fresh: fused.and_then(|i| FreshHead::of(&heads[i], &manifest.tasks[i], answer)),
            })
        })
        .collect::<Result<_>>()?;
    let out = block_on(predict_all(
        &engine.encoder,
        &engine.tokenizer,
        &parts,
        texts,
        &engine.device,
    ))?;
    for (t, preds) in texts.iter().zip(&out.predictions) {
        outln!("{}", serde_json::json!({"text": t, "tasks": preds}))?;
    }
    eprintln!(
        "encoder passes per text: {:.1}",
        out.encoder_passes_per_text
    );
    Ok(())
}
