//! `bench`'s per-task work on one seed's caches: the fusion targets, the default per-task fusion
//! and the frozen probe trained and every method scored on dev and test through
//! [`lorafuse::experiment::compare`], the shared fusion, and the measured cost of multi-task
//! prediction.

use std::time::Instant;

use anyhow::Result;

use lorafuse::experiment::fusion_job::{FusionSpec, TrainedLayer, train_layers, train_runs};
use lorafuse::experiment::{EvalVectors, FusionTarget, Methods, compare, train_probe};
use lorafuse::fusion::files::GateCheck;
use lorafuse::fusion::module::FusionOptions;
use lorafuse::fusion::{AttentionFusion, FusionConfig};
use lorafuse::host::block_on;
use lorafuse::infer::{Answerer, TaskParts, predict_all};
use lorafuse::train::TrainConfig;
use lorafuse::train::calibration::{choose_temperature, reliability};
use lorafuse::train::stage2::FusionCache;
use lorafuse::train::uncertainty::Paired;

use super::{BenchArgs, MethodScores, SeedCtx, TaskData, TaskSeedResult, variants};
use crate::io::Bars;

/// The fusion layer config of task `i`'s per-task fusion of variant `options`.
pub(super) fn fusion_config(
    ctx: &SeedCtx,
    i: usize,
    heads: usize,
    options: FusionOptions,
) -> FusionConfig {
    let d = ctx.engine.encoder.config.hidden_size;
    FusionConfig::new(d, ctx.models.len(), ctx.splits[i].task.vocab.len())
        .with_heads(heads)
        .with_options(options)
}

/// Task `i`'s fusion target over `cache` with `cfg`.
pub(super) fn target(
    ctx: &SeedCtx,
    i: usize,
    name: &str,
    cache: FusionCache,
    cfg: &TrainConfig,
) -> FusionTarget {
    let s = &ctx.splits[i];
    FusionTarget {
        name: name.to_string(),
        labels: s.task.vocab.names().to_vec(),
        cache,
        y: s.task.train.labels.clone(),
        cfg: cfg.clone(),
        held_out: Some((ctx.caches[i][1].clone(), s.task.held_out.labels.clone())),
        own: Some((i, ctx.models[i].head.clone())),
        cv: ctx.cv.get(i).and_then(|c| c.0.clone()),
    }
}

/// One fusion variant of task `i`, trained on its training cache: the layer after its last epoch
/// (the paper's procedure), and the product's: the epoch selected on dev, used only when it beats
/// the own LoRA there (else the task predicts with LoRA), with the time it took.
#[derive(serde::Serialize, Clone)]
pub(super) struct VariantResult {
    /// The layer after the last epoch trained (every epoch, unless early stopping ended it).
    pub last: MethodScores,
    /// Epochs trained.
    pub epochs_trained: usize,
    /// The dev-selected layer, or LoRA where the gate chose it.
    pub gated: MethodScores,
    /// Whether the gate chose the hybrid.
    pub use_hybrid: bool,
    /// The model the task answers with ([`GateCheck::answer`]: the own LoRA, the hybrid, or a
    /// fresh head on the frozen base or the best other adapter).
    pub answered_by: Answerer,
    /// Its scores: the product's answer.
    pub answer: MethodScores,
    /// Test accuracy of the dev-selected layer whatever the gate chose (to weigh other gates).
    pub selected_test_accuracy: f64,
    /// What the gate compared.
    pub gate: Option<GateCheck>,
    /// Mean attention on test of the selected layer.
    pub attention_on_test: Vec<f32>,
    /// Training time (s): the joint time of the tasks' runs divided by the tasks.
    pub seconds: f64,
}

/// Trains variant `options` for every task side by side (one run per task, as the page does:
/// [`train_runs`]), task `i` on `trains[i]`, and scores each on dev and test (`loras[i]`: task
/// `i`'s own LoRA scores, which the gated result takes where the gate chose LoRA). The tasks'
/// runs share the time, so each result's `seconds` is the joint training time divided by the
/// tasks.
pub(super) fn train_variant(
    ctx: &SeedCtx,
    names: &[String],
    heads: usize,
    options: FusionOptions,
    trains: Vec<FusionCache>,
    loras: &[MethodScores],
) -> Result<Vec<(VariantResult, AttentionFusion)>> {
    let t0 = Instant::now();
    let targets: Vec<FusionTarget> = trains
        .into_iter()
        .enumerate()
        .map(|(i, train)| target(ctx, i, &names[i], train, &ctx.fusion_cfg))
        .collect();
    let runs: Vec<(&FusionTarget, FusionConfig)> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t, fusion_config(ctx, i, heads, options)))
        .collect();
    let job = names.join(", ");
    let patience = ctx.patience.for_options(&options);
    let device = &ctx.engine.device;
    let (layers, _) = block_on(train_runs(&runs, patience, device, &job, &mut ()))?;
    let seconds = t0.elapsed().as_secs_f64() / targets.len().max(1) as f64;
    let mut out = Vec::with_capacity(layers.len());
    for (i, tl) in layers.into_iter().enumerate() {
        let [_, dev_c, test_c] = &ctx.caches[i];
        let (last, _) = score_fusion(ctx, i, &tl.last, dev_c, test_c, None)?;
        let use_hybrid = tl.use_hybrid(true);
        let t = tl.out_of_fold_temperature();
        let (selected, att) = score_fusion(ctx, i, &tl.layer, dev_c, test_c, t)?;
        let selected_test_accuracy = selected.test.accuracy;
        let answered_by = tl.answer(true);
        let answer = match answered_by {
            Answerer::Lora => loras[i].clone(),
            Answerer::Hybrid => selected.clone(),
            a => score_fresh(ctx, i, &tl, a, dev_c, test_c)?,
        };
        let gated = if use_hybrid {
            selected
        } else {
            loras[i].clone()
        };
        let r = VariantResult {
            last,
            epochs_trained: tl.epochs_trained,
            gated,
            use_hybrid,
            answered_by,
            answer,
            selected_test_accuracy,
            gate: tl.gate,
            attention_on_test: att,
            seconds,
        };
        out.push((r, tl.layer));
    }
    Ok(out)
}

/// Scores `methods` of task `i` on its dev and test caches: per method (in order) its dev and
/// test metrics, and the fusion's mean attention on test. Each method's temperature is chosen on
/// dev, unless `temperature` gives it (the cross-validated gate's, chosen on the training rows).
fn score(
    ctx: &SeedCtx,
    i: usize,
    dev: &FusionCache,
    test: &FusionCache,
    methods: &Methods,
    temperature: Option<f64>,
) -> Result<(Vec<MethodScores>, Vec<f32>)> {
    score_reading(ctx, i, i, dev, test, methods, temperature)
}

/// [`score`], with `methods.lora` reading adapter `own`'s vectors.
fn score_reading(
    ctx: &SeedCtx,
    i: usize,
    own: usize,
    dev: &FusionCache,
    test: &FusionCache,
    methods: &Methods,
    temperature: Option<f64>,
) -> Result<(Vec<MethodScores>, Vec<f32>)> {
    let s = &ctx.splits[i];
    let classes = s.task.vocab.len();
    let d = block_on(compare(
        &EvalVectors::from_cache(dev, own),
        &s.task.held_out.labels,
        classes,
        methods,
    ))?;
    let t = block_on(compare(
        &EvalVectors::from_cache(test, own),
        &s.test.labels,
        classes,
        methods,
    ))?;
    let scores = d
        .results
        .iter()
        .zip(&t.results)
        .map(|(d, t)| {
            let temperature = temperature
                .unwrap_or_else(|| choose_temperature(&d.probabilities, &s.task.held_out.labels));
            let scaled = t.at_temperature(temperature, &s.test.labels);
            MethodScores {
                dev: d.metrics.clone(),
                test: t.metrics.clone(),
                test_accuracy_interval: t.accuracy_interval(),
                temperature,
                test_calibration: t.calibration.clone(),
                test_calibration_scaled: scaled.calibration,
                test_reliability: reliability(&t.probabilities, &s.test.labels),
                test_reliability_scaled: reliability(&scaled.probabilities, &s.test.labels),
                test_predictions: t.predictions(),
            }
        })
        .collect();
    Ok((scores, t.attention.unwrap_or_default()))
}

/// A fusion layer's dev and test scores and its mean attention on test (`temperature`: as in
/// [`score`]).
pub(super) fn score_fusion(
    ctx: &SeedCtx,
    i: usize,
    f: &AttentionFusion,
    dev: &FusionCache,
    test: &FusionCache,
    temperature: Option<f64>,
) -> Result<(MethodScores, Vec<f32>)> {
    let methods = Methods {
        hybrid: Some(f),
        ..Methods::default()
    };
    let (mut scores, att) = score(ctx, i, dev, test, &methods, temperature)?;
    Ok((scores.remove(0), att))
}

/// The dev and test scores of trained layer `tl`'s fresh head `answerer` for task `i`, at the
/// temperature the gate chose for it (as the product predicts with it).
fn score_fresh(
    ctx: &SeedCtx,
    i: usize,
    tl: &TrainedLayer,
    answerer: Answerer,
    dev: &FusionCache,
    test: &FusionCache,
) -> Result<MethodScores> {
    let missing = || anyhow::anyhow!("the {} head was not trained", answerer.key());
    let head = tl.heads.get(answerer).ok_or_else(missing)?;
    let check = tl.gate.and_then(|g| g.source).ok_or_else(missing)?;
    // A fresh head on another adapter's vectors is scored as that adapter's "own" head.
    let (methods, own, temperature) = match answerer {
        Answerer::Frozen => (
            Methods {
                frozen: Some(head),
                ..Methods::default()
            },
            i,
            check.frozen_temperature,
        ),
        _ => (
            Methods {
                lora: Some(head),
                ..Methods::default()
            },
            check.best.ok_or_else(missing)?,
            check.temperature,
        ),
    };
    let (mut scores, _) = score_reading(ctx, i, own, dev, test, &methods, Some(temperature))?;
    Ok(scores.remove(0))
}

/// Task `i`'s baselines: the frozen probe trained on its cache, the probe and the own LoRA
/// scored on dev and test, and the probe's training time.
pub(super) struct Baselines {
    pub frozen: MethodScores,
    pub lora: MethodScores,
    pub frozen_seconds: f64,
}

/// Task `i`'s [`Baselines`].
pub(super) fn baselines(ctx: &SeedCtx, i: usize) -> Result<Baselines> {
    let s = &ctx.splits[i];
    let classes = s.task.vocab.len();
    let [train_c, dev_c, test_c] = &ctx.caches[i];
    let device = &ctx.engine.device;
    let t0 = Instant::now();
    let probe = block_on(train_probe(
        train_c.base.clone(),
        &s.task.train.labels,
        classes,
        &ctx.cfg,
        device,
    ))?;
    let frozen_seconds = t0.elapsed().as_secs_f64();
    let methods = Methods {
        frozen: Some(&probe),
        lora: Some(&ctx.models[i].head),
        hybrid: None,
    };
    let (scores, _) = score(ctx, i, dev_c, test_c, &methods, None)?;
    let [frozen, lora]: [MethodScores; 2] = scores
        .try_into()
        .map_err(|_| anyhow::anyhow!("two methods were scored"))?;
    Ok(Baselines {
        frozen,
        lora,
        frozen_seconds,
    })
}

/// Task `i`'s result: its baselines `b` and the default fusion variant's result `v`.
pub(super) fn score_task(
    ctx: &SeedCtx,
    i: usize,
    name: &str,
    a: &BenchArgs,
    b: Baselines,
    v: &VariantResult,
) -> TaskSeedResult {
    let s = &ctx.splits[i];
    let Baselines {
        frozen,
        lora,
        frozen_seconds: frozen_secs,
    } = b;
    let hybrid = match a.no_gate {
        true => v.last.clone(),
        false => v.gated.clone(),
    };
    eprintln!(
        "seed {} {:>10}: frozen {:.4}  lora {:.4}  hybrid {:.4}{}  answer {:.4} ({})  (test accuracy; dev {:.4} / {:.4} / {:.4})",
        ctx.seed,
        name,
        frozen.test.accuracy,
        lora.test.accuracy,
        hybrid.test.accuracy,
        if a.no_gate || v.use_hybrid {
            ""
        } else {
            " (gate: LoRA)"
        },
        v.answer.test.accuracy,
        v.answered_by.key(),
        frozen.dev.accuracy,
        lora.dev.accuracy,
        hybrid.dev.accuracy
    );
    let hybrid_vs_lora = Paired::of(
        &hybrid.test_predictions,
        &lora.test_predictions,
        &s.test.labels,
    );
    TaskSeedResult {
        hybrid_vs_lora,
        task: name.to_string(),
        seed: ctx.seed,
        train_rows: s.task.train.len(),
        dev_rows: s.task.held_out.len(),
        test_rows: s.test.len(),
        frozen,
        lora,
        hybrid,
        variants: variants::VariantScores::default(),
        stage1_seconds: 0.0,
        frozen_seconds: frozen_secs,
        fusion_seconds: v.seconds,
        fusion_epochs_trained: v.epochs_trained,
        gate_cv_seconds: ctx.cv.get(i).map_or(0.0, |c| c.1),
        mean_attention_on_test: v.attention_on_test.clone(),
        fusion_variant: a.options().name().to_string(),
        gate: v.gate,
        use_hybrid: a.no_gate || v.use_hybrid,
        answered_by: match a.no_gate {
            true => Answerer::Hybrid,
            false => v.answered_by,
        },
        answer: match a.no_gate {
            true => v.last.clone(),
            false => v.answer.clone(),
        },
        fusion_variants: Default::default(),
    }
}

/// The one fusion shared by all tasks (docs/design.md §1.3's option), cut into per-task layers,
/// and its training time.
pub(super) fn shared_fusion(
    ctx: &SeedCtx,
    tasks: &[TaskData],
    heads: usize,
) -> Result<(Vec<AttentionFusion>, f64)> {
    let t0 = Instant::now();
    let targets: Vec<FusionTarget> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| target(ctx, i, &t.name, ctx.caches[i][0].clone(), &ctx.fusion_cfg))
        .collect();
    let spec = FusionSpec {
        heads,
        shared: true,
        ..FusionSpec::default()
    };
    let mut bars = Bars::new(&format!("seed {} ", ctx.seed));
    let (layers, _) = block_on(train_layers(
        ctx.engine,
        tasks.len(),
        &targets,
        &spec,
        &mut bars,
    ))?;
    let layers = layers.into_iter().map(|l| l.last).collect();
    bars.finish();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("seed {} shared fusion: {secs:.1} s", ctx.seed);
    Ok((layers, secs))
}

/// Multi-task prediction cost, measured: encoder passes per text with task 0 fused.
pub(super) fn passes_per_text_measured(
    ctx: &SeedCtx,
    tasks: &[TaskData],
    fusion: &AttentionFusion,
) -> Result<f64> {
    let sample: Vec<&str> = ctx.splits[0]
        .test
        .texts
        .iter()
        .take(16)
        .map(String::as_str)
        .collect();
    let labels: Vec<Vec<String>> = ctx
        .splits
        .iter()
        .map(|s| s.task.vocab.names().to_vec())
        .collect();
    let parts: Vec<TaskParts> = tasks
        .iter()
        .enumerate()
        .map(|(j, t)| TaskParts {
            name: &t.name,
            labels: &labels[j],
            adapter: &ctx.models[j].adapter,
            head: &ctx.models[j].head,
            fusion: if j == 0 { Some(fusion) } else { None },
            temperature: 1.0,
            hybrid_temperature: 1.0,
            answer: match j {
                0 => Answerer::Hybrid,
                _ => Answerer::Lora,
            },
            fresh: None,
        })
        .collect();
    let e = ctx.engine;
    Ok(block_on(predict_all(
        &e.encoder,
        &e.tokenizer,
        &parts,
        &sample,
        &e.device,
    ))?
    .encoder_passes_per_text)
}
