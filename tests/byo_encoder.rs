//! A second encoder configuration brought as files: all-MiniLM-L6-v2 cut to 3 layers, with CLS or
//! max pooling and without normalisation, weights in F16 or F32 (`scripts/cut_encoder.py` writes
//! them from the installed default model). Its outputs are checked against values recomputed by
//! hand here from the default model's hidden states after layer 3; the CLI trains, fuses, predicts
//! and round-trips with it, and refuses to apply its adapters or fused model to the default model.
//! The default model's own fixtures are checked, unchanged, by `encoder_reference.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lorafuse::engine::{Engine, ModelFiles};
use lorafuse::host::{block_on, floats};
use lorafuse::model::{ForwardMode, PoolingMode};

const TEXTS: [&str; 3] = [
    "a wonderful, moving film that I loved",
    "the plot is a mess",
    "What is the capital of France, and why is it Paris?",
];

/// `scripts/cut_encoder.py` into a folder of this test process (made once per configuration).
fn cut(name: &str, args: &[&str]) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("lorafuse-byo-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    // Tests run in parallel and share configurations: one writes, the others wait for it.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let dst = root.join(name);
    if !dst.join("model.safetensors").exists() {
        let out = Command::new("python3")
            .arg(common::root().join("scripts/cut_encoder.py"))
            .arg(common::model_dir())
            .arg(&dst)
            .args(args)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "cut_encoder.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dst
}

fn cls3_f16() -> PathBuf {
    cut(
        "minilm3-cls-f16",
        &[
            "--layers",
            "3",
            "--pooling",
            "cls",
            "--dtype",
            "f16",
            "--no-normalize",
        ],
    )
}

fn load(dir: &Path) -> Engine {
    let read = |n: &str| common::read(&dir.join(n));
    let opt = |n: &str| std::fs::read(dir.join(n)).ok();
    let files = ModelFiles {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        config: read("config.json"),
        weights: read("model.safetensors"),
        tokenizer: read("tokenizer.json"),
        modules: opt("modules.json"),
        pooling: opt("1_Pooling/config.json"),
    };
    Engine::from_files(&files, &common::engine().device).expect("the cut model loads")
}

/// The default model's hidden states after `layer` layers, `[batch][seq][d]` on the host, and
/// the mask.
fn default_hidden(layer: usize) -> (Vec<Vec<Vec<f32>>>, Vec<u8>, usize) {
    let e = common::engine();
    let input = e.tokenizer.batch(&TEXTS).unwrap();
    let (hidden, _) = e
        .encoder
        .hidden_states(&input, None, &ForwardMode::eval(None), &e.device);
    let d = e.encoder.config.hidden_size;
    let v = block_on(floats(hidden[layer].clone())).unwrap();
    let rows = v
        .chunks(input.seq * d)
        .map(|r| r.chunks(d).map(<[f32]>::to_vec).collect())
        .collect();
    (rows, input.mask.clone(), input.seq)
}

fn pooled(e: &Engine) -> Vec<Vec<f32>> {
    let input = e.tokenizer.batch(&TEXTS).unwrap();
    let t = e
        .encoder
        .pooled(&input, None, &ForwardMode::eval(None), &e.device);
    let d = e.encoder.config.hidden_size;
    block_on(floats(t))
        .unwrap()
        .chunks(d)
        .map(<[f32]>::to_vec)
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| common::max_abs_diff(x, y))
        .fold(0.0, f32::max)
}

#[test]
fn cut_encoder_equals_the_first_layers_pooled_by_hand() {
    let (hidden, mask, seq) = default_hidden(3);
    // CLS by hand: token 0 of every row.
    let cls: Vec<Vec<f32>> = hidden.iter().map(|r| r[0].clone()).collect();
    // Max by hand over the real tokens.
    let max: Vec<Vec<f32>> = hidden
        .iter()
        .enumerate()
        .map(|(b, r)| {
            let mut m = vec![f32::NEG_INFINITY; r[0].len()];
            for (t, tok) in r.iter().enumerate() {
                if mask[b * seq + t] == 1 {
                    for (x, &v) in m.iter_mut().zip(tok) {
                        *x = x.max(v);
                    }
                }
            }
            m
        })
        .collect();

    let f32_cls = load(&cut(
        "minilm3-cls-f32",
        &["--layers", "3", "--pooling", "cls", "--no-normalize"],
    ));
    assert_eq!(f32_cls.encoder.config.num_hidden_layers, 3);
    assert_eq!(f32_cls.encoder.pooling.mode, PoolingMode::Cls);
    let d = max_diff(&pooled(&f32_cls), &cls);
    assert!(
        d < 1e-5,
        "3-layer F32 CLS model vs layer 3 of the default model: {d}"
    );

    let f32_max = load(&cut(
        "minilm3-max-f32",
        &["--layers", "3", "--pooling", "max"],
    ));
    let d = max_diff(&pooled(&f32_max), &max);
    assert!(d < 1e-5, "3-layer F32 max-pooled model vs by hand: {d}");

    // F16 weights: the same within half precision's rounding of the weights.
    let f16 = load(&cls3_f16());
    let d = max_diff(&pooled(&f16), &cls);
    let scale = cls.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        d < 2e-2 * scale.max(1.0),
        "F16 vs F32 CLS vectors: {d} (largest value {scale})"
    );

    // No Normalize module: embeddings are the pooled vectors; with it, unit length.
    let emb = block_on(f16.embed(&TEXTS, None)).unwrap();
    assert!(max_diff(&emb, &pooled(&f16)) < 1e-6);
    assert!(
        emb.iter()
            .all(|v| (v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() > 0.1)
    );
    let emb = block_on(f32_max.embed(&TEXTS, None)).unwrap();
    for v in &emb {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "normalised embedding has norm {n}");
    }
}

/// The default model's F16 copy that the page downloads (`model.f16.safetensors`, written by
/// `scripts/setup`: half the bytes, 45 MB) gives the PyTorch fixtures' sentence embeddings within
/// 1e-3, and it is the default model: same name, and the F32 file's sha256 as its identity, so
/// adapters trained in the page (F16) and by the CLI (F32) are accepted by both.
#[test]
fn the_default_models_f16_copy_matches_pytorch_within_1e3_and_is_the_same_model() {
    let dir = common::model_dir();
    let (f16_name, f16_sha) = lorafuse::engine::DEFAULT_MODEL_F16;
    let weights = common::read(&dir.join(f16_name));
    let size = weights.len();
    assert!(size < 46_000_000, "F16 weights are {size} bytes");
    let files = ModelFiles {
        name: "served copy".into(),
        config: common::read(&dir.join("config.json")),
        weights,
        tokenizer: common::read(&dir.join("tokenizer.json")),
        modules: None,
        pooling: None,
    };
    let f16 = Engine::from_files(&files, &common::engine().device).expect("the F16 copy loads");
    let f32 = common::engine();
    let file_sha = lorafuse::workspace::task_files::sha256_hex(&files.weights);
    assert_eq!(file_sha, f16_sha);
    assert_ne!(file_sha, f32.model_sha256);
    assert_eq!(f16.model_sha256, f32.model_sha256);
    assert_eq!(
        ModelFiles::name_for("models", f16_sha),
        lorafuse::engine::DEFAULT_MODEL_NAME
    );
    f32.check_trained_on(&f16.name, &f16.model_sha256).unwrap();
    let fx = common::json("minilm/encoder.json");
    let mut worst = 0.0f32;
    for s in fx["sentences"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        let emb = block_on(f16.embed(&[text], None)).unwrap().remove(0);
        worst = worst.max(common::max_abs_diff(
            &emb,
            &common::floats(&s["sentence_embedding"]),
        ));
    }
    eprintln!(
        "F16 default model: {size} bytes, max |Δ| of sentence embeddings vs PyTorch {worst:.2e}"
    );
    assert!(
        worst < 1e-3,
        "F16 sentence embeddings differ from PyTorch's by {worst}"
    );
}

/// The CLI on the model in `model_dir`.
fn lorafuse(model_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let dir = model_dir.to_str().unwrap();
    let mut all = vec!["--model-dir", dir];
    all.extend_from_slice(args);
    common::lorafuse(&all)
}

#[test]
fn cli_trains_fuses_predicts_and_refuses_another_base_model() {
    let model = cls3_f16();
    let dir = std::env::temp_dir().join(format!("lorafuse-byo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = common::two_task_csvs(&dir);
    let p = |x: &Path| x.to_str().unwrap().to_string();

    for (task, data) in [("a", &a), ("b", &b)] {
        let out = p(&dir.join(task));
        let args = [
            "train",
            "--task",
            task,
            "--data",
            &p(data),
            "--epochs",
            "1",
            "--out",
            &out,
        ];
        let (ok, _, err) = lorafuse(&model, &args);
        assert!(ok, "train {task} on the cut model: {err}");
    }
    // The files name the model they were trained on.
    let meta: serde_json::Value =
        serde_json::from_slice(&common::read(&dir.join("a/lorafuse_task.json"))).unwrap();
    assert_eq!(meta["base_model"], "minilm3-cls-f16");
    let cfg: serde_json::Value =
        serde_json::from_slice(&common::read(&dir.join("a/adapter_config.json"))).unwrap();
    assert_eq!(cfg["base_model_name_or_path"], "minilm3-cls-f16");

    // Round trip: predict from the written folder, then fuse and predict every task.
    let (ok, out, err) = lorafuse(
        &model,
        &[
            "predict",
            "--adapter",
            &p(&dir.join("b")),
            "--text",
            "a wonderful film",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        ["up", "down"].contains(&v["label"].as_str().unwrap()),
        "{out}"
    );
    let adapters = format!("{},{}", p(&dir.join("a")), p(&dir.join("b")));
    let data = format!("a={},b={}", p(&a), p(&b));
    let fused = p(&dir.join("fused"));
    let args = [
        "fuse",
        "--adapters",
        &adapters,
        "--data",
        &data,
        "--epochs",
        "2",
        "--out",
        &fused,
    ];
    let (ok, _, err) = lorafuse(&model, &args);
    assert!(ok, "fuse on the cut model: {err}");
    let (ok, out, err) = lorafuse(
        &model,
        &["predict", "--fused", &fused, "--text", "a wonderful film"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"a\"") && out.contains("\"b\""), "{out}");

    // The default model refuses them, saying why.
    let default = common::model_dir();
    for args in [
        vec![
            "predict",
            "--adapter",
            &p(&dir.join("a")) as &str,
            "--text",
            "x",
        ],
        vec!["predict", "--fused", &fused, "--text", "x"],
    ] {
        let (ok, _, err) = lorafuse(&default, &args);
        assert!(!ok, "{args:?} with the default model should fail");
        assert!(
            err.contains("trained on the base model \"minilm3-cls-f16\""),
            "{args:?}: {err}"
        );
    }
}
