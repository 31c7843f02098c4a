//! `lorafuse bench-transfer` (docs/design.md §1.7): does a small target task gain from the adapters
//! of larger, related source tasks? The setting where AdapterFusion gained (small targets, related
//! sources), run with the product's own code: stage 1, the probe, the fusion job and the gate of
//! [`lorafuse::experiment`].
//!
//! Protocol. Every target's first `--test-per-task` test rows are its test split, and every train
//! text (of any source or target) whose normalised form is among them is removed first. The source
//! adapters are trained once (seed `--source-seed`, `--source-epochs`), as published adapters would
//! be; then per target, seed and N: a class-stratified subset of N rows (or, with
//! `--k-per-class`, K rows of every class; `--rows-out` writes them for `scripts/bench-setfit`), the
//! held-out policy's share of it as dev (10 %), the target's own LoRA as the page trains it (stage
//! 1 from the automatic start among the sources, `lorafuse::experiment::start`; `lora-fresh`: from a
//! fresh adapter), sequential transfer (the `--sequential-from` source's adapter trained further on
//! the target, fresh head), and every method scored on the same test rows: `frozen`, `lora`,
//! `lora-fresh`, `lora-seq-<source>`,
//! `source-head-<source>` (the source's own head, where its label names are the target's),
//! `source-probe-<source>` (a fresh head on the source-adapted encoder's vectors), `hybrid` (the
//! default fusion over the sources and the own adapter, its epoch and gate decided by
//! cross-validation over the target's rows, `--gate-folds`; `hybrid-split-gate`: on dev) and one
//! `hybrid-<variant>` per `--fusion-variants` (same procedure), plus `hybrid-<variant>-last` (the
//! last epoch, no gate), and `answer` (what the page answers with, the default variant's gate).
//! `--setfit` adds SetFit's results on the written rows as `setfit`. What it leaves out: sources
//! retrained per seed (their seed is fixed).

mod report;
mod stage1;

use stage1::train_sources;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use clap::Args;
use serde::Serialize;

use lorafuse::data::{self, Example};
use lorafuse::engine::Engine;
use lorafuse::experiment::compare::probability_rows;
use lorafuse::experiment::fusion_job::{FusionSpec, train_layer};
use lorafuse::experiment::stage1::Start;
use lorafuse::experiment::{
    FusionTarget, Labelled, MethodResult, PreparedTask, fusion_train_config, train_probe,
};
use lorafuse::fusion::FusionConfig;
use lorafuse::fusion::files::GateCheck;
use lorafuse::fusion::module::FusionOptions;
use lorafuse::host::block_on;
use lorafuse::infer::Answerer;
use lorafuse::lora::LoraAdapter;
use lorafuse::model::ClassifierHead;
use lorafuse::train::TaskModel;
use lorafuse::train::stage2::FusionCache;
use lorafuse::workspace::task_files::StartCheck;

use crate::bench::read_csv;

#[derive(Args)]
pub struct TransferArgs {
    /// Folder holding the task folders (`<name>/{train,test}.csv`).
    #[arg(long, default_value = "../shared/datasets")]
    data_dir: PathBuf,
    /// Source tasks and their training rows, `name:rows`, comma-separated.
    #[arg(
        long,
        default_value = "sst2:2000,subj:500,trec:500,ag_news:500",
        value_delimiter = ','
    )]
    sources: Vec<String>,
    /// Target tasks.
    #[arg(long, default_value = "cr,mr,mpqa", value_delimiter = ',')]
    targets: Vec<String>,
    /// Training rows per target (class-stratified subsets; the held-out share of each is its dev).
    #[arg(long, default_value = "16,32,64,128,256", value_delimiter = ',')]
    target_n: Vec<usize>,
    /// Few-shot sizes instead of `--target-n`: exactly K rows of every class per target and seed
    /// (`data::per_class_subset`; the held-out share of them is the dev rows, as on the page).
    #[arg(long, value_delimiter = ',')]
    k_per_class: Vec<usize>,
    /// Write every target's test rows (`DIR/<target>/test.csv`) and every subset drawn
    /// (`DIR/<target>/k<K>-seed<S>.csv`, or `n<N>-seed<S>.csv`), CSV `text,label`, so other tools
    /// (scripts/bench-setfit) train and test on exactly these rows.
    #[arg(long)]
    rows_out: Option<PathBuf>,
    /// Results of scripts/bench-setfit on the `--rows-out` rows (its `--json`): reported as the
    /// method `setfit` beside the others, for the targets, sizes and seeds of this run.
    #[arg(long)]
    setfit: Option<PathBuf>,
    /// Seeds of the targets' subsets and training.
    #[arg(long, default_value = "1,2,3,4,5", value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Test rows per target (the first M rows of its test.csv).
    #[arg(long, default_value_t = 500)]
    test_per_task: usize,
    /// Write every number as JSON here (top-level `rows`: target, n, seed, method, accuracy,
    /// macro_f1).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the accuracy-vs-N plot here (SVG; PNG beside it where a font is found).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The targets the plot averages over (default: every target; e.g. leave out a control).
    #[arg(long, value_delimiter = ',')]
    plot_targets: Vec<String>,
    #[command(flatten)]
    training: crate::args::TrainingArgs,
    /// Epochs of the source adapters (trained once).
    #[arg(long, default_value_t = 3)]
    source_epochs: usize,
    /// Seed of the source adapters.
    #[arg(long, default_value_t = 1)]
    source_seed: u64,
    /// The source whose adapter sequential transfer starts from (default: the first source).
    #[arg(long)]
    sequential_from: Option<String>,
    /// Fusion variants reported besides the default `hybrid`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "paper,residual-others,adapterfusion,scalar"
    )]
    fusion_variants: Vec<String>,
    /// Keep the trained source adapters, each target run's own and sequential LoRA and their
    /// vectors here, and reuse them (the fusion variants then rerun in minutes).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Fusion epochs (default 30).
    #[arg(long)]
    fusion_epochs: Option<usize>,
    #[command(flatten)]
    patience: crate::args::PatienceArgs,
    /// Fusion learning rate (default: the head learning rate).
    #[arg(long)]
    fusion_lr: Option<f64>,
    /// Decide the fusion's epoch and the gate by cross-validation over this many folds of the
    /// target's training rows (docs/design.md §1.6) instead of on its few held-out rows; 0: the
    /// held-out rows. With folds the default variant is also reported with the held-out gate, as
    /// `hybrid-split-gate`.
    #[arg(long, default_value_t = lorafuse::experiment::gate::DEFAULT_GATE_FOLDS)]
    gate_folds: usize,
}

/// One result row (the interface: fractions in 0..1).
#[derive(Serialize, Clone)]
pub struct Row {
    pub target: String,
    /// Training rows (dev included).
    pub n: usize,
    /// Rows per class, for `--k-per-class` runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    pub seed: u64,
    pub method: String,
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// The calibration of one method's raw test probabilities (ECE over 10 bins, Brier, NLL).
#[derive(Serialize)]
struct CalRow {
    target: String,
    n: usize,
    seed: u64,
    method: String,
    ece: f64,
    brier: f64,
    nll: f64,
}

/// What the gate of one fused run saw.
#[derive(Serialize)]
struct GateRow {
    target: String,
    n: usize,
    seed: u64,
    method: String,
    use_hybrid: bool,
    gate: Option<GateCheck>,
    /// Epochs the fusion trained (fewer than set when early stopping ended it).
    epochs_trained: usize,
    /// Test accuracy of the kept layer whatever the gate chose (to weigh other gates).
    selected_test_accuracy: f64,
}

/// Where the own adapter of one target, seed and N started (the automatic start's record).
#[derive(Serialize)]
struct StartRow {
    target: String,
    n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<usize>,
    seed: u64,
    start: StartCheck,
}

/// Wall times of one target, seed and N.
#[derive(Serialize)]
struct Times {
    target: String,
    n: usize,
    seed: u64,
    stage1_seconds: f64,
    sequential_seconds: f64,
    /// The default fusion, its epoch selection and gate (with `--gate-folds`, the folds' stage 1
    /// included).
    fusion_seconds: f64,
    /// Of which the cross-validated gate's folds (0 without `--gate-folds`).
    gate_cv_seconds: f64,
}

/// A source: its name, adapter and head, label names.
struct Source {
    name: String,
    model: TaskModel,
    labels: Vec<String>,
}

fn parse_sources(a: &TransferArgs) -> Result<Vec<(String, usize)>> {
    a.sources
        .iter()
        .map(|s| {
            let (name, n) = s
                .split_once(':')
                .with_context(|| format!("--sources entry {s:?} is not name:rows"))?;
            let n: usize = n
                .parse()
                .with_context(|| format!("--sources entry {s:?}"))?;
            Ok((name.to_string(), n))
        })
        .collect()
}

pub fn run(engine: &Engine, a: TransferArgs) -> Result<()> {
    let wall = Instant::now();
    let sources = parse_sources(&a)?;
    if sources.is_empty() || a.targets.is_empty() || a.target_n.is_empty() || a.seeds.is_empty() {
        bail!("bench-transfer needs sources, targets, --target-n and seeds");
    }
    if let Some((t, _)) = sources.iter().find(|(s, _)| a.targets.contains(s)) {
        bail!(
            "{t} is both a source and a target: its source adapter would have seen its training rows"
        );
    }
    // The sizes run: (K per class, or none for N rows).
    let sizes: Vec<Size> = match a.k_per_class.is_empty() {
        true => a.target_n.iter().map(|&n| Size::Rows(n)).collect(),
        false => a.k_per_class.iter().map(|&k| Size::PerClass(k)).collect(),
    };
    for v in &a.fusion_variants {
        if FusionOptions::named(v).is_none() {
            bail!(
                "unknown fusion variant {v:?}; one of {}",
                FusionOptions::NAMES.join(", ")
            );
        }
    }
    let seq_from = a.sequential_from.clone().unwrap_or(sources[0].0.clone());
    let seq_idx = sources
        .iter()
        .position(|(n, _)| *n == seq_from)
        .with_context(|| format!("--sequential-from {seq_from:?} is not a source"))?;
    // Data, with every target test text removed from every training set.
    let mut tests = Vec::new();
    for t in &a.targets {
        let mut test = read_csv(&a.data_dir.join(t).join("test.csv"))?;
        test.truncate(a.test_per_task);
        tests.push(test);
    }
    let forbidden: HashSet<String> = tests
        .iter()
        .flatten()
        .map(|e| data::normalise_for_overlap(&e.text))
        .collect();
    let train_of = |name: &str| -> Result<Vec<Example>> {
        let rows = read_csv(&a.data_dir.join(name).join("train.csv"))?;
        let (kept, removed) = data::remove_overlap(&rows, &forbidden);
        eprintln!("{name}: {removed} train rows removed (in a target's test split)");
        Ok(kept)
    };
    let lora = a.training.lora();
    lora.validate()?;
    let srcs = train_sources(engine, &a, &sources, &train_of, &lora)?;
    let mut rows = Vec::new();
    let mut gates = Vec::new();
    let mut times = Vec::new();
    let mut calibration = Vec::new();
    let mut starts = Vec::new();
    for (ti, target) in a.targets.iter().enumerate() {
        let train = train_of(target)?;
        let test_texts: Vec<String> = tests[ti].iter().map(|e| e.text.clone()).collect();
        let src_adapters: Vec<&LoraAdapter> = srcs.iter().map(|s| &s.model.adapter).collect();
        let e = engine;
        let test_src = block_on(FusionCache::build(
            &e.encoder,
            &e.tokenizer,
            &src_adapters,
            &test_texts,
            &e.device,
        ))?;
        if let Some(dir) = &a.rows_out {
            write_rows(&dir.join(target).join("test.csv"), &tests[ti])?;
        }
        for &seed in &a.seeds {
            for &size in &sizes {
                let subset = match size {
                    Size::Rows(n) => data::stratified_subset(&train, n, seed),
                    Size::PerClass(k) => data::per_class_subset(&train, k, seed),
                };
                if let Some(dir) = &a.rows_out {
                    write_rows(&dir.join(target).join(size.file_name(seed)), &subset)?;
                }
                let ctx = RunCtx {
                    engine,
                    a: &a,
                    target,
                    n: subset.len(),
                    k: size.per_class(),
                    seed,
                    srcs: &srcs,
                    seq_idx,
                    test: &tests[ti],
                    test_src: &test_src,
                };
                let r = ctx.run(&subset, &lora)?;
                rows.extend(r.0);
                gates.extend(r.1);
                times.push(r.2);
                calibration.extend(r.3);
                starts.push(r.4);
            }
        }
    }
    if let Some(p) = &a.setfit {
        let theirs = read_setfit(p)?;
        // SetFit's result for every (target, K, seed) run here, as the method `setfit`.
        let ours: Vec<Row> = rows
            .iter()
            .filter(|r| r.method == "frozen")
            .cloned()
            .collect();
        let mut missing = 0;
        for r in ours {
            match theirs.get(&(r.target.clone(), r.k.unwrap_or(r.n), r.seed)) {
                Some(&accuracy) => rows.push(Row {
                    method: "setfit".into(),
                    accuracy,
                    macro_f1: f64::NAN,
                    ..r
                }),
                None => missing += 1,
            }
        }
        if missing > 0 {
            eprintln!(
                "{}: no SetFit result for {missing} of the runs",
                p.display()
            );
        }
    }
    let secs = wall.elapsed().as_secs_f64();
    report::print(&rows, &times, secs);
    if let Some(p) = &a.plot {
        let drawn: Vec<Row> = rows
            .iter()
            .filter(|r| a.plot_targets.is_empty() || a.plot_targets.contains(&r.target))
            .cloned()
            .collect();
        anyhow::ensure!(
            !drawn.is_empty(),
            "--plot-targets {:?}: none of them was run",
            a.plot_targets
        );
        report::plot(&drawn, p, &a.plot_targets)?;
    }
    if let Some(p) = &a.out {
        let json = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "sources": a.sources,
            "targets": a.targets,
            "target_n": a.target_n,
            "k_per_class": a.k_per_class,
            "seeds": a.seeds,
            "test_per_task": a.test_per_task,
            "source_epochs": a.source_epochs,
            "source_seed": a.source_seed,
            "sequential_from": seq_from,
            "default_fusion": FusionSpec::DEFAULT_VARIANT,
            "lora": lora,
            "train": a.training.train(1),
            "rows": rows,
            "gates": gates,
            "calibration": calibration,
            "starts": starts,
            "times": times,
            "wall_seconds": secs,
        });
        std::fs::write(p, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// A target subset's size: N rows (class-stratified), or K rows of every class.
#[derive(Clone, Copy)]
enum Size {
    Rows(usize),
    PerClass(usize),
}

impl Size {
    fn per_class(self) -> Option<usize> {
        match self {
            Self::Rows(_) => None,
            Self::PerClass(k) => Some(k),
        }
    }

    /// The file `--rows-out` writes the subset of seed `seed` to.
    fn file_name(self, seed: u64) -> String {
        match self {
            Self::Rows(n) => format!("n{n}-seed{seed}.csv"),
            Self::PerClass(k) => format!("k{k}-seed{seed}.csv"),
        }
    }
}

/// Writes `rows` as CSV `text,label` (header, quoted as needed) to `path`, creating its folder.
fn write_rows(path: &std::path::Path, rows: &[Example]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    w.write_record(["text", "label"])?;
    for e in rows {
        w.write_record([e.text.as_str(), e.label.as_str()])?;
    }
    w.flush()?;
    Ok(())
}

/// scripts/bench-setfit's `--json`: test accuracy by (target, K, seed).
fn read_setfit(
    path: &std::path::Path,
) -> Result<std::collections::HashMap<(String, usize, u64), f64>> {
    #[derive(serde::Deserialize)]
    struct Test {
        accuracy: f64,
    }
    #[derive(serde::Deserialize)]
    struct Run {
        target: String,
        k: usize,
        seed: u64,
        test: Test,
    }
    #[derive(serde::Deserialize)]
    struct File {
        results: Vec<Run>,
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let f: File = serde_json::from_slice(&bytes).with_context(|| format!("{}", path.display()))?;
    Ok(f.results
        .into_iter()
        .map(|r| ((r.target, r.k, r.seed), r.test.accuracy))
        .collect())
}

/// One target, seed and N.
struct RunCtx<'a> {
    engine: &'a Engine,
    a: &'a TransferArgs,
    target: &'a str,
    n: usize,
    /// Rows per class, for `--k-per-class` runs.
    k: Option<usize>,
    seed: u64,
    srcs: &'a [Source],
    seq_idx: usize,
    /// The target's test rows.
    test: &'a [Example],
    /// Test vectors of the base and every source adapter.
    test_src: &'a FusionCache,
}

impl RunCtx<'_> {
    fn row(&self, method: &str, r: &MethodResult) -> Row {
        Row {
            target: self.target.to_string(),
            n: self.n,
            k: self.k,
            seed: self.seed,
            method: method.to_string(),
            accuracy: r.metrics.accuracy,
            macro_f1: r.metrics.macro_f1,
        }
    }

    fn run(
        &self,
        subset: &[Example],
        lora: &lorafuse::lora::LoraConfig,
    ) -> Result<(Vec<Row>, Vec<GateRow>, Times, Vec<CalRow>, StartRow)> {
        let e = self.engine;
        let (target, n, seed) = (self.target, self.n, self.seed);
        let cfg = self.a.training.train(seed);
        let task = PreparedTask::new(subset, &[], &self.a.training.holdout(), seed)
            .with_context(|| format!("target {target}, N = {n}"))?;
        let classes = task.vocab.len();
        // Test labels in this subset's class order (every test row's class must be known).
        let test = Labelled::known(self.test, &task.vocab).0;
        anyhow::ensure!(
            test.len() == self.test.len(),
            "the subset of {target} lacks a class"
        );
        let score = |method: &str, probs: Vec<Vec<f32>>| {
            MethodResult::new(method, probs, &test.labels, classes)
        };
        let st = self.stage1(&task, &test, lora, &cfg)?;
        let kept = st.dir.clone();
        let (train_c, dev_c, test_c) = (st.train, st.dev, st.test);
        let (own_test, seq_test) = (st.own_test, st.seq_test);
        let s = self.srcs.len();
        let src = &self.srcs[self.seq_idx];
        let own = &st.own;
        let seq = &st.seq;
        let mut rows = Vec::new();
        let mut results = Vec::new();
        let probs =
            |h: &ClassifierHead, v: Tensor<2>| block_on(probability_rows(h.forward(v, false)));
        // frozen, lora, sequential
        let probe = block_on(train_probe(
            train_c.base.clone(),
            &task.train.labels,
            classes,
            &cfg,
            &e.device,
        ))?;
        results.push((
            "frozen".to_string(),
            score("frozen", probs(&probe, test_c.base.clone())?),
        ));
        let lora_r = score("lora", probs(&own.head, own_test)?);
        results.push(("lora".into(), lora_r.clone()));
        // The own LoRA from a fresh adapter (the same as `lora` where the automatic start chose
        // none).
        let fresh_r = match (&st.fresh, &st.fresh_test) {
            (Some(f), Some(t)) => score("lora-fresh", probs(&f.head, t.clone())?),
            _ => lora_r.clone(),
        };
        results.push(("lora-fresh".into(), fresh_r));
        let name = format!("lora-seq-{}", src.name);
        results.push((name.clone(), score(&name, probs(&seq.head, seq_test)?)));
        // the sources' heads and fresh heads on the sources' vectors
        for (j, sr) in self.srcs.iter().enumerate() {
            let [nt, _, d] = test_c.adapters.dims();
            let v = |c: &FusionCache| {
                let m = c.adapters.dims()[0];
                c.adapters
                    .clone()
                    .slice([0..m, j..j + 1, 0..d])
                    .reshape([m, d])
            };
            let _ = nt;
            if let Some(order) = label_map(&sr.labels, task.vocab.names()) {
                let p = probs(&sr.model.head, v(&test_c))?;
                let p = p
                    .into_iter()
                    .map(|r| order.iter().map(|&k| r[k]).collect())
                    .collect();
                let name = format!("source-head-{}", sr.name);
                results.push((name.clone(), score(&name, p)));
            }
            let head = block_on(train_probe(
                v(&train_c),
                &task.train.labels,
                classes,
                &cfg,
                &e.device,
            ))?;
            let name = format!("source-probe-{}", sr.name);
            results.push((name.clone(), score(&name, probs(&head, v(&test_c))?)));
        }
        // the fusion: default and variants
        let fusion_cfg = fusion_train_config(&cfg, self.a.fusion_epochs, self.a.fusion_lr);
        let tgt = FusionTarget {
            name: target.to_string(),
            labels: task.vocab.names().to_vec(),
            cache: train_c,
            y: task.train.labels.clone(),
            cfg: fusion_cfg,
            held_out: Some((dev_c, task.held_out.labels.clone())),
            own: Some((s, own.head.clone())),
            cv: None,
        };
        // The cross-validated gate's folds (shared by every variant), timed with the default.
        let t0 = Instant::now();
        let (tgt_cv, fold_secs) = match self.a.gate_folds {
            0 => (None, 0.0),
            k => {
                // The fold adapters start where the own adapter started.
                let chosen = st.start.from.as_deref();
                let from = match self.srcs.iter().find(|s| Some(s.name.as_str()) == chosen) {
                    Some(s) => Start::From(&s.model.adapter),
                    None => Start::Fresh(lora),
                };
                let (models, secs) = self.cv_fold_models(kept.as_deref(), &task, from, &cfg, k)?;
                let t = tgt.clone();
                let t = block_on(t.with_cv_fold_models(e, &task.train, k, &models))?;
                (Some(t), secs)
            }
        };
        // Training the fold models (as recorded, when read from `--cache`) and encoding with them.
        let cv_secs = fold_secs + t0.elapsed().as_secs_f64();
        let mut gates = Vec::new();
        let mut answers = Vec::new();
        let mut fusion_secs = 0.0;
        // (reported name, variant, decided by cross-validation)
        let mut jobs = vec![(
            "hybrid".to_string(),
            FusionSpec::DEFAULT_VARIANT.to_string(),
            tgt_cv.is_some(),
        )];
        if tgt_cv.is_some() {
            let v = FusionSpec::DEFAULT_VARIANT.to_string();
            jobs.push(("hybrid-split-gate".into(), v, false));
        }
        for v in &self.a.fusion_variants {
            if v != FusionSpec::DEFAULT_VARIANT {
                jobs.push((format!("hybrid-{v}"), v.clone(), tgt_cv.is_some()));
            }
        }
        for (vi, (name, v, by_cv)) in jobs.into_iter().enumerate() {
            let options = FusionOptions::named(&v).unwrap_or_default();
            let config = FusionConfig::new(e.encoder.config.hidden_size, s + 1, classes)
                .with_options(options);
            let t0 = Instant::now();
            let t = match (by_cv, &tgt_cv) {
                (true, Some(c)) => c,
                _ => &tgt,
            };
            let patience = self.a.patience.for_options(&options);
            let (tl, _) = block_on(train_layer(t, &config, patience, &e.device, &mut ()))?;
            let secs = t0.elapsed().as_secs_f64();
            if vi == 0 {
                fusion_secs = secs + cv_secs;
            }
            let out = |f: &lorafuse::fusion::AttentionFusion| {
                let o = f.forward(test_c.base.clone(), test_c.adapters.clone(), None, false);
                block_on(probability_rows(o.logits))
            };
            let use_hybrid = tl.use_hybrid(true);
            let selected = score(&name, out(&tl.layer)?);
            let selected_test_accuracy = selected.metrics.accuracy;
            // The product's answer (the default variant's gate): the method `answer`.
            if vi == 0 {
                let answered_by = tl.answer(true);
                let r = match (answered_by, tl.heads.get(answered_by)) {
                    (Answerer::Hybrid, _) => score("answer", out(&tl.layer)?),
                    (Answerer::Frozen, Some(h)) => score("answer", probs(h, test_c.base.clone())?),
                    (Answerer::Source, Some(h)) => {
                        let slot = tl.gate.and_then(|g| g.source).and_then(|c| c.best);
                        let v = slot.and_then(|b| test_c.adapter(b)).ok_or_else(|| {
                            anyhow::anyhow!("the source head's adapter is not among the fused ones")
                        })?;
                        score("answer", probs(h, v)?)
                    }
                    _ => lora_r.clone(),
                };
                answers.push(answered_by);
                results.push(("answer".into(), r));
            }
            let gated = match use_hybrid {
                true => selected,
                false => lora_r.clone(),
            };
            results.push((name.clone(), gated));
            if name != "hybrid-split-gate" {
                let last = format!("hybrid-{v}-last");
                results.push((last.clone(), score(&last, out(&tl.last)?)));
            }
            gates.push(GateRow {
                target: target.to_string(),
                n,
                seed,
                method: name,
                use_hybrid,
                gate: tl.gate,
                epochs_trained: tl.epochs_trained,
                selected_test_accuracy,
            });
        }
        let mut line = format!("{target} N={n} seed {seed}:");
        let mut cal = Vec::new();
        for (m, r) in &results {
            rows.push(self.row(m, r));
            cal.push(CalRow {
                target: target.to_string(),
                n,
                seed,
                method: m.clone(),
                ece: r.calibration.ece,
                brier: r.calibration.brier,
                nll: r.calibration.nll,
            });
            if ["frozen", "lora", "hybrid", "answer"].contains(&m.as_str())
                || m.starts_with("lora-seq")
            {
                line += &format!(" {m} {:.3}", r.metrics.accuracy);
            }
        }
        if let Some(a) = answers.first() {
            line += &format!(" (answer: {})", a.key());
        }
        eprintln!("{line}");
        let times = Times {
            target: target.to_string(),
            n,
            seed,
            stage1_seconds: st.own_seconds,
            sequential_seconds: st.seq_seconds,
            fusion_seconds: fusion_secs,
            gate_cv_seconds: cv_secs,
        };
        let start = StartRow {
            target: target.to_string(),
            n,
            k: self.k,
            seed,
            start: st.start,
        };
        Ok((rows, gates, times, cal, start))
    }
}

/// For each target class (in `target` order), the source class of the same name; `None` unless
/// both have the same label names.
fn label_map(source: &[String], target: &[String]) -> Option<Vec<usize>> {
    if source.len() != target.len() {
        return None;
    }
    target
        .iter()
        .map(|t| source.iter().position(|s| s == t))
        .collect()
}
