//! The optional fusion variants of `bench`, each scored like the default hybrid on the same
//! caches: a grid over fusion settings selected on dev, the fusion without its base branch, the
//! fusion on cross-fitted vectors, and one fusion shared by all tasks.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use lorafuse::experiment::fusion_job::train_layer;
use lorafuse::fusion::{AttentionFusion, FusionConfig};
use lorafuse::host::block_on;
use lorafuse::lora::LoraConfig;
use lorafuse::train::crossfit::crossfit_cache;
use lorafuse::train::stage2::FusionCache;
use lorafuse::train::{Metrics, TrainConfig};

use lorafuse::fusion::module::FusionOptions;

use super::{BenchArgs, MethodScores, SeedCtx, fusion_config, score_fusion, target};

/// Which variants to run.
#[derive(Args)]
pub struct VariantArgs {
    /// Also train fusion layers over a small grid (learning rate x epochs x adapter dropout) on the cache and
    /// report, per task, the one with the best dev accuracy as `hybrid (dev-selected)`.
    #[arg(long)]
    pub fusion_grid: bool,
    /// Also train the fusion on cross-fitted vectors (the own adapter's vector of each training row
    /// comes from an adapter trained on the other folds of the task's data; `train::crossfit`) and
    /// report it as `hybrid (cross-fit)`, with its cost in seconds.
    #[arg(long)]
    pub fusion_crossfit: bool,
    /// Folds of `--fusion-crossfit`.
    #[arg(long, default_value_t = lorafuse::train::crossfit::DEFAULT_FOLDS)]
    pub crossfit_folds: usize,
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

/// Task `i` of one seed, as every variant sees it.
struct Task<'a, 'b> {
    ctx: &'a SeedCtx<'b>,
    i: usize,
    name: &'a str,
    heads: usize,
    /// The `--fusion` variant, which these variants modify.
    options: FusionOptions,
}

impl Task<'_, '_> {
    fn caches(&self) -> &[FusionCache; 3] {
        &self.ctx.caches[self.i]
    }

    /// Prints one variant's line.
    fn report(&self, what: &str, m: &MethodScores, extra: &str) {
        eprintln!(
            "seed {} {:>10}: {what}: test {:.4}, dev {:.4}{extra}",
            self.ctx.seed, self.name, m.test.accuracy, m.dev.accuracy
        );
    }

    /// Trains a per-task fusion (`config`, `cfg`) on `train` and scores it on `dev` and `test`.
    fn train_and_score(
        &self,
        train: FusionCache,
        config: &FusionConfig,
        cfg: &TrainConfig,
        dev: &FusionCache,
        test: &FusionCache,
    ) -> Result<(MethodScores, Vec<f32>)> {
        let tgt = target(self.ctx, self.i, self.name, train, cfg);
        // Every epoch: these ablations report the layer after the last one.
        let device = &self.ctx.engine.device;
        let (f, _) = block_on(train_layer(&tgt, config, None, device, &mut ()))?;
        score_fusion(self.ctx, self.i, &f.last, dev, test, None)
    }
}

/// Runs the requested variants for task `i` (`shared`: its layer of the shared fusion).
pub fn run(
    ctx: &SeedCtx,
    i: usize,
    name: &str,
    args: &BenchArgs,
    shared: Option<&AttentionFusion>,
    lora: &LoraConfig,
) -> Result<VariantScores> {
    let t = Task {
        ctx,
        i,
        name,
        heads: args.fusion_heads,
        options: args.options(),
    };
    let heads = t.heads;
    let a = &args.variants;
    let mut v = VariantScores::default();
    if a.fusion_grid {
        grid(&t, &mut v)?;
    }
    if a.fusion_no_base {
        let [train_c, dev_c, test_c] = t.caches();
        let zero = |c: &FusionCache| FusionCache {
            base: c.base.zeros_like(),
            adapters: c.adapters.clone(),
        };
        let config = fusion_config(ctx, i, heads, t.options);
        let (m, _) = t.train_and_score(
            zero(train_c),
            &config,
            &ctx.fusion_cfg,
            &zero(dev_c),
            &zero(test_c),
        )?;
        t.report("fusion without base branch", &m, "");
        v.hybrid_no_base = Some(m);
    }
    if a.fusion_crossfit {
        crossfit(&t, lora, a.crossfit_folds, &mut v)?;
    }
    if let Some(f) = shared {
        let [_, dev_c, test_c] = t.caches();
        let (m, att) = score_fusion(ctx, i, f, dev_c, test_c, None)?;
        t.report("shared fusion", &m, &format!(", attention {att:?}"));
        v.shared_attention_on_test = att;
        v.hybrid_shared = Some(m);
    }
    Ok(v)
}

/// Fusion layers over a grid (learning rate × epochs × adapter dropout), selected on dev.
fn grid(t: &Task, v: &mut VariantScores) -> Result<()> {
    let [train_c, dev_c, test_c] = t.caches();
    let mut selected: Option<(String, MethodScores)> = None;
    for lr in [3e-4, 1e-3, 3e-3] {
        for epochs in [10, 30] {
            for adapter_dropout in [0.0, 0.5] {
                let cfg = TrainConfig {
                    head_lr: lr,
                    epochs,
                    ..lorafuse::train::stage2::default_config(&t.ctx.cfg)
                };
                let config = fusion_config(t.ctx, t.i, t.heads, t.options)
                    .with_dropout(0.1)
                    .with_adapter_dropout(adapter_dropout);
                let (m, _) = t.train_and_score(train_c.clone(), &config, &cfg, dev_c, test_c)?;
                let setting =
                    format!("lr {lr:e}, {epochs} epochs, adapter dropout {adapter_dropout}");
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
        t.report(&format!("dev-selected fusion ({setting})"), m, "");
    }
    v.hybrid_selected = selected.as_ref().map(|(_, m)| m.clone());
    v.hybrid_selected_settings = selected.map(|(n, _)| n);
    Ok(())
}

/// The fusion trained on cross-fitted own-adapter vectors (`train::crossfit`).
fn crossfit(t: &Task, lora: &LoraConfig, k: usize, v: &mut VariantScores) -> Result<()> {
    let [train_c, dev_c, test_c] = t.caches();
    let t0 = Instant::now();
    let s = &t.ctx.splits[t.i];
    let e = t.ctx.engine;
    let cf = block_on(crossfit_cache(
        &e.encoder,
        &e.tokenizer,
        &s.task.train.texts,
        &s.task.train.labels,
        s.task.vocab.len(),
        t.i,
        lora,
        &t.ctx.cfg,
        train_c,
        k,
        &e.device,
    ))?;
    let tgt = target(t.ctx, t.i, t.name, cf, &t.ctx.fusion_cfg);
    let config = fusion_config(t.ctx, t.i, t.heads, t.options);
    // Every epoch: reported after the last one, as the other ablations.
    let (f, _) = block_on(train_layer(&tgt, &config, None, &e.device, &mut ()))?;
    v.crossfit_seconds = t0.elapsed().as_secs_f64();
    let (m, att) = score_fusion(t.ctx, t.i, &f.last, dev_c, test_c, None)?;
    let extra = format!(", attention {att:?} ({:.1} s)", v.crossfit_seconds);
    t.report("cross-fit fusion", &m, &extra);
    v.crossfit_attention_on_test = att;
    v.hybrid_crossfit = Some(m);
    Ok(())
}
