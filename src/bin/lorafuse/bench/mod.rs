//! `lorafuse bench` (docs/design.md §1.5): `frozen`, `lora` and `hybrid` on several tasks and
//! seeds, with cross-task overlap removed first, per-stage wall times, the fusion's share of
//! training time and the measured encoder passes per text of multi-task prediction.
//!
//! Per seed: each task's train rows → class-stratified subset of N → the shared held-out policy's
//! split (10 %) as the dev split; stage 1 per task ([`run_stage1`]); then one cache of the K+1
//! pooled vectors of every train/dev/test text; `frozen`, `lora` and `hybrid` are trained and
//! scored from that cache through [`lorafuse::experiment`]. This file runs the protocol;
//! `variants.rs` holds the optional fusion variants, `report.rs` the tables and the JSON.

mod report;
mod score;
mod variants;

use score::{
    VariantResult, fusion_config, passes_per_text_measured, score_fusion, score_task,
    shared_fusion, target, train_variant,
};

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use lorafuse::data::{self, Example, ParseOptions};
use lorafuse::engine::Engine;
use lorafuse::experiment::fusion_job::FusionSpec;
use lorafuse::experiment::gate::CvFold;
use lorafuse::experiment::{Labelled, PreparedTask, fusion_train_config, run_stage1};
use lorafuse::fusion::files::GateCheck;
use lorafuse::fusion::module::FusionOptions;
use lorafuse::host::block_on;
use lorafuse::train::calibration::{Bin, Calibration};
use lorafuse::train::stage2::FusionCache;
use lorafuse::train::uncertainty::Paired;
use lorafuse::train::{Metrics, TaskModel, TrainConfig};

use crate::io::{Bars, step_bar};

#[derive(Args)]
pub struct BenchArgs {
    /// Task names; each resolves to `<data-dir>/<name>/{train,test}.csv`.
    #[arg(
        long,
        default_value = "sst2,cr,subj,trec,ag_news",
        value_delimiter = ','
    )]
    tasks: Vec<String>,
    /// Folder holding the task folders.
    #[arg(long, default_value = "../shared/datasets")]
    data_dir: PathBuf,
    /// Training rows per task (class-stratified subset; `--holdout` of it becomes the dev split).
    #[arg(long, default_value_t = 500)]
    train_per_task: usize,
    /// Test rows per task (the first M rows of test.csv).
    #[arg(long, default_value_t = 500)]
    test_per_task: usize,
    /// Seeds, comma-separated.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    seeds: Vec<u64>,
    #[command(flatten)]
    training: crate::args::TrainingArgs,
    /// Fusion epochs (default 30).
    #[arg(long)]
    fusion_epochs: Option<usize>,
    /// Fusion learning rate (default: the head learning rate).
    #[arg(long)]
    fusion_lr: Option<f64>,
    /// Attention heads of the fusion.
    #[arg(long, default_value_t = 4)]
    fusion_heads: usize,
    /// The fusion variant reported as `hybrid` (paper, residual, residual-others, adapterfusion,
    /// scalar, authors-code; docs/design.md §1.6).
    #[arg(long, default_value = FusionSpec::DEFAULT_VARIANT, value_parser = parse_variant)]
    fusion: String,
    /// Report the `hybrid` after its last epoch, always (no selection on dev, no gate, no early
    /// stopping).
    #[arg(long)]
    no_gate: bool,
    #[command(flatten)]
    patience: crate::args::PatienceArgs,
    /// Also train these variants per task on the same caches and report each (last epoch, and
    /// dev-selected with the gate) under `fusion_variants` in the JSON.
    #[arg(long, value_delimiter = ',', value_parser = parse_variant)]
    fusion_variants: Vec<String>,
    /// Write the reliability diagrams of the test probabilities (pooled over tasks and seeds, per
    /// method, raw and at the dev-fitted temperature) as SVG files `<PREFIX>_raw.svg` and
    /// `<PREFIX>_scaled.svg`.
    #[arg(long)]
    reliability_svg: Option<PathBuf>,
    /// Keep each seed's stage-1 models and K + 1 vector caches in this folder and reuse them on a
    /// later run with the same tasks, data, split and training settings (stage 1 is ~95 % of the
    /// bench's time; the fusion variants then run in minutes).
    #[arg(long)]
    stage1_cache: Option<PathBuf>,
    /// Decide each fusion's epoch and gate by cross-validation over this many folds of the task's
    /// training rows (docs/design.md §1.6) instead of on its dev rows; 0: off, except for a task
    /// that holds no rows out (fewer than `--train-all-below`), which always cross-validates.
    /// Trains that many more adapters per task (not kept in `--stage1-cache`).
    #[arg(long, default_value_t = 0)]
    gate_folds: usize,
    #[command(flatten)]
    variants: variants::VariantArgs,
    /// Write every number as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A `--fusion` value: one of the named variants.
fn parse_variant(s: &str) -> Result<String, String> {
    match FusionOptions::named(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "unknown fusion variant {s:?}; one of: {}",
            FusionOptions::NAMES.join(", ")
        )),
    }
}

impl BenchArgs {
    /// The options of the `--fusion` variant.
    fn options(&self) -> FusionOptions {
        FusionOptions::named(&self.fusion).unwrap_or_default()
    }
}

/// A task's rows after overlap removal.
struct TaskData {
    name: String,
    train: Vec<Example>,
    test: Vec<Example>,
    removed: usize,
}

/// A method's scores on the dev and the test split, with the calibration of its test
/// probabilities before and after temperature scaling (the temperature fitted on dev).
#[derive(Serialize, Clone)]
struct MethodScores {
    test: Metrics,
    dev: Metrics,
    /// 95 % Wilson interval of the test accuracy.
    test_accuracy_interval: (f64, f64),
    /// The temperature fitted on the dev rows.
    temperature: f64,
    /// Test calibration of the raw probabilities.
    test_calibration: Calibration,
    /// Test calibration at the dev-fitted temperature.
    test_calibration_scaled: Calibration,
    /// Reliability diagram of the raw test probabilities (10 bins).
    test_reliability: Vec<Bin>,
    /// The same at the dev-fitted temperature.
    test_reliability_scaled: Vec<Bin>,
    /// The test rows' predicted classes (for paired comparisons).
    #[serde(skip)]
    test_predictions: Vec<usize>,
}

/// Every number of one task and seed.
#[derive(Serialize)]
struct TaskSeedResult {
    task: String,
    seed: u64,
    train_rows: usize,
    dev_rows: usize,
    test_rows: usize,
    frozen: MethodScores,
    lora: MethodScores,
    hybrid: MethodScores,
    /// The hybrid against LoRA on the same test rows (exact McNemar test).
    hybrid_vs_lora: Paired,
    #[serde(flatten)]
    variants: variants::VariantScores,
    stage1_seconds: f64,
    frozen_seconds: f64,
    fusion_seconds: f64,
    /// Epochs the default fusion trained (fewer than set where early stopping ended it).
    fusion_epochs_trained: usize,
    /// With `--gate-folds`: training the cross-validated gate's fold adapters.
    gate_cv_seconds: f64,
    mean_attention_on_test: Vec<f32>,
    /// The variant reported as `hybrid`.
    fusion_variant: String,
    /// Its gate: the selected hybrid against LoRA on dev.
    gate: Option<GateCheck>,
    /// Whether `hybrid` is the fusion (`false`: the gate chose LoRA, and `hybrid` = `lora`).
    use_hybrid: bool,
    /// The model the task answers with in the product (the gate's choice; the hybrid with
    /// `--no-gate`).
    answered_by: lorafuse::infer::Answerer,
    /// The product's answer: the scores of `answered_by`.
    answer: MethodScores,
    /// With `--fusion-variants`: each variant's scores.
    fusion_variants: BTreeMap<String, VariantResult>,
}

/// Wall times of one seed's stages.
#[derive(Serialize)]
struct SeedTimes {
    seed: u64,
    stage1_seconds: f64,
    caching_seconds: f64,
    frozen_seconds: f64,
    fusion_seconds: f64,
    /// With `--fusion-shared`: training the one shared fusion.
    shared_fusion_seconds: f64,
}

impl SeedTimes {
    /// Wall time of the default training stages (stage 1, caching, probe, per-task fusion).
    fn training_total(&self) -> f64 {
        self.stage1_seconds + self.caching_seconds + self.frozen_seconds + self.fusion_seconds
    }
}

/// One task's split for one seed, and its caches (train, dev, test).
struct Split {
    task: PreparedTask,
    test: Labelled,
}

/// What the per-task scoring of one seed needs.
struct SeedCtx<'a> {
    engine: &'a Engine,
    seed: u64,
    cfg: TrainConfig,
    fusion_cfg: TrainConfig,
    models: Vec<TaskModel>,
    splits: Vec<Split>,
    /// Per task: the caches of its train, dev and test rows over every adapter.
    caches: Vec<[FusionCache; 3]>,
    /// Per task, with `--gate-folds`: the cross-validated gate's folds and their seconds.
    cv: Vec<(Option<Vec<CvFold>>, f64)>,
    /// The fusion's early stopping (none with `--no-gate`).
    patience: crate::args::PatienceArgs,
}

pub(crate) fn read_csv(path: &Path) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = data::parse(&bytes, &path.to_string_lossy(), &ParseOptions::default())
        .with_context(|| path.display().to_string())?;
    Ok(parsed.examples)
}

/// Reads every task and removes each train text whose normalised form is in any task's test split.
fn load_tasks(a: &BenchArgs) -> Result<Vec<TaskData>> {
    let mut tasks = Vec::new();
    for name in &a.tasks {
        let dir = a.data_dir.join(name);
        tasks.push(TaskData {
            name: name.clone(),
            train: read_csv(&dir.join("train.csv"))?,
            test: read_csv(&dir.join("test.csv"))?,
            removed: 0,
        });
    }
    let forbidden: HashSet<String> = tasks
        .iter()
        .flat_map(|t| t.test.iter().map(|e| data::normalise_for_overlap(&e.text)))
        .collect();
    for t in &mut tasks {
        let (kept, removed) = data::remove_overlap(&t.train, &forbidden);
        t.train = kept;
        t.removed = removed;
        t.test.truncate(a.test_per_task);
    }
    Ok(tasks)
}

pub fn run(engine: &Engine, a: BenchArgs) -> Result<()> {
    let wall = Instant::now();
    if a.tasks.len() < 2 {
        bail!("bench needs at least two tasks");
    }
    if a.train_per_task < 4 || a.test_per_task == 0 || a.seeds.is_empty() {
        bail!("bench needs --train-per-task >= 4, --test-per-task >= 1 and at least one seed");
    }
    let tasks = load_tasks(&a)?;
    report::overlap(&tasks);
    let base_cfg = a.training.train(1);
    let lora = a.training.lora();
    lora.validate()?;

    let mut results: Vec<TaskSeedResult> = Vec::new();
    let mut times: Vec<SeedTimes> = Vec::new();
    let mut passes_per_text = 0.0;
    for &seed in &a.seeds {
        let cfg = TrainConfig {
            seed,
            ..base_cfg.clone()
        };
        let (ctx, stage1_secs, caching_secs) = prepare_seed(engine, &a, &tasks, cfg, &lora)?;
        // Optional: one fusion shared by all tasks, trained on every task's rows together.
        let (shared_layers, shared_secs) = match a.variants.fusion_shared {
            true => shared_fusion(&ctx, &tasks, a.fusion_heads)?,
            false => (Vec::new(), 0.0),
        };
        let (mut frozen_total, mut fusion_total) = (0.0, 0.0);
        let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
        let trains = || ctx.caches.iter().map(|c| c[0].clone()).collect::<Vec<_>>();
        let mut base = (0..tasks.len())
            .map(|i| score::baselines(&ctx, i))
            .collect::<Result<Vec<_>>>()?;
        let loras: Vec<MethodScores> = base.iter().map(|b| b.lora.clone()).collect();
        // Every task's fusion of a variant trains side by side, as on the page.
        let defaults = train_variant(&ctx, &names, a.fusion_heads, a.options(), trains(), &loras)?;
        let mut extra = Vec::with_capacity(a.fusion_variants.len());
        for name in &a.fusion_variants {
            let options = FusionOptions::named(name).unwrap_or_default();
            let v = train_variant(&ctx, &names, a.fusion_heads, options, trains(), &loras)?;
            extra.push((name, v));
        }
        for (i, (t, b)) in tasks.iter().zip(base.drain(..)).enumerate() {
            let (v, fusion) = &defaults[i];
            let mut r = score_task(&ctx, i, &t.name, &a, b, v);
            for (name, vs) in &extra {
                let v = &vs[i].0;
                eprintln!(
                    "seed {seed} {:>10}: variant {name}: test {:.4} (last epoch {:.4}), dev {:.4}{}",
                    t.name,
                    v.gated.test.accuracy,
                    v.last.test.accuracy,
                    v.gated.dev.accuracy,
                    if v.use_hybrid { "" } else { " (gate: LoRA)" }
                );
                r.fusion_variants.insert(name.to_string(), v.clone());
            }
            let shared = shared_layers.get(i);
            r.variants = variants::run(&ctx, i, &t.name, &a, shared, &lora)?;
            r.stage1_seconds = stage1_secs[i];
            frozen_total += r.frozen_seconds;
            fusion_total += r.fusion_seconds;
            if i == 0 {
                passes_per_text = passes_per_text_measured(&ctx, &tasks, fusion)?;
            }
            results.push(r);
        }
        times.push(SeedTimes {
            seed,
            stage1_seconds: stage1_secs.iter().sum(),
            caching_seconds: caching_secs,
            frozen_seconds: frozen_total,
            fusion_seconds: fusion_total,
            shared_fusion_seconds: shared_secs,
        });
    }
    report::print(
        &a,
        &tasks,
        &results,
        &times,
        passes_per_text,
        wall.elapsed().as_secs_f64(),
    );
    if let Some(prefix) = &a.reliability_svg {
        report::reliability_svgs(&results, prefix)?;
    }
    if let Some(p) = &a.out {
        report::write_json(
            p,
            &a,
            &tasks,
            &lora,
            &base_cfg,
            &results,
            &times,
            passes_per_text,
            wall.elapsed().as_secs_f64(),
        )?;
    }
    Ok(())
}

/// One seed's splits, stage 1 of every task and the cache of every text's K + 1 vectors; with the
/// stage-1 seconds per task and the caching seconds.
fn prepare_seed<'a>(
    engine: &'a Engine,
    a: &BenchArgs,
    tasks: &[TaskData],
    cfg: TrainConfig,
    lora: &lorafuse::lora::LoraConfig,
) -> Result<(SeedCtx<'a>, Vec<f64>, f64)> {
    let seed = cfg.seed;
    // Splits: the shared policy on a stratified subset; test rows with known labels.
    let mut splits = Vec::new();
    for t in tasks {
        let subset = data::stratified_subset(&t.train, a.train_per_task, seed);
        let task = PreparedTask::new(&subset, &[], &a.training.holdout(), seed)
            .with_context(|| format!("task {}", t.name))?;
        let test = Labelled::known(&t.test, &task.vocab).0;
        splits.push(Split { task, test });
    }
    // Stage 1 and the caches, from the snapshot when one was kept for exactly this setting.
    let snap = match &a.stage1_cache {
        Some(root) => {
            let key = (
                "bench-stage1/1",
                lorafuse::train::stage1::STEP_VERSION,
                &a.tasks,
                a.data_dir.canonicalize().unwrap_or(a.data_dir.clone()),
                a.train_per_task,
                a.test_per_task,
                a.training.holdout().fraction,
                lora,
                &cfg,
            );
            Some(crate::snapshot::folder(root, &format!("seed{seed}"), &key)?)
        }
        None => None,
    };
    let loaded = match &snap {
        Some(dir) => crate::snapshot::load_seed(dir, engine, tasks.len(), cfg.head_dropout)?,
        None => None,
    };
    let (models, caches, stage1_secs, caching_secs) = match loaded {
        Some(l) => {
            eprintln!("seed {seed}: stage 1 and caches from the snapshot");
            l
        }
        None => {
            let l = train_and_cache(engine, tasks, &splits, &cfg, lora)?;
            if let Some(dir) = &snap {
                crate::snapshot::save_seed(dir, &l.0, &l.1, &l.2, l.3)?;
            }
            l
        }
    };
    let mut ctx = SeedCtx {
        engine,
        seed,
        fusion_cfg: fusion_train_config(&cfg, a.fusion_epochs, a.fusion_lr),
        cfg,
        models,
        splits,
        caches,
        cv: Vec::new(),
        patience: crate::args::PatienceArgs {
            fusion_patience: match a.no_gate {
                true => 0,
                false => a.patience.fusion_patience,
            },
        },
    };
    for (i, t) in tasks.iter().enumerate() {
        let held = ctx.splits[i].task.held_out.len();
        let k = lorafuse::experiment::gate::gate_folds_for(a.gate_folds, held);
        if k < 2 {
            ctx.cv.push((None, 0.0));
            continue;
        }
        let t0 = Instant::now();
        let tgt = score::target(&ctx, i, &t.name, ctx.caches[i][0].clone(), &ctx.fusion_cfg);
        let train = &ctx.splits[i].task.train;
        let start = lorafuse::experiment::stage1::Start::Fresh(lora);
        let (tgt, _) = block_on(tgt.with_cv_folds(engine, train, start, &ctx.cfg, k, &mut ()))?;
        let secs = t0.elapsed().as_secs_f64();
        eprintln!("seed {seed} {}: {k} gate folds in {secs:.1} s", t.name);
        ctx.cv.push((tgt.cv, secs));
    }
    Ok((ctx, stage1_secs, caching_secs))
}

/// Stage 1 of every task and the cache of every text's K + 1 vectors, with the stage-1 seconds
/// per task and the caching seconds.
#[allow(clippy::type_complexity)]
fn train_and_cache(
    engine: &Engine,
    tasks: &[TaskData],
    splits: &[Split],
    cfg: &TrainConfig,
    lora: &lorafuse::lora::LoraConfig,
) -> Result<(Vec<TaskModel>, Vec<[FusionCache; 3]>, Vec<f64>, f64)> {
    let seed = cfg.seed;
    let mut models = Vec::new();
    let mut stage1_secs = Vec::new();
    for (t, s) in tasks.iter().zip(splits) {
        let mut bars = Bars::new(&format!("seed {seed} lora {}", t.name));
        let run = block_on(run_stage1(engine, &s.task, lora, cfg, false, &mut bars))?;
        bars.finish();
        eprintln!("seed {seed} stage 1 {}: {:.1} s", t.name, run.seconds);
        stage1_secs.push(run.seconds);
        models.push(run.model);
    }
    // Caching: K+1 vectors of every text, once.
    let t0 = Instant::now();
    let adapters: Vec<&lorafuse::lora::LoraAdapter> = models.iter().map(|m| &m.adapter).collect();
    let total_texts: usize = splits
        .iter()
        .map(|s| s.task.train.len() + s.task.held_out.len() + s.test.len())
        .sum();
    let pb = step_bar(tasks.len() * 3, &format!("seed {seed} caching"));
    let mut caches = Vec::new();
    for s in splits {
        let mut c = Vec::new();
        for texts in [&s.task.train.texts, &s.task.held_out.texts, &s.test.texts] {
            let e = engine;
            c.push(block_on(FusionCache::build(
                &e.encoder,
                &e.tokenizer,
                &adapters,
                texts,
                &e.device,
            ))?);
            pb.inc(1);
        }
        let [tr, dev, test]: [FusionCache; 3] =
            c.try_into().map_err(|_| anyhow::anyhow!("three caches"))?;
        caches.push([tr, dev, test]);
    }
    pb.finish_and_clear();
    let caching_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "seed {seed} caching: {total_texts} texts x {} passes, {caching_secs:.1} s",
        adapters.len() + 1
    );
    Ok((models, caches, stage1_secs, caching_secs))
}
