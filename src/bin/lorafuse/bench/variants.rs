//! The optional fusion variants of `bench`, each scored like the default hybrid on the same
//! caches: a grid over fusion settings selected on dev, the fusion without its base branch, the
//! fusion on cross-fitted vectors, and one fusion shared by all tasks.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use lorafuse::experiment::fusion_job::train_layer;
use lorafuse::fusion::AttentionFusion;
use lorafuse::host::block_on;
use lorafuse::lora::LoraConfig;
use lorafuse::train::crossfit::crossfit_cache;
use lorafuse::train::stage2::FusionCache;
use lorafuse::train::{Metrics, TrainConfig};

use super::{MethodScores, SeedCtx, fusion_config, score_fusion, target};

/// Which variants to run.
#[derive(Args)]
pub struct VariantArgs {
    /// Also train fusion layers over a small grid (learning rate x epochs x adapter dropout) on the cache and
    /// report, per task, the one with the best dev accuracy as `hybrid (dev-selected)`.
    #[arg(long)]
    pub fusion_grid: bool,
    /// Also train the fusion on cross-fitted vectors (the own adapter's vector of each training row
    /// comes from an adapter trained on the other half of the task's data; `train::crossfit`) and
    /// report it as `hybrid (cross-fit)`.
    #[arg(long)]
    pub fusion_crossfit: bool,
    /// Also train one fusion shared by all tasks (per-task heads, on every task's training rows
    /// together; docs/design.md §1.3's option) and report it as `hybrid (shared)`.
    #[arg(long)]
    pub fusion_shared: bool,
    /// Also train the per-task fusion without its base branch (the frozen base's vectors
    /// replaced by zeros in training and test, so `b` is a constant) and report it as
    /// `hybrid (no base branch)`: an ablation.
    #[arg(long)]
    pub fusion_no_base: bool,
}

/// The variants' numbers for one task and seed (empty for variants not run).
#[derive(Serialize, Default)]
pub struct VariantScores {
    /// With `--fusion-grid`: the dev-selected fusion's scores and settings.
    pub hybrid_selected: Option<MethodScores>,
    pub hybrid_selected_settings: Option<String>,
    /// With `--fusion-grid`: every candidate's (settings, dev, test).
    pub fusion_grid: Vec<(String, Metrics, Metrics)>,
    /// With `--fusion-crossfit`: the fusion trained on cross-fitted vectors.
    pub hybrid_crossfit: Option<MethodScores>,
    pub crossfit_seconds: f64,
    pub crossfit_attention_on_test: Vec<f32>,
    /// With `--fusion-shared`: the shared fusion's scores on this task, and its attention.
    pub hybrid_shared: Option<MethodScores>,
    pub shared_attention_on_test: Vec<f32>,
    /// With `--fusion-no-base`: the per-task fusion trained and run with zero base vectors.
    pub hybrid_no_base: Option<MethodScores>,
}

/// Runs the requested variants for task `i` (`shared`: its layer of the shared fusion).
pub fn run(
    ctx: &SeedCtx,
    i: usize,
    name: &str,
    heads: usize,
    a: &VariantArgs,
    shared: Option<&AttentionFusion>,
    lora: &LoraConfig,
) -> Result<VariantScores> {
    let mut v = VariantScores::default();
    let [train_c, dev_c, test_c] = &ctx.caches[i];
    let seed = ctx.seed;
    let report = |what: &str, m: &MethodScores, extra: String| {
        eprintln!(
            "seed {seed} {name:>10}: {what}: test {:.4}, dev {:.4}{extra}",
            m.test.accuracy, m.dev.accuracy
        );
    };
    if a.fusion_grid {
        let mut selected: Option<(String, MethodScores)> = None;
        for lr in [3e-4, 1e-3, 3e-3] {
            for epochs in [10, 30] {
                for adapter_dropout in [0.0, 0.5] {
                    let gcfg = TrainConfig {
                        head_lr: lr,
                        epochs,
                        ..lorafuse::train::stage2::default_config(&ctx.cfg)
                    };
                    let fc = fusion_config(ctx, i, heads)
                        .with_dropout(0.1)
                        .with_adapter_dropout(adapter_dropout);
                    let tgt = target(ctx, i, name, train_c.clone(), &gcfg);
                    let (f, _) = block_on(train_layer(&tgt, &fc, ctx.engine, &mut ()))?;
                    let (m, _) = score_fusion(ctx, i, &f, dev_c, test_c)?;
                    let setting = format!("lr {lr:e}, {epochs} epochs, adapter dropout {adapter_dropout}");
                    if selected
                        .as_ref()
                        .is_none_or(|(_, best)| m.dev.accuracy > best.dev.accuracy)
                    {
                        selected = Some((setting.clone(), m.clone()));
                    }
                    v.fusion_grid.push((setting, m.dev, m.test));
                }
            }
        }
        if let Some((setting, m)) = &selected {
            report(&format!("dev-selected fusion ({setting})"), m, String::new());
        }
        v.hybrid_selected = selected.as_ref().map(|(_, m)| m.clone());
        v.hybrid_selected_settings = selected.map(|(n, _)| n);
    }
    if a.fusion_no_base {
        let zero = |c: &FusionCache| FusionCache {
            base: c.base.zeros_like(),
            adapters: c.adapters.clone(),
        };
        let tgt = target(ctx, i, name, zero(train_c), &ctx.fusion_cfg);
        let (f, _) = block_on(train_layer(&tgt, &fusion_config(ctx, i, heads), ctx.engine, &mut ()))?;
        let (m, _) = score_fusion(ctx, i, &f, &zero(dev_c), &zero(test_c))?;
        report("fusion without base branch", &m, String::new());
        v.hybrid_no_base = Some(m);
    }
    if a.fusion_crossfit {
        let t0 = Instant::now();
        let s = &ctx.splits[i];
        let e = ctx.engine;
        let cf = block_on(crossfit_cache(
            &e.encoder,
            &e.tokenizer,
            &s.task.train.texts,
            &s.task.train.labels,
            s.task.vocab.len(),
            i,
            lora,
            &ctx.cfg,
            train_c,
            &e.device,
        ))?;
        let tgt = target(ctx, i, name, cf, &ctx.fusion_cfg);
        let (f, _) = block_on(train_layer(&tgt, &fusion_config(ctx, i, heads), ctx.engine, &mut ()))?;
        v.crossfit_seconds = t0.elapsed().as_secs_f64();
        let (m, att) = score_fusion(ctx, i, &f, dev_c, test_c)?;
        let extra = format!(", attention {att:?} ({:.1} s)", v.crossfit_seconds);
        report("cross-fit fusion", &m, extra);
        v.crossfit_attention_on_test = att;
        v.hybrid_crossfit = Some(m);
    }
    if let Some(f) = shared {
        let (m, att) = score_fusion(ctx, i, f, dev_c, test_c)?;
        report("shared fusion", &m, format!(", attention {att:?}"));
        v.shared_attention_on_test = att;
        v.hybrid_shared = Some(m);
    }
    Ok(v)
}
