//! `lorafuse bench-speed`: throughput of the CPU backends at batch 32, sequence length 64 — the
//! set-up of `fixtures/minilm/torch_baseline.json` — so a side-by-side PyTorch run
//! (`scripts/bench-torch`, `python/bench_torch.py`) measures the same work.
//!
//! - inference: forward + mean pool of 256 sequences of 64 tokens, in batches of 32 (sentences/s);
//! - LoRA training: r = 8, alpha = 16 on query/value + a 2-class head, AdamW, batch 32, seq 64,
//!   dropout on (examples/s);
//! - stage 2: several tasks' fusion runs (the default variant, 5 adapters, batch 16, on cached
//!   vectors) trained one after another and side by side (`train::together`), alternating, in
//!   the same process, so the ratio is measured under the same conditions.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use lorafuse::engine::Engine;
use lorafuse::host::block_on;
use lorafuse::lora::{LoraAdapter, LoraConfig};
use lorafuse::model::{ClassifierHead, EncoderInput, ForwardMode};
use lorafuse::train::{TaskModel, TrainConfig, cross_entropy};

use crate::args::Common;
use crate::io::load_engine;

#[derive(Args)]
pub struct BenchArgs {
    /// Backends to measure, comma-separated.
    #[arg(long, default_value = "flex,ndarray", value_delimiter = ',')]
    backends: Vec<String>,
    /// Timed inference batches (of 32).
    #[arg(long, default_value_t = 8)]
    infer_batches: usize,
    /// Timed training steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 5)]
    train_steps: usize,
    /// Sequence length of the synthetic batches (64 as the issue asks; the PyTorch inference
    /// baseline in fixtures/minilm/torch_baseline.json used 32).
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Fusion runs trained one after another and side by side (one per task; 0 skips it).
    #[arg(long, default_value_t = 5)]
    fusion_tasks: usize,
    /// Training rows of each fusion run (450: N = 500 less its dev rows).
    #[arg(long, default_value_t = 450)]
    fusion_rows: usize,
    /// Epochs of each fusion run.
    #[arg(long, default_value_t = 2)]
    fusion_epochs: usize,
    /// Timed repeats of each way (alternating; the median is reported).
    #[arg(long, default_value_t = 3)]
    fusion_repeats: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// A batch of 32 sequences of exactly 64 tokens ([CLS] … [SEP]) with deterministic ids.
fn synthetic_batch(seed: u64, t: usize) -> EncoderInput {
    let b = 32;
    let t = t.max(2);
    let mut s = seed;
    let mut ids = Vec::with_capacity(b * t);
    for _ in 0..b {
        ids.push(101);
        for _ in 1..t - 1 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ids.push(1996 + ((s >> 33) % 20000) as i64);
        }
        ids.push(102);
    }
    EncoderInput {
        ids,
        type_ids: vec![0; b * t],
        mask: vec![1; b * t],
        batch: b,
        seq: t,
    }
}

pub fn run(common: &Common, args: BenchArgs) -> Result<()> {
    if args.infer_batches == 0 || args.train_steps == 0 {
        anyhow::bail!("--infer-batches and --train-steps must be at least 1");
    }
    if !(2..=512).contains(&args.seq) {
        anyhow::bail!("--seq must be in 2..=512 (the model's positions)");
    }
    let mut results = Vec::new();
    let mut breakdown = Vec::new();
    let mut fusion_lines = Vec::new();
    println!(
        "batch 32, sequence length {}, {} rayon threads",
        args.seq,
        rayon_threads()
    );
    println!(
        "| backend | inference (sentences/s) | LoRA training (examples/s) | ms per train step |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for name in &args.backends {
        let engine = load_engine(&Common {
            backend: name.clone(),
            ..common.clone()
        })?;
        let infer = inference(&engine, &args)?;
        let (median, [f, b, o]) = training(&engine, &args)?;
        breakdown.push(format!(
            "{name}: forward {:.0} ms, backward {:.0} ms, optimiser {:.0} ms per step",
            f * 1000.0,
            b * 1000.0,
            o * 1000.0
        ));
        let train = 32.0 / median;
        println!(
            "| {name} | {infer:.1} | {train:.2} | {:.0} |",
            median * 1000.0
        );
        let mut r = serde_json::json!({"seq": args.seq, "backend": name, "inference_sentences_per_s": infer, "lora_train_examples_per_s": train, "train_step_seconds_median": median});
        if args.fusion_tasks > 0 {
            let (alone, together) = fusion_runs(&engine, &args)?;
            fusion_lines.push(format!(
                "{name}: {} runs of {} steps: one after another {alone:.2} s, side by side {together:.2} s ({:.2}x)",
                args.fusion_tasks,
                args.fusion_rows.div_ceil(16) * args.fusion_epochs,
                alone / together
            ));
            r["fusion_runs_alone_seconds"] = alone.into();
            r["fusion_runs_together_seconds"] = together.into();
        }
        results.push(r);
    }
    println!("\nWhere a LoRA training step's time goes (medians):");
    for b in &breakdown {
        println!("- {b}");
    }
    if !fusion_lines.is_empty() {
        println!(
            "\nStage 2, the tasks' fusion runs (medians of {} alternating repeats):",
            args.fusion_repeats
        );
        for l in &fusion_lines {
            println!("- {l}");
        }
    }
    if let Some(p) = args.json {
        std::fs::write(&p, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(())
}

/// Inference throughput (sentences/s): forward + mean pool of `infer_batches` batches of 32,
/// after one warm-up batch.
fn inference(engine: &Engine, args: &BenchArgs) -> Result<f64> {
    let device = &engine.device;
    let mode = ForwardMode::eval(None);
    let warm = synthetic_batch(0, args.seq);
    block_on(lorafuse::host::floats(
        engine.encoder.pooled(&warm, None, &mode, device),
    ))?;
    let t0 = Instant::now();
    for i in 0..args.infer_batches {
        let x = synthetic_batch(i as u64 + 1, args.seq);
        block_on(lorafuse::host::floats(
            engine.encoder.pooled(&x, None, &mode, device),
        ))?;
    }
    Ok((args.infer_batches * 32) as f64 / t0.elapsed().as_secs_f64())
}

/// LoRA training steps in the PyTorch baseline's set-up: the median step time and the medians of
/// its forward, backward and optimiser parts. Written out step by step rather than through the
/// training driver because it times the three parts of a step separately.
fn training(engine: &Engine, args: &BenchArgs) -> Result<(f64, [f64; 3])> {
    let device = &engine.device;
    let ad = device.clone().autodiff();
    let lora = LoraConfig {
        r: 8,
        alpha: 16.0,
        dropout: 0.0,
        target_modules: vec!["query".into(), "value".into()],
        ..Default::default()
    };
    let cfg = TrainConfig {
        max_grad_norm: 0.0,
        ..Default::default()
    };
    let mut model = TaskModel {
        adapter: LoraAdapter::init(&lora, &engine.encoder.config, 1, &ad)?,
        head: ClassifierHead::init(engine.encoder.config.hidden_size, 2, 0.1, 1, &ad),
    };
    let mut opt = cfg.optimizer();
    let mut step_times = Vec::new();
    let mut parts = [Vec::new(), Vec::new(), Vec::new()]; // forward, backward, optimiser
    for step in 0..args.train_steps + 2 {
        let x = synthetic_batch(100 + step as u64, args.seq);
        let targets: Vec<i64> = (0..32).map(|i| (i % 2) as i64).collect();
        let targets = burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(targets, [32]),
            device,
        );
        let t0 = Instant::now();
        let mode = ForwardMode::train(Some(&model.adapter), true);
        // Dropout masks from a seeded scope, as the trainer draws them (`train::shards`).
        let loss = lorafuse::model::dropout::seeded(step as u64, || {
            cross_entropy(
                model.logits(&engine.encoder, &x, &mode, true, device),
                targets,
            )
        });
        // Reading the loss forces the forward pass to run (backends may be lazy).
        block_on(lorafuse::host::scalar(loss.clone()))?;
        let t1 = Instant::now();
        let mut grads = loss.backward();
        let g = burn::optim::GradientsParams::from_module(&mut grads, &model);
        let t2 = Instant::now();
        model = opt.step(1e-4, model, g);
        // Make sure the update ran before stopping the clock.
        block_on(lorafuse::host::floats(model.head.linear.weight.val()))?;
        let t3 = Instant::now();
        if step >= 2 {
            step_times.push((t3 - t0).as_secs_f64());
            parts[0].push((t1 - t0).as_secs_f64());
            parts[1].push((t2 - t1).as_secs_f64());
            parts[2].push((t3 - t2).as_secs_f64());
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let p = [med(&mut parts[0]), med(&mut parts[1]), med(&mut parts[2])];
    Ok((med(&mut step_times), p))
}

/// Median seconds of training `fusion_tasks` fusion runs one after another ([`run_to_end`]) and
/// side by side ([`drive_together`]), on seeded random cached vectors, the two ways alternating.
fn fusion_runs(engine: &Engine, args: &BenchArgs) -> Result<(f64, f64)> {
    use lorafuse::fusion::{FusionConfig, FusionOptions};
    use lorafuse::train::run_to_end;
    use lorafuse::train::stage2::{FusionCache, FusionTrainer, VectorSource, default_config};
    use lorafuse::train::together::drive_together;
    use rand::{Rng, SeedableRng};

    let device = &engine.device;
    let (n, k, d) = (
        args.fusion_rows.max(1),
        5,
        engine.encoder.config.hidden_size,
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut uniform =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
    let cache = FusionCache {
        base: burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(uniform(n * d), [n, d]),
            device,
        ),
        adapters: burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(uniform(n * k * d), [n, k, d]),
            device,
        ),
    };
    let y: Vec<usize> = (0..n).map(|i| i % 2).collect();
    let cfg = TrainConfig {
        epochs: args.fusion_epochs.max(1),
        ..default_config(&TrainConfig::default())
    };
    let options =
        FusionOptions::named(lorafuse::experiment::fusion_job::FusionSpec::DEFAULT_VARIANT)
            .unwrap_or_default();
    let config = FusionConfig::new(d, k, 2).with_options(options);
    let head = ClassifierHead::init(d, 2, 0.1, 1, device);
    let runs = || -> Result<Vec<FusionTrainer>> {
        (0..args.fusion_tasks)
            .map(|t| {
                let cfg = TrainConfig {
                    seed: t as u64,
                    ..cfg.clone()
                };
                let own = config.needs_own().then_some((t % k, &head));
                let source = VectorSource::Cached(cache.clone());
                Ok(FusionTrainer::new(source, &y, &config, own, &cfg, device)?)
            })
            .collect()
    };
    let (mut alone, mut together) = (Vec::new(), Vec::new());
    for _ in 0..args.fusion_repeats.max(1) {
        let mut ts = runs()?;
        let t0 = Instant::now();
        for t in &mut ts {
            block_on(run_to_end(t))?;
        }
        alone.push(t0.elapsed().as_secs_f64());
        let mut ts: Vec<(FusionTrainer, ())> = runs()?.into_iter().map(|t| (t, ())).collect();
        let t0 = Instant::now();
        block_on(drive_together(&mut ts, &mut ()))?;
        together.push(t0.elapsed().as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((med(&mut alone), med(&mut together)))
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into())
    })
}
