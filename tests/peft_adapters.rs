//! PEFT adapter files: the real PEFT fixture loads and reproduces PyTorch's outputs; what we write
//! uses PEFT's key names, shapes and config keys and reads back to identical outputs; a fresh
//! adapter (B = 0) leaves the encoder's output bit-identical.

mod common;

use std::collections::BTreeMap;

use lorafuse::host::{block_on, floats};
use lorafuse::lora::{LoraAdapter, LoraConfig, peft};
use lorafuse::model::{ClassifierHead, ForwardMode};
use lorafuse::train::TaskModel;
use lorafuse::workspace::task_files::{self, TaskMeta};

fn peft_fixture() -> (Vec<u8>, Vec<u8>) {
    (
        common::read(&common::fixture("minilm/peft_lora/adapter_config.json")),
        common::read(&common::fixture(
            "minilm/peft_lora/adapter_model.safetensors",
        )),
    )
}

#[test]
fn peft_fixture_reproduces_pytorch_embeddings() {
    let engine = common::engine();
    let (cfg, weights) = peft_fixture();
    let adapter = peft::load(&cfg, &weights, &engine.encoder.config, &engine.device).unwrap();
    assert_eq!(adapter.scaling, 2.0);
    let fx = common::json("minilm/peft_lora_embeddings.json");
    for s in fx["sentences"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        let got = block_on(engine.embed(&[text], Some(&adapter)))
            .unwrap()
            .remove(0);
        let d = common::max_abs_diff(&got, &common::floats(&s["sentence_embedding"]));
        assert!(
            d < 1e-4,
            "{}: embedding with the PEFT adapter differs by {d}",
            s["name"]
        );
        // And it is really different from the base (the adapter is applied).
        let base = block_on(engine.embed(&[text], None)).unwrap().remove(0);
        assert!(common::max_abs_diff(&got, &base) > 1e-3);
    }
}

#[test]
fn written_adapter_uses_peft_names_and_round_trips() {
    let engine = common::engine();
    let (cfg, weights) = peft_fixture();
    let adapter = peft::load(&cfg, &weights, &engine.encoder.config, &engine.device).unwrap();
    let (our_cfg, our_weights) = block_on(peft::save(&adapter)).unwrap();

    // Same tensor names, shapes and dtypes as PEFT's file, and the same values.
    let theirs = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&our_weights).unwrap();
    let mut a: Vec<String> = theirs.names().into_iter().map(str::to_string).collect();
    let mut b: Vec<String> = ours.names().into_iter().map(str::to_string).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for n in &a {
        let (x, y) = (theirs.tensor(n).unwrap(), ours.tensor(n).unwrap());
        assert_eq!(x.shape(), y.shape(), "{n}");
        assert_eq!(x.dtype(), y.dtype(), "{n}");
        assert_eq!(x.data(), y.data(), "{n}: values changed in the round trip");
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&our_weights).unwrap();
    assert_eq!(
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt")
    );

    // Every config key our reader relies on, with the fixture's values.
    let theirs: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&our_cfg).unwrap();
    for k in [
        "peft_type",
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "base_model_name_or_path",
        "bias",
        "fan_in_fan_out",
        "use_dora",
        "use_rslora",
        "task_type",
        "inference_mode",
    ] {
        assert_eq!(ours[k].as_f64().or(None), theirs[k].as_f64(), "{k}");
        if !theirs[k].is_number() {
            assert_eq!(ours[k], theirs[k], "{k}");
        }
    }

    // Read back: identical outputs.
    let back = peft::load(
        our_cfg.as_bytes(),
        &our_weights,
        &engine.encoder.config,
        &engine.device,
    )
    .unwrap();
    let texts = [
        "Hello world",
        "The movie was a delight from start to finish.",
    ];
    let e1 = block_on(engine.embed(&texts, Some(&adapter))).unwrap();
    let e2 = block_on(engine.embed(&texts, Some(&back))).unwrap();
    assert_eq!(e1, e2);
}

#[test]
fn fresh_adapter_is_bit_identical_to_base() {
    let engine = common::engine();
    let cfg = LoraConfig {
        target_modules: [
            "query",
            "key",
            "value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let adapter = LoraAdapter::init(&cfg, &engine.encoder.config, 7, &engine.device).unwrap();
    let input = engine
        .tokenizer
        .batch(&["Hello world", "A second, longer sentence to pad against."])
        .unwrap();
    let mode = ForwardMode::eval(Some(&adapter));
    let with = block_on(floats(
        engine
            .encoder
            .forward(&input, Some(&adapter), &mode, &engine.device)
            .0,
    ))
    .unwrap();
    let without = block_on(floats(
        engine
            .encoder
            .forward(&input, None, &ForwardMode::eval(None), &engine.device)
            .0,
    ))
    .unwrap();
    assert_eq!(with, without);
}

#[test]
fn task_folder_round_trips_with_head_and_meta() {
    let engine = common::engine();
    let cfg = LoraConfig::default();
    let adapter = LoraAdapter::init(&cfg, &engine.encoder.config, 3, &engine.device).unwrap();
    let head = ClassifierHead::init(384, 3, 0.1, 3, &engine.device);
    let model = TaskModel { adapter, head };
    let meta = TaskMeta {
        format: task_files::TASK_FORMAT.into(),
        task: "t".into(),
        labels: vec!["a".into(), "b".into(), "c".into()],
        base_model: "m".into(),
        base_model_sha256: engine.model_sha256.clone(),
        lora: cfg,
        train: Default::default(),
        train_examples: 0,
        metrics: None,
        adapter_sha256: String::new(),
        history: Vec::new(),
        temperature: 1.25,
        start: None,
    };
    let files = block_on(task_files::to_files(&model, &meta)).unwrap();
    let loaded = task_files::from_files(&files, &engine.encoder.config, &engine.device).unwrap();
    let texts = ["one", "two three"];
    let p1 = block_on(lorafuse::infer::probabilities(
        &engine.encoder,
        &engine.tokenizer,
        Some(&model.adapter),
        &model.head,
        &texts,
        &engine.device,
    ))
    .unwrap();
    let p2 = block_on(lorafuse::infer::probabilities(
        &engine.encoder,
        &engine.tokenizer,
        Some(&loaded.adapter),
        loaded.head.as_ref().unwrap(),
        &texts,
        &engine.device,
    ))
    .unwrap();
    assert_eq!(p1, p2);
    let meta = loaded.meta.unwrap();
    assert_eq!(meta.labels.len(), 3);
    assert_eq!(
        meta.temperature, 1.25,
        "the temperature travels with the head's metadata"
    );
    // A file written before temperatures existed still loads, with none (1).
    let mut old: serde_json::Value = serde_json::from_slice(&files[task_files::META]).unwrap();
    old.as_object_mut().unwrap().remove("temperature");
    let mut files = files.clone();
    files.insert(task_files::META.into(), serde_json::to_vec(&old).unwrap());
    let loaded = task_files::from_files(&files, &engine.encoder.config, &engine.device).unwrap();
    assert_eq!(loaded.meta.unwrap().temperature, 1.0);
}

#[test]
fn wrong_adapter_files_give_clear_errors() {
    let engine = common::engine();
    let c = &engine.encoder.config;
    let d = &engine.device;
    let (cfg, weights) = peft_fixture();
    let err = |cfg: &[u8], w: &[u8]| {
        peft::load(cfg, w, c, d)
            .err()
            .expect("must fail")
            .to_string()
    };
    assert!(err(&cfg, b"garbage").contains("not a safetensors file"));
    assert!(err(b"{", &weights).contains("not valid JSON"));
    let r4 = String::from_utf8(cfg.clone())
        .unwrap()
        .replace("\"r\": 8", "\"r\": 4");
    assert!(err(r4.as_bytes(), &weights).contains("shape"));
    let only_q = String::from_utf8(cfg.clone())
        .unwrap()
        .replace("\"value\"", "\"query\"");
    assert!(err(only_q.as_bytes(), &weights).contains("does not select"));
    let with_key = String::from_utf8(cfg.clone())
        .unwrap()
        .replace("\"value\"", "\"value\", \"key\"");
    assert!(err(with_key.as_bytes(), &weights).contains("lacks"));
    // A head file with the wrong width.
    let mut files = BTreeMap::new();
    files.insert(task_files::ADAPTER_CONFIG.to_string(), cfg.clone());
    files.insert(task_files::ADAPTER_WEIGHTS.to_string(), weights.clone());
    files.insert(task_files::HEAD.to_string(), weights.clone());
    assert!(task_files::from_files(&files, c, d).is_err());
    files.remove(task_files::ADAPTER_WEIGHTS);
    assert!(
        task_files::from_files(&files, c, d)
            .err()
            .unwrap()
            .to_string()
            .contains("adapter_model.safetensors")
    );
}
