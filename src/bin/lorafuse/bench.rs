//! `lorafuse bench` (DESIGN §1.5): `frozen`, `lora` and `hybrid` on several tasks and seeds, with
//! cross-task overlap removed first, per-stage wall times, the fusion's share of training time and
//! the measured encoder passes per text of multi-task prediction.
//!
//! Per seed: each task's train rows → class-stratified subset of N → 10 % dev split; stage 1 per
//! task; then one cache of the K+1 pooled vectors of every train/dev/test text; `frozen` (a head
//! on the cached base vectors), `lora` (the task's head on its cached adapter vectors) and `hybrid`
//! (a fusion layer per task trained on the cache) are all evaluated from that cache.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use lorafuse::data::{self, Example, LabelVocab, ParseOptions};
use lorafuse::engine::{self, Engine};
use lorafuse::fusion::predict::{TaskParts, predict_all};
use lorafuse::fusion::{AttentionFusion, FusionConfig};
use lorafuse::host::block_on;
use lorafuse::train::crossfit::crossfit_cache;
use lorafuse::train::stage2::{FusionCache, FusionTrainer, VectorSource};
use lorafuse::train::{
    LoraTrainer, Metrics, TaskModel, TrainConfig, predict, probe::ProbeTrainer, stage2,
};

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
    /// Training rows per task (class-stratified subset; 10 % of it becomes the dev split).
    #[arg(long, default_value_t = 500)]
    train_per_task: usize,
    /// Test rows per task (the first M rows of test.csv).
    #[arg(long, default_value_t = 500)]
    test_per_task: usize,
    /// Seeds, comma-separated.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    seeds: Vec<u64>,
    #[command(flatten)]
    training: crate::TrainingArgs,
    /// Fusion epochs (default 30).
    #[arg(long)]
    fusion_epochs: Option<usize>,
    /// Fusion learning rate (default: the head learning rate).
    #[arg(long)]
    fusion_lr: Option<f64>,
    /// Attention heads of the fusion.
    #[arg(long, default_value_t = 4)]
    fusion_heads: usize,
    /// Also train fusion layers over a small grid (learning rate x epochs x adapter dropout) on the cache and
    /// report, per task, the one with the best dev accuracy as `hybrid (dev-selected)`.
    #[arg(long)]
    fusion_grid: bool,
    /// Also train the fusion on cross-fitted vectors (the own adapter's vector of each training row
    /// comes from an adapter trained on the other half of the task's data; `train::crossfit`) and
    /// report it as `hybrid (cross-fit)`.
    #[arg(long)]
    fusion_crossfit: bool,
    /// Also train one fusion shared by all tasks (per-task heads, on every task's training rows
    /// together; DESIGN §1.3's option) and report it as `hybrid (shared)`.
    #[arg(long)]
    fusion_shared: bool,
    /// Also train the per-task fusion without its base branch (the frozen base's vectors
    /// replaced by zeros in training and test, so `b` is a constant) and report it as
    /// `hybrid (no base branch)`: an ablation.
    #[arg(long)]
    fusion_no_base: bool,
    /// Write every number as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

struct TaskData {
    name: String,
    train: Vec<Example>,
    test: Vec<Example>,
    removed: usize,
}

#[derive(Serialize, Clone)]
struct MethodScores {
    test: Metrics,
    dev: Metrics,
}

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
    /// With `--fusion-grid`: the dev-selected fusion's scores and settings.
    hybrid_selected: Option<MethodScores>,
    hybrid_selected_settings: Option<String>,
    /// With `--fusion-grid`: every candidate's (settings, dev, test).
    fusion_grid: Vec<(String, Metrics, Metrics)>,
    /// With `--fusion-crossfit`: the fusion trained on cross-fitted vectors.
    hybrid_crossfit: Option<MethodScores>,
    crossfit_seconds: f64,
    crossfit_attention_on_test: Vec<f32>,
    /// With `--fusion-shared`: the shared fusion's scores on this task, and its attention.
    hybrid_shared: Option<MethodScores>,
    shared_attention_on_test: Vec<f32>,
    /// With `--fusion-no-base`: the per-task fusion trained and run with zero base vectors.
    hybrid_no_base: Option<MethodScores>,
    stage1_seconds: f64,
    frozen_seconds: f64,
    fusion_seconds: f64,
    mean_attention_on_test: Vec<f32>,
}

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

fn read_csv(path: &Path) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = data::parse(&bytes, &path.to_string_lossy(), &ParseOptions::default())
        .with_context(|| path.display().to_string())?;
    Ok(parsed.examples)
}

fn bar(total: usize, prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix);
    pb
}

fn eval(probs: &[Vec<f32>], labels: &[usize], classes: usize) -> Metrics {
    predict::evaluate(probs, labels, classes).0
}

/// Softmax rows of a `[n, classes]` logits tensor.
fn probs_of(logits: burn::tensor::Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let c = logits.dims()[1];
    let v = block_on(lorafuse::host::floats(burn::tensor::activation::softmax(
        logits, 1,
    )))?;
    Ok(v.chunks(c).map(<[f32]>::to_vec).collect())
}

/// Trains one per-task fusion on cached vectors to the end.
fn train_fusion(
    cache: FusionCache,
    labels: &[usize],
    fusion: &FusionConfig,
    cfg: &TrainConfig,
    device: &burn::tensor::Device,
) -> Result<AttentionFusion> {
    let mut t = FusionTrainer::new(VectorSource::Cached(cache), labels, fusion, cfg, device)?;
    while block_on(t.step())?.is_some() {}
    Ok(t.finish())
}

/// A trained fusion's scores on the dev and test caches (with their labels), and its mean
/// attention over the adapters on test.
fn score_fusion(
    f: &AttentionFusion,
    dev: (&FusionCache, &[usize]),
    test: (&FusionCache, &[usize]),
    classes: usize,
) -> Result<(MethodScores, Vec<f32>)> {
    let run = |c: &FusionCache| f.forward(c.base.clone(), c.adapters.clone(), None, false);
    let out = run(test.0);
    let attention = block_on(lorafuse::host::floats(out.weights.mean_dim(0)))?;
    let scores = MethodScores {
        test: eval(&probs_of(out.logits)?, test.1, classes),
        dev: eval(&probs_of(run(dev.0).logits)?, dev.1, classes),
    };
    Ok((scores, attention))
}

pub fn run(engine: &Engine, a: BenchArgs) -> Result<()> {
    let wall = Instant::now();
    if a.tasks.len() < 2 {
        bail!("bench needs at least two tasks");
    }
    if a.train_per_task < 4 || a.test_per_task == 0 || a.seeds.is_empty() {
        bail!("bench needs --train-per-task >= 4, --test-per-task >= 1 and at least one seed");
    }
    // Load, then remove every train text that occurs (normalised) in any task's test split.
    let mut tasks = Vec::new();
    for name in &a.tasks {
        let dir = a.data_dir.join(name);
        let train = read_csv(&dir.join("train.csv"))?;
        let test = read_csv(&dir.join("test.csv"))?;
        tasks.push(TaskData {
            name: name.clone(),
            train,
            test,
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
    println!("Overlap removal (train texts whose normalised form is in any task's test split):");
    for t in &tasks {
        println!(
            "- {}: {} rows removed, {} train rows left",
            t.name,
            t.removed,
            t.train.len()
        );
    }

    let base_cfg = a.training.train(1);
    let lora = a.training.lora();
    lora.validate()?;
    let d = engine.encoder.config.hidden_size;

    let mut results: Vec<TaskSeedResult> = Vec::new();
    let mut times: Vec<SeedTimes> = Vec::new();
    let mut passes_per_text = 0.0;
    for &seed in &a.seeds {
        let cfg = TrainConfig {
            seed,
            ..base_cfg.clone()
        };
        // Splits.
        struct Split {
            vocab: LabelVocab,
            train: (Vec<String>, Vec<usize>),
            dev: (Vec<String>, Vec<usize>),
            test: (Vec<String>, Vec<usize>),
        }
        let mut splits = Vec::new();
        for t in &tasks {
            let subset = data::stratified_subset(&t.train, a.train_per_task, seed);
            let (tr, dev) = data::stratified_split(&subset, 0.1, seed);
            let vocab =
                data::validate_for_training(&tr).with_context(|| format!("task {}", t.name))?;
            let test: Vec<Example> = t
                .test
                .iter()
                .filter(|e| vocab.index_of(&e.label).is_some())
                .cloned()
                .collect();
            splits.push(Split {
                train: engine::labelled(&tr, &vocab)?,
                dev: engine::labelled(&dev, &vocab)?,
                test: engine::labelled(&test, &vocab)?,
                vocab,
            });
        }
        // Stage 1.
        let mut models: Vec<TaskModel> = Vec::new();
        let mut stage1_secs = Vec::new();
        for (t, s) in tasks.iter().zip(&splits) {
            let t0 = Instant::now();
            let mut tr = LoraTrainer::new(
                &engine.encoder,
                &engine.tokenizer,
                &s.train.0,
                &s.train.1,
                s.vocab.len(),
                &lora,
                &cfg,
                &engine.device,
            )?;
            let pb = bar(tr.total_steps(), format!("seed {seed} lora {}", t.name));
            while let Some(p) = block_on(tr.step())? {
                pb.set_position(p.step as u64);
                pb.set_message(format!(
                    "loss {:.3}, {:.1} ex/s",
                    p.loss, p.examples_per_sec
                ));
            }
            pb.finish_and_clear();
            models.push(tr.finish());
            stage1_secs.push(t0.elapsed().as_secs_f64());
            eprintln!(
                "seed {seed} stage 1 {}: {:.1} s",
                t.name,
                t0.elapsed().as_secs_f64()
            );
        }
        // Caching: K+1 vectors of every text, once.
        let t0 = Instant::now();
        let adapters: Vec<&lorafuse::lora::LoraAdapter> =
            models.iter().map(|m| &m.adapter).collect();
        let mut caches = Vec::new();
        let total_texts: usize = splits
            .iter()
            .map(|s| s.train.0.len() + s.dev.0.len() + s.test.0.len())
            .sum();
        let pb = bar(tasks.len() * 3, format!("seed {seed} caching"));
        pb.set_message(format!(
            "{} texts x {} passes",
            total_texts,
            adapters.len() + 1
        ));
        for s in &splits {
            let mut c = Vec::new();
            for texts in [&s.train.0, &s.dev.0, &s.test.0] {
                c.push(block_on(FusionCache::build(
                    &engine.encoder,
                    &engine.tokenizer,
                    &adapters,
                    texts,
                    &engine.device,
                ))?);
                pb.inc(1);
            }
            caches.push(c);
        }
        pb.finish_and_clear();
        let caching_secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "seed {seed} caching: {total_texts} texts x {} passes, {caching_secs:.1} s",
            adapters.len() + 1
        );

        let mut fcfg = stage2::default_config(&cfg);
        if let Some(e) = a.fusion_epochs {
            fcfg.epochs = e;
        }
        if let Some(lr) = a.fusion_lr {
            fcfg.head_lr = lr;
        }
        // Optional: one fusion shared by all tasks, trained on every task's rows together.
        let mut shared_layers = Vec::new();
        let mut shared_secs = 0.0;
        if a.fusion_shared {
            let t0 = Instant::now();
            let parts: Vec<(&FusionCache, &[usize], usize)> = caches
                .iter()
                .zip(&splits)
                .map(|(c, s)| (&c[0], s.train.1.as_slice(), s.vocab.len()))
                .collect();
            let mut g = FusionTrainer::new_shared_from_tasks(
                &parts,
                &FusionConfig::new(d, tasks.len(), 2).with_heads(a.fusion_heads),
                &fcfg,
                &engine.device,
            )?;
            let pb = bar(g.total_steps(), format!("seed {seed} shared fusion"));
            while let Some(p) = block_on(g.step())? {
                pb.set_position(p.step as u64);
            }
            pb.finish_and_clear();
            shared_layers = g.finish_shared()?;
            shared_secs = t0.elapsed().as_secs_f64();
            eprintln!("seed {seed} shared fusion: {shared_secs:.1} s");
        }

        let mut frozen_total = 0.0;
        let mut fusion_total = 0.0;
        for (i, (t, s)) in tasks.iter().zip(&splits).enumerate() {
            let classes = s.vocab.len();
            let [train_c, dev_c, test_c] = [&caches[i][0], &caches[i][1], &caches[i][2]];
            // frozen
            let t0 = Instant::now();
            let mut p = ProbeTrainer::new(
                train_c.base.clone(),
                &s.train.1,
                classes,
                &lorafuse::train::probe::default_config(&cfg),
                &engine.device,
            )?;
            while block_on(p.step())?.is_some() {}
            let probe = p.finish();
            let frozen_secs = t0.elapsed().as_secs_f64();
            let frozen = MethodScores {
                test: eval(
                    &probs_of(probe.forward(test_c.base.clone(), false))?,
                    &s.test.1,
                    classes,
                ),
                dev: eval(
                    &probs_of(probe.forward(dev_c.base.clone(), false))?,
                    &s.dev.1,
                    classes,
                ),
            };
            // lora: the task's own head on its own adapter's cached vectors
            let own = |c: &FusionCache| {
                c.adapters
                    .clone()
                    .slice([0..c.len(), i..i + 1, 0..d])
                    .squeeze_dim::<2>(1)
            };
            let head = &models[i].head;
            let lora_scores = MethodScores {
                test: eval(
                    &probs_of(head.forward(own(test_c), false))?,
                    &s.test.1,
                    classes,
                ),
                dev: eval(
                    &probs_of(head.forward(own(dev_c), false))?,
                    &s.dev.1,
                    classes,
                ),
            };
            // hybrid
            let t0 = Instant::now();
            let fusion_cfg = FusionConfig::new(d, tasks.len(), classes).with_heads(a.fusion_heads);
            let fusion = train_fusion(
                train_c.clone(),
                &s.train.1,
                &fusion_cfg,
                &fcfg,
                &engine.device,
            )?;
            let fusion_secs = t0.elapsed().as_secs_f64();
            let dev_set = (dev_c, s.dev.1.as_slice());
            let test_set = (test_c, s.test.1.as_slice());
            let (hybrid, att) = score_fusion(&fusion, dev_set, test_set, classes)?;
            // Optional grid over fusion settings, selected on dev.
            let mut grid = Vec::new();
            let mut selected: Option<(String, MethodScores)> = None;
            if a.fusion_grid {
                for lr in [3e-4, 1e-3, 3e-3] {
                    for epochs in [10, 30] {
                        for adapter_dropout in [0.0, 0.5] {
                            let dropout = 0.1;
                            let gcfg = TrainConfig {
                                head_lr: lr,
                                epochs,
                                ..stage2::default_config(&cfg)
                            };
                            let fc = FusionConfig::new(d, tasks.len(), classes)
                                .with_heads(a.fusion_heads)
                                .with_dropout(dropout)
                                .with_adapter_dropout(adapter_dropout);
                            let f = train_fusion(
                                train_c.clone(),
                                &s.train.1,
                                &fc,
                                &gcfg,
                                &engine.device,
                            )?;
                            let (m, _) = score_fusion(&f, dev_set, test_set, classes)?;
                            let name = format!(
                                "lr {lr:e}, {epochs} epochs, adapter dropout {adapter_dropout}"
                            );
                            if selected
                                .as_ref()
                                .is_none_or(|(_, best)| m.dev.accuracy > best.dev.accuracy)
                            {
                                selected = Some((name.clone(), m.clone()));
                            }
                            grid.push((name, m.dev, m.test));
                        }
                    }
                }
                if let Some((name, m)) = &selected {
                    eprintln!(
                        "seed {seed} {:>10}: dev-selected fusion ({name}): test {:.4}, dev {:.4}",
                        t.name, m.test.accuracy, m.dev.accuracy
                    );
                }
            }
            // Optional ablation: the same fusion without the base branch (zero base vectors).
            let mut no_base = None;
            if a.fusion_no_base {
                let zero = |c: &FusionCache| FusionCache {
                    base: c.base.zeros_like(),
                    adapters: c.adapters.clone(),
                };
                let (tr0, dev0, test0) = (zero(train_c), zero(dev_c), zero(test_c));
                let f = train_fusion(tr0, &s.train.1, &fusion_cfg, &fcfg, &engine.device)?;
                let (m, _) = score_fusion(&f, (&dev0, &s.dev.1), (&test0, &s.test.1), classes)?;
                eprintln!(
                    "seed {seed} {:>10}: fusion without base branch: test {:.4}, dev {:.4}",
                    t.name, m.test.accuracy, m.dev.accuracy
                );
                no_base = Some(m);
            }
            // Optional: the fusion trained on cross-fitted own-adapter vectors.
            let mut crossfit = None;
            let mut crossfit_secs = 0.0;
            let mut crossfit_att = Vec::new();
            if a.fusion_crossfit {
                let t0 = Instant::now();
                let cf = block_on(crossfit_cache(
                    &engine.encoder,
                    &engine.tokenizer,
                    &s.train.0,
                    &s.train.1,
                    classes,
                    i,
                    &lora,
                    &cfg,
                    train_c,
                    &engine.device,
                ))?;
                let f = train_fusion(cf, &s.train.1, &fusion_cfg, &fcfg, &engine.device)?;
                crossfit_secs = t0.elapsed().as_secs_f64();
                let (m, att) = score_fusion(&f, dev_set, test_set, classes)?;
                crossfit_att = att;
                eprintln!(
                    "seed {seed} {:>10}: cross-fit fusion: test {:.4}, dev {:.4}, attention {:?} ({crossfit_secs:.1} s)",
                    t.name, m.test.accuracy, m.dev.accuracy, crossfit_att
                );
                crossfit = Some(m);
            }
            // Optional: this task's head of the shared fusion.
            let mut shared = None;
            let mut shared_att = Vec::new();
            if let Some(f) = shared_layers.get(i) {
                let (m, att) = score_fusion(f, dev_set, test_set, classes)?;
                shared_att = att;
                eprintln!(
                    "seed {seed} {:>10}: shared fusion: test {:.4}, dev {:.4}, attention {:?}",
                    t.name, m.test.accuracy, m.dev.accuracy, shared_att
                );
                shared = Some(m);
            }
            eprintln!(
                "seed {seed} {:>10}: frozen {:.4}  lora {:.4}  hybrid {:.4}  (test accuracy; dev {:.4} / {:.4} / {:.4})",
                t.name,
                frozen.test.accuracy,
                lora_scores.test.accuracy,
                hybrid.test.accuracy,
                frozen.dev.accuracy,
                lora_scores.dev.accuracy,
                hybrid.dev.accuracy
            );
            frozen_total += frozen_secs;
            fusion_total += fusion_secs;
            results.push(TaskSeedResult {
                task: t.name.clone(),
                seed,
                train_rows: s.train.0.len(),
                dev_rows: s.dev.0.len(),
                test_rows: s.test.0.len(),
                frozen,
                lora: lora_scores,
                hybrid,
                hybrid_selected: selected.as_ref().map(|(_, m)| m.clone()),
                hybrid_selected_settings: selected.map(|(n, _)| n),
                fusion_grid: grid,
                hybrid_crossfit: crossfit,
                crossfit_seconds: crossfit_secs,
                crossfit_attention_on_test: crossfit_att,
                hybrid_shared: shared,
                hybrid_no_base: no_base,
                shared_attention_on_test: shared_att,
                stage1_seconds: stage1_secs[i],
                frozen_seconds: frozen_secs,
                fusion_seconds: fusion_secs,
                mean_attention_on_test: att,
            });
            if i == 0 {
                // Multi-task prediction cost, measured: encoder passes per text with every task fused.
                let sample: Vec<&str> = s.test.0.iter().take(16).map(String::as_str).collect();
                let labels: Vec<Vec<String>> =
                    splits.iter().map(|s| s.vocab.names().to_vec()).collect();
                let parts: Vec<TaskParts> = tasks
                    .iter()
                    .enumerate()
                    .map(|(j, t)| TaskParts {
                        name: &t.name,
                        labels: &labels[j],
                        adapter: &models[j].adapter,
                        head: &models[j].head,
                        fusion: if j == 0 { Some(&fusion) } else { None },
                    })
                    .collect();
                passes_per_text = block_on(predict_all(
                    &engine.encoder,
                    &engine.tokenizer,
                    &parts,
                    &sample,
                    &engine.device,
                ))?
                .encoder_passes_per_text;
            }
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

    // Report.
    let metric_name = |task: &str| if task == "cola" { "MCC" } else { "accuracy" };
    let pick = |m: &Metrics, task: &str| if task == "cola" { m.mcc } else { m.accuracy };
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        (mean, sd)
    };
    println!();
    println!("| task | metric | frozen | lora | hybrid | frozen F1 | lora F1 | hybrid F1 |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut avg: BTreeMap<&str, Vec<Vec<f64>>> = BTreeMap::new();
    for t in &tasks {
        let rs: Vec<&TaskSeedResult> = results.iter().filter(|r| r.task == t.name).collect();
        let mut cells = Vec::new();
        for (key, get) in [
            (
                "frozen",
                (|r: &TaskSeedResult| r.frozen.test.clone()) as fn(&TaskSeedResult) -> Metrics,
            ),
            ("lora", |r| r.lora.test.clone()),
            ("hybrid", |r| r.hybrid.test.clone()),
        ] {
            let main: Vec<f64> = rs.iter().map(|r| pick(&get(r), &t.name)).collect();
            let f1: Vec<f64> = rs.iter().map(|r| get(r).macro_f1).collect();
            let e = avg
                .entry(key)
                .or_insert_with(|| vec![vec![0.0; a.seeds.len()], vec![0.0; a.seeds.len()]]);
            for (j, (m, f)) in main.iter().zip(&f1).enumerate() {
                e[0][j] += m / tasks.len() as f64;
                e[1][j] += f / tasks.len() as f64;
            }
            cells.push((stats(&main), stats(&f1)));
        }
        let f = |(m, s): (f64, f64)| format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            metric_name(&t.name),
            f(cells[0].0),
            f(cells[1].0),
            f(cells[2].0),
            f(cells[0].1),
            f(cells[1].1),
            f(cells[2].1)
        );
    }
    let f = |v: &Vec<f64>| {
        let (m, s) = stats(v);
        format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
    };
    // Extra hybrid variants: one row per task and their average, in the hybrid column.
    let extra_rows = |label: &str, get: fn(&TaskSeedResult) -> Option<&MethodScores>| {
        let mut all = vec![0.0; a.seeds.len()];
        for t in &tasks {
            let v: Vec<f64> = results
                .iter()
                .filter(|r| r.task == t.name)
                .filter_map(|r| get(r).map(|m| pick(&m.test, &t.name)))
                .collect();
            for (j, x) in v.iter().enumerate() {
                all[j] += x / tasks.len() as f64;
            }
            println!(
                "| {} ({label}) | {} | | | {} | | | |",
                t.name,
                metric_name(&t.name),
                f(&v)
            );
        }
        println!("| **average** ({label}) | | | | {} | | | |", f(&all));
    };
    if a.fusion_grid {
        extra_rows("hybrid, fusion settings selected on dev", |r| {
            r.hybrid_selected.as_ref()
        });
    }
    if a.fusion_crossfit {
        extra_rows("hybrid, cross-fit", |r| r.hybrid_crossfit.as_ref());
    }
    if a.fusion_no_base {
        extra_rows("hybrid, no base branch", |r| r.hybrid_no_base.as_ref());
    }
    if a.fusion_shared {
        extra_rows("hybrid, one shared fusion", |r| r.hybrid_shared.as_ref());
    }
    println!(
        "| **average** | | {} | {} | {} | {} | {} | {} |",
        f(&avg["frozen"][0]),
        f(&avg["lora"][0]),
        f(&avg["hybrid"][0]),
        f(&avg["frozen"][1]),
        f(&avg["lora"][1]),
        f(&avg["hybrid"][1])
    );
    println!(
        "\n(mean ± sample std over seeds {:?}, in %; macro-F1 columns are F1 for every task.)",
        a.seeds
    );

    println!(
        "\n| seed | stage 1 (s) | caching (s) | frozen probe (s) | fusion (s) | fusion share of training |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for t in &times {
        let total = t.training_total();
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} % |",
            t.seed,
            t.stage1_seconds,
            t.caching_seconds,
            t.frozen_seconds,
            t.fusion_seconds,
            100.0 * t.fusion_seconds / total
        );
    }
    if a.fusion_shared {
        for t in &times {
            println!(
                "\nSeed {}: the one shared fusion trained in {:.1} s ({:.2} % of the training above).",
                t.seed,
                t.shared_fusion_seconds,
                100.0 * t.shared_fusion_seconds / t.training_total()
            );
        }
    }
    println!("\nStage 1 per task (s, mean over seeds):");
    for t in &tasks {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.task == t.name)
            .map(|r| r.stage1_seconds)
            .collect();
        println!("- {}: {:.1}", t.name, stats(&v).0);
    }
    println!(
        "\nMulti-task prediction, {} tasks: {:.2} encoder passes per text (K + 1 = {}).",
        tasks.len(),
        passes_per_text,
        tasks.len() + 1
    );
    println!(
        "Total wall time: {:.1} min.",
        wall.elapsed().as_secs_f64() / 60.0
    );

    if let Some(p) = &a.out {
        let json = serde_json::json!({
            "args": {"tasks": a.tasks, "train_per_task": a.train_per_task, "test_per_task": a.test_per_task, "seeds": a.seeds},
            "lora": lora, "train": base_cfg,
            "overlap_removed": tasks.iter().map(|t| (t.name.clone(), t.removed)).collect::<BTreeMap<_, _>>(),
            "results": results, "times": times, "encoder_passes_per_text": passes_per_text,
            "wall_seconds": wall.elapsed().as_secs_f64(),
        });
        std::fs::write(p, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
