//! On-disk snapshots of trained task models and vector caches for the benchmarks: stage 1 is
//! nearly all of a benchmark's time, so `bench --stage1-cache DIR` and `bench-transfer --cache DIR`
//! keep what stage 1 produced under a key made of everything that determines it, and a later run
//! with the same key loads it instead of training again (the fusion variants then run in minutes).
//!
//! A model is its PEFT adapter files and head safetensors (the product's own formats); a cache is
//! one safetensors file of named `[n, d]` base and `[n, K, d]` adapter tensors. What it leaves
//! out: any eviction (delete the folder), and any check beyond the key and the file formats.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use lorafuse::engine::Engine;
use lorafuse::error::Error;
use lorafuse::host::block_on;
use lorafuse::lora::peft;
use lorafuse::model::ClassifierHead;
use lorafuse::tensorfile::{self, TensorFile};
use lorafuse::train::TaskModel;
use lorafuse::train::stage2::FusionCache;
use lorafuse::workspace::task_files::sha256_hex;

/// The folder under `root` for everything determined by `key` (hashed).
pub fn folder(root: &Path, what: &str, key: &impl Serialize) -> Result<PathBuf> {
    let json = serde_json::to_vec(key)?;
    Ok(root.join(format!("{what}-{}", &sha256_hex(&json)[..16])))
}

/// Writes a task model into `dir`.
pub fn save_model(dir: &Path, m: &TaskModel) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (config, weights) = block_on(peft::save(&m.adapter))?;
    std::fs::write(dir.join("adapter_config.json"), config)?;
    std::fs::write(dir.join("adapter_model.safetensors"), weights)?;
    std::fs::write(
        dir.join("head.safetensors"),
        block_on(m.head.to_safetensors())?,
    )?;
    Ok(())
}

/// Reads a task model written by [`save_model`]; `None` when it is not there.
pub fn load_model(dir: &Path, engine: &Engine, head_dropout: f64) -> Result<Option<TaskModel>> {
    let read = |n: &str| std::fs::read(dir.join(n));
    let (Ok(config), Ok(weights), Ok(head)) = (
        read("adapter_config.json"),
        read("adapter_model.safetensors"),
        read("head.safetensors"),
    ) else {
        return Ok(None);
    };
    let cfg = &engine.encoder.config;
    let adapter = peft::load(&config, &weights, cfg, &engine.device)?;
    let head =
        ClassifierHead::from_safetensors(&head, cfg.hidden_size, head_dropout, &engine.device)?;
    Ok(Some(TaskModel { adapter, head }))
}

/// Writes named caches into one file.
pub fn save_caches(path: &Path, caches: &[(&str, &FusionCache)]) -> Result<()> {
    let mut tensors = Vec::new();
    for (name, c) in caches {
        let [n, d] = c.base.dims();
        let [_, k, _] = c.adapters.dims();
        tensors.push((
            format!("{name}.base"),
            vec![n, d],
            block_on(lorafuse::host::floats(c.base.clone()))?,
        ));
        tensors.push((
            format!("{name}.adapters"),
            vec![n, k, d],
            block_on(lorafuse::host::floats(c.adapters.clone()))?,
        ));
    }
    let bytes = tensorfile::write(
        tensors.iter().map(|(n, s, v)| (n.as_str(), &s[..], &v[..])),
        &[],
        "caches.safetensors",
        Error::Fusion,
    )?;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads the caches `names` written by [`save_caches`]; `None` when the file is not there.
pub fn load_caches(
    path: &Path,
    names: &[&str],
    engine: &Engine,
) -> Result<Option<Vec<FusionCache>>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let file = TensorFile::parse(&bytes, "caches.safetensors", Error::Fusion)?;
    let dev = &engine.device;
    let mut out = Vec::new();
    for name in names {
        let (b, bs) = file.read(&format!("{name}.base"))?;
        let (a, as_) = file.read(&format!("{name}.adapters"))?;
        anyhow::ensure!(
            bs.len() == 2 && as_.len() == 3,
            "{}: bad cache shapes",
            path.display()
        );
        out.push(FusionCache {
            base: Tensor::from_data(TensorData::new(b, [bs[0], bs[1]]), dev),
            adapters: Tensor::from_data(TensorData::new(a, [as_[0], as_[1], as_[2]]), dev),
        });
    }
    Ok(Some(out))
}

/// Writes one seed's stage-1 models, caches and times under `dir`.
pub fn save_seed(
    dir: &Path,
    models: &[TaskModel],
    caches: &[[FusionCache; 3]],
    stage1_secs: &[f64],
    caching_secs: f64,
) -> Result<()> {
    for (i, (m, c)) in models.iter().zip(caches).enumerate() {
        save_model(&dir.join(format!("task{i}")), m)?;
        let named = [("train", &c[0]), ("dev", &c[1]), ("test", &c[2])];
        save_caches(&dir.join(format!("task{i}/caches.safetensors")), &named)?;
    }
    let times = serde_json::json!({"stage1_seconds": stage1_secs, "caching_seconds": caching_secs});
    std::fs::write(dir.join("times.json"), times.to_string())?;
    Ok(())
}

/// The models, caches and times [`save_seed`] wrote for `n` tasks; `None` when incomplete.
#[allow(clippy::type_complexity)]
pub fn load_seed(
    dir: &Path,
    engine: &Engine,
    n: usize,
    head_dropout: f64,
) -> Result<Option<(Vec<TaskModel>, Vec<[FusionCache; 3]>, Vec<f64>, f64)>> {
    let Ok(times) = std::fs::read(dir.join("times.json")) else {
        return Ok(None);
    };
    let times: serde_json::Value = serde_json::from_slice(&times)?;
    let stage1: Vec<f64> = serde_json::from_value(times["stage1_seconds"].clone())?;
    let caching = times["caching_seconds"].as_f64().unwrap_or(0.0);
    let (mut models, mut caches) = (Vec::new(), Vec::new());
    for i in 0..n {
        let d = dir.join(format!("task{i}"));
        let Some(m) = load_model(&d, engine, head_dropout)? else {
            return Ok(None);
        };
        let path = d.join("caches.safetensors");
        let Some(c) = load_caches(&path, &["train", "dev", "test"], engine)? else {
            return Ok(None);
        };
        let [a, b, t]: [FusionCache; 3] = c.try_into().map_err(|_| anyhow::anyhow!("3 caches"))?;
        models.push(m);
        caches.push([a, b, t]);
    }
    Ok((stage1.len() == n).then_some((models, caches, stage1, caching)))
}
