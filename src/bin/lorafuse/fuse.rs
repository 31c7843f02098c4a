//! `lorafuse fuse` and `lorafuse predict --fused`: stage 2 one step at a time.
//!
//! A fused model folder holds `fusion_manifest.json`, `fusion.safetensors` and, under `adapters/`,
//! a copy of every fused task's adapter folder, so it is self-contained; on loading, each adapter's
//! sha256 is checked against the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use lorafuse::data::LabelVocab;
use lorafuse::engine::{self, Engine};
use lorafuse::fusion::FusionConfig;
use lorafuse::fusion::files::{
    self as fusion_files, FUSION_FORMAT, FusedAdapter, FusedTask, FusionManifest,
};
use lorafuse::fusion::predict::{TaskParts, predict_all};
use lorafuse::host::block_on;
use lorafuse::train::TrainConfig;
use lorafuse::train::stage2::{self, FusionCache, FusionTrainer, VectorSource};
use lorafuse::workspace::task_files::{self, LoadedTask};

use crate::{Columns, read_examples, read_task, spinner, step_bar};

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
    // Every target task's training rows, encoded once by the base and every adapter.
    let mut targets = Vec::new();
    for spec in &a.data {
        let (task, file) = spec
            .split_once('=')
            .with_context(|| format!("--data entry {spec:?} is not task=file"))?;
        let (_, _, t) = loaded.iter().find(|(n, _, _)| n == task).with_context(|| {
            format!("--data names task {task:?}, which none of the adapters is")
        })?;
        let labels = t
            .meta
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        let vocab = LabelVocab::from_names(labels.clone());
        let examples = read_examples(Path::new(file), &a.columns)?;
        let (texts, y) = engine::labelled(&examples, &vocab)?;
        let pb = spinner(&format!(
            "{task}: encoding {} texts with the base and {} adapters",
            texts.len(),
            adapters.len()
        ));
        let cache = block_on(FusionCache::build(
            &engine.encoder,
            &engine.tokenizer,
            &adapters,
            &texts,
            &engine.device,
        ))?;
        pb.finish_and_clear();
        targets.push((task.to_string(), labels, cache, y));
    }
    let defaults = TrainConfig {
        seed: a.seed,
        ..TrainConfig::default()
    };
    let mut cfg = stage2::default_config(&defaults);
    cfg.epochs = a.epochs;
    if let Some(lr) = a.lr {
        cfg.head_lr = lr;
    }
    let d = engine.encoder.config.hidden_size;
    let run = |tr: &mut FusionTrainer, name: &str| -> Result<()> {
        let bar = step_bar(tr.total_steps(), &format!("fusion {name}"));
        while let Some(p) = block_on(tr.step())? {
            bar.set_position(p.step as u64);
            bar.set_message(format!("loss {:.4}", p.loss));
        }
        bar.finish_and_clear();
        eprintln!("trained the fusion of {name}");
        Ok(())
    };
    let mut layers = Vec::new();
    if a.shared {
        let parts: Vec<(&FusionCache, &[usize], usize)> = targets
            .iter()
            .map(|(_, labels, cache, y)| (cache, y.as_slice(), labels.len()))
            .collect();
        let fcfg = FusionConfig::new(d, adapters.len(), 2).with_heads(a.heads);
        let mut tr = FusionTrainer::new_shared_from_tasks(&parts, &fcfg, &cfg, &engine.device)?;
        run(&mut tr, "all tasks (shared)")?;
        layers = tr.finish_shared()?;
    } else {
        for (task, labels, cache, y) in &targets {
            let fcfg = FusionConfig::new(d, adapters.len(), labels.len()).with_heads(a.heads);
            let mut tr = FusionTrainer::new(
                VectorSource::Cached(cache.clone()),
                y,
                &fcfg,
                &cfg,
                &engine.device,
            )?;
            run(&mut tr, task)?;
            layers.push(tr.finish());
        }
    }
    let fused_tasks: Vec<FusedTask> = targets
        .into_iter()
        .map(|(task, labels, _, _)| FusedTask { task, labels })
        .collect();
    let manifest = FusionManifest {
        format: FUSION_FORMAT.into(),
        base_model_sha256: engine.model_sha256.clone(),
        d_model: engine.encoder.config.hidden_size,
        heads: a.heads,
        adapters: loaded
            .iter()
            .map(|(n, _, t)| FusedAdapter {
                task: n.clone(),
                adapter_sha256: t.adapter_sha256.clone(),
            })
            .collect(),
        tasks: fused_tasks,
        shared: a.shared,
    };
    let files = block_on(fusion_files::to_files(&manifest, &layers))?;
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
    let (manifest, layers) = fusion_files::from_files(&files, &engine.device)?;
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
            let fusion = manifest
                .tasks
                .iter()
                .position(|ft| ft.task == fa.task)
                .map(|i| &layers[i]);
            Ok(TaskParts {
                name: &fa.task,
                labels: l,
                adapter: &t.adapter,
                head: t.head.as_ref().context("adapter without head")?,
                fusion,
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
        println!("{}", serde_json::json!({"text": t, "tasks": preds}));
    }
    eprintln!(
        "encoder passes per text: {:.1}",
        out.encoder_passes_per_text
    );
    Ok(())
}
