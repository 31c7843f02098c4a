//! Shared helpers of the integration tests: the model files and the copied reference fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lorafuse::engine::Engine;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default model folder (installed by `scripts/setup`).
pub fn model_dir() -> PathBuf {
    std::env::var_os("LORAFUSE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("public/models/all-MiniLM-L6-v2"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run ./scripts/setup first",
            p.display()
        )
    })
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(&fixture(rel))).expect("fixture is JSON")
}

pub struct ModelBytes {
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
    pub tokenizer: Vec<u8>,
}

pub fn model_bytes() -> &'static ModelBytes {
    static M: OnceLock<ModelBytes> = OnceLock::new();
    M.get_or_init(|| {
        let d = model_dir();
        ModelBytes {
            config: read(&d.join("config.json")),
            weights: read(&d.join("model.safetensors")),
            tokenizer: read(&d.join("tokenizer.json")),
        }
    })
}

/// The engine on the default CPU backend.
pub fn engine() -> Engine {
    engine_on(lorafuse::backend::DEFAULT_CPU)
}

pub fn engine_on(backend: &str) -> Engine {
    engine_on_device(&lorafuse::backend::device(backend).expect("backend"))
}

/// The default model on `device` (e.g. an autodiff device, or a wgpu one).
pub fn engine_on_device(device: &burn::tensor::Device) -> Engine {
    let m = model_bytes();
    Engine::load(&m.config, &m.weights, &m.tokenizer, device).expect("model loads")
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Trains a 2-class task with the paper's LoRA settings; returns the model and each step's loss.
pub fn train_lora_task(
    engine: &Engine,
    texts: &[String],
    labels: &[usize],
    cfg: &lorafuse::train::TrainConfig,
) -> (lorafuse::train::TaskModel, Vec<f32>) {
    let lora = lorafuse::lora::LoraConfig::default();
    let mut t = lorafuse::train::LoraTrainer::new(
        &engine.encoder,
        &engine.tokenizer,
        texts,
        labels,
        2,
        &lora,
        cfg,
        &engine.device,
    )
    .unwrap();
    let mut losses = vec![];
    let mut obs = lorafuse::train::driver::Steps {
        cancel: None,
        on_step: |p: &lorafuse::train::Progress| losses.push(p.loss),
    };
    lorafuse::host::block_on(lorafuse::train::drive(&mut t, &mut obs)).unwrap();
    (t.finish(), losses)
}

/// Texts and class indices of `rows` (every label must be in `vocab`).
pub fn labelled(
    rows: &[lorafuse::data::Example],
    vocab: &lorafuse::data::LabelVocab,
) -> Result<(Vec<String>, Vec<usize>), lorafuse::Error> {
    let l = lorafuse::experiment::Labelled::all(rows, vocab)?;
    Ok((l.texts, l.labels))
}

/// Runs the `lorafuse` CLI on the test model; `(success, stdout, stderr)`.
#[allow(dead_code)]
pub fn lorafuse(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorafuse"))
        .args(args)
        .env("LORAFUSE_MODEL_DIR", model_dir())
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two small tasks' CSV files written into `dir` from the SST-2 sample: `a.csv` (rows 1–40,
/// `positive`/`negative`) and `b.csv` (rows 41–80, the labels renamed `up`/`down`).
pub fn two_task_csvs(dir: &Path) -> (PathBuf, PathBuf) {
    let rows = String::from_utf8(read(&fixture("data/sst2_train_600.csv"))).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    let a = dir.join("a.csv");
    std::fs::write(&a, format!("{}\n{}\n", lines[0], lines[1..41].join("\n"))).unwrap();
    let b = dir.join("b.csv");
    let renamed: Vec<String> = lines[41..81]
        .iter()
        .map(|l| l.replace(",positive", ",up").replace(",negative", ",down"))
        .collect();
    std::fs::write(&b, format!("{}\n{}\n", lines[0], renamed.join("\n"))).unwrap();
    (a, b)
}
