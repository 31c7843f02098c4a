//! Stage 2: the fusion forward against a straightforward re-computation, frozen adapters staying
//! bit-identical, cached vs uncached training, saving and loading, and a knowledge-sharing check
//! on real text where the hybrid must help a task with very little data.

mod common;

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use lorafuse::data::{self, ParseOptions};
use lorafuse::engine::Engine;
use lorafuse::fusion::files::{
    self, AnswerHeads, FUSION_FORMAT, FusedAdapter, FusedTask, FusionManifest, GateCheck,
    OutOfFold, SourceCheck,
};
use lorafuse::fusion::{AttentionFusion, FusionConfig};
use lorafuse::host::{block_on, floats};
use lorafuse::infer;
use lorafuse::infer::{Answerer, FreshHead, TaskParts, predict_all};
use lorafuse::lora::{LoraAdapter, LoraConfig, peft};
use lorafuse::model::ClassifierHead;
use lorafuse::train::driver::Steps;
use lorafuse::train::stage2::{FusionCache, FusionTrainer, VectorSource};
use lorafuse::train::{Progress, TrainConfig, drive, metrics, run_to_end};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host2(t: Tensor<2>) -> (Vec<f32>, [usize; 2]) {
    let d = t.dims();
    (block_on(floats(t)).unwrap(), d)
}

fn layer_norm(x: &[f32], g: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let n = x.len() as f32;
    let m = x.iter().sum::<f32>() / n;
    let v = x.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / n;
    x.iter()
        .zip(g.iter().zip(b))
        .map(|(a, (g, b))| (a - m) / (v + eps).sqrt() * g + b)
        .collect()
}

/// `x W + b` with burn-layout `W [in, out]`.
fn lin(x: &[f32], l: &burn::nn::Linear) -> Vec<f32> {
    let (w, [din, dout]) = host2(l.weight.val());
    let b = block_on(floats(l.bias.as_ref().unwrap().val())).unwrap();
    (0..dout)
        .map(|o| (0..din).map(|i| x[i] * w[i * dout + o]).sum::<f32>() + b[o])
        .collect()
}

fn ln(x: &[f32], l: &burn::nn::LayerNorm) -> Vec<f32> {
    layer_norm(
        x,
        &block_on(floats(l.gamma.val())).unwrap(),
        &block_on(floats(l.beta.as_ref().unwrap().val())).unwrap(),
        1e-5,
    )
}

/// Straightforward per-example re-computation of docs/design.md §1.3 (masking: `keep[s]`).
fn reference(
    f: &AttentionFusion,
    base: &[f32],
    adapters: &[Vec<f32>],
    keep: &[bool],
) -> (Vec<f32>, Vec<f32>) {
    let k = adapters.len();
    let d = base.len();
    let heads = f.heads;
    let hd = d / heads;
    let h: Vec<Vec<f32>> = adapters
        .iter()
        .enumerate()
        .map(|(s, u)| ln(u, &f.adapter_norms[s]))
        .collect();
    let q: Vec<Vec<f32>> = h.iter().map(|x| lin(x, &f.query)).collect();
    let kk: Vec<Vec<f32>> = h.iter().map(|x| lin(x, &f.key)).collect();
    let v: Vec<Vec<f32>> = h.iter().map(|x| lin(x, &f.value)).collect();
    let mut ctx = vec![vec![0f32; d]; k];
    let mut weights = vec![0f32; k];
    let used = keep.iter().filter(|&&m| m).count() as f32;
    for head in 0..heads {
        let r = head * hd..(head + 1) * hd;
        for i in 0..k {
            let scores: Vec<f32> = (0..k)
                .map(|j| {
                    if keep[j] {
                        q[i][r.clone()]
                            .iter()
                            .zip(&kk[j][r.clone()])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            / (hd as f32).sqrt()
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect();
            let mx = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
            let z: f32 = e.iter().sum();
            for j in 0..k {
                let p = e[j] / z;
                for (c, x) in ctx[i][r.clone()].iter_mut().zip(&v[j][r.clone()]) {
                    *c += p * x;
                }
                if keep[i] {
                    weights[j] += p / heads as f32 / used;
                }
            }
        }
    }
    let attended: Vec<Vec<f32>> = ctx.iter().map(|c| lin(c, &f.out)).collect();
    let mean: Vec<f32> = (0..d)
        .map(|c| {
            (0..k)
                .filter(|&i| keep[i])
                .map(|i| attended[i][c])
                .sum::<f32>()
                / used
        })
        .collect();
    let a = ln(&mean, &f.attention_norm);
    let b = lin(&ln(base, &f.base_norm), &f.base_proj);
    let z = ln(
        &a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>(),
        &f.fused_norm,
    );
    (lin(&z, &f.classifier), weights)
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect()
}

#[test]
fn forward_matches_a_straightforward_recomputation() {
    let device = Device::flex();
    let (b, k, d, c) = (3, 4, 16, 3);
    let f = FusionConfig::new(d, k, c).with_heads(4).init(5, &device);
    let base = random(b * d, 1);
    let ad = random(b * k * d, 2);
    let base_t = Tensor::<2>::from_data(TensorData::new(base.clone(), [b, d]), &device);
    let ad_t = Tensor::<3>::from_data(TensorData::new(ad.clone(), [b, k, d]), &device);
    for keep in [vec![true; k], vec![true, false, true, false]] {
        let out = f.forward(base_t.clone(), ad_t.clone(), Some(&keep), false);
        assert_eq!(out.logits.dims(), [b, c]);
        assert_eq!(out.weights.dims(), [b, k]);
        let (logits, _) = host2(out.logits);
        let (weights, _) = host2(out.weights);
        for i in 0..b {
            let adapters: Vec<Vec<f32>> = (0..k)
                .map(|s| ad[(i * k + s) * d..(i * k + s + 1) * d].to_vec())
                .collect();
            let (want_logits, want_w) = reference(&f, &base[i * d..(i + 1) * d], &adapters, &keep);
            let got_w = &weights[i * k..(i + 1) * k];
            assert!(
                (got_w.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                "weights sum to 1"
            );
            for s in 0..k {
                if !keep[s] {
                    assert!(got_w[s] < 1e-6, "a masked adapter gets no attention");
                }
            }
            assert!(common::max_abs_diff(got_w, &want_w) < 1e-5);
            assert!(common::max_abs_diff(&logits[i * c..(i + 1) * c], &want_logits) < 1e-4);
        }
    }
}

fn load(rel: &str) -> Vec<data::Example> {
    data::parse(
        &common::read(&common::fixture(rel)),
        rel,
        &ParseOptions::default(),
    )
    .unwrap()
    .examples
}

fn adapter_bytes(a: &LoraAdapter) -> Vec<u8> {
    block_on(peft::save(a)).unwrap().1
}

#[test]
fn stage2_keeps_adapters_frozen_and_caching_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let engine = common::engine();
    let rows: Vec<_> = load("data/sst2_train_600.csv")
        .into_iter()
        .take(40)
        .collect();
    let vocab = data::validate_for_training(&rows).unwrap();
    let (texts, labels) = common::labelled(&rows, &vocab).unwrap();
    // Two non-trivial "trained" adapters: the PEFT fixture and a perturbed fresh one.
    let c = &engine.encoder.config;
    let fx = peft::load(
        &common::read(&common::fixture("minilm/peft_lora/adapter_config.json")),
        &common::read(&common::fixture(
            "minilm/peft_lora/adapter_model.safetensors",
        )),
        c,
        &engine.device,
    )
    .unwrap();
    let second = LoraAdapter::init(
        &LoraConfig {
            target_modules: vec!["key".into()],
            ..Default::default()
        },
        c,
        9,
        &engine.device,
    )
    .unwrap();
    let before = [adapter_bytes(&fx), adapter_bytes(&second)];
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 8,
        seed: 3,
        ..Default::default()
    };
    let fcfg = FusionConfig::new(384, 2, 2);
    let refs = [&fx, &second];
    let cache = block_on(FusionCache::build(
        &engine.encoder,
        &engine.tokenizer,
        &refs,
        &texts,
        &engine.device,
    ))
    .unwrap();
    let mut cached = FusionTrainer::new(
        VectorSource::Cached(cache.clone()),
        &labels,
        &fcfg,
        None,
        &cfg,
        &engine.device,
    )
    .unwrap();
    let (mut l1, mut l2) = (vec![], vec![]);
    let mut obs = Steps {
        cancel: None,
        on_step: |p: &Progress| l1.push(p.loss),
    };
    block_on(drive(&mut cached, &mut obs)).unwrap();
    // Created after the cached run: creating a trainer re-seeds the device's dropout generator.
    let live_src = VectorSource::Live {
        encoder: engine.encoder.clone(),
        tokenizer: engine.tokenizer.clone(),
        adapters: vec![fx.clone(), second.clone()],
        texts: texts.clone(),
    };
    let mut live =
        FusionTrainer::new(live_src, &labels, &fcfg, None, &cfg, &engine.device).unwrap();
    let mut obs = Steps {
        cancel: None,
        on_step: |p: &Progress| l2.push(p.loss),
    };
    block_on(drive(&mut live, &mut obs)).unwrap();
    assert_eq!(l1.len(), l2.len());
    assert!(
        common::max_abs_diff(&l1, &l2) < 1e-4,
        "cached {l1:?} vs live {l2:?}"
    );
    let (f1, f2) = (cached.finish(), live.finish());
    let o1 = host2(
        f1.forward(cache.base.clone(), cache.adapters.clone(), None, false)
            .logits,
    )
    .0;
    let o2 = host2(
        f2.forward(cache.base.clone(), cache.adapters.clone(), None, false)
            .logits,
    )
    .0;
    assert!(common::max_abs_diff(&o1, &o2) < 1e-3);
    assert_eq!(
        before,
        [adapter_bytes(&fx), adapter_bytes(&second)],
        "stage 2 changed an adapter"
    );
}

#[test]
fn fused_model_files_reproduce_predictions_exactly() {
    let device = Device::flex();
    let layers = vec![
        FusionConfig::new(32, 3, 2).init(1, &device),
        FusionConfig::new(32, 3, 4).init(2, &device),
    ];
    let manifest = FusionManifest {
        format: FUSION_FORMAT.into(),
        base_model_sha256: "x".into(),
        base_model: "test".into(),
        d_model: 32,
        heads: 4,
        adapters: ["a", "b", "c"]
            .iter()
            .map(|t| FusedAdapter {
                task: t.to_string(),
                adapter_sha256: format!("{t}-sha"),
            })
            .collect(),
        tasks: vec![
            FusedTask {
                task: "a".into(),
                labels: vec!["x".into(), "y".into()],
                temperature: 1.0,
                lora_temperature: Some(0.8),
                own: None,
                use_hybrid: false,
                gate: Some(GateCheck {
                    rows: 10,
                    hybrid_accuracy: 0.6,
                    hybrid_nll: 0.7,
                    lora_accuracy: 0.6,
                    lora_nll: 0.6,
                    epoch: 2,
                    folds: 3,
                    only_hybrid: 1,
                    only_lora: 1,
                    source: Some(SourceCheck {
                        sources: 2,
                        best: Some(2),
                        accuracy: 0.7,
                        frozen_accuracy: 0.9,
                        nll: 0.5,
                        frozen_nll: 0.3,
                        temperature: 1.25,
                        frozen_temperature: 0.75,
                    }),
                }),
                answer: Some(Answerer::Frozen),
                heads: vec![Answerer::Frozen, Answerer::Source],
                out_of_fold_labels: vec![0, 1, 1],
                out_of_fold: vec![Answerer::Lora, Answerer::Hybrid],
            },
            FusedTask {
                task: "b".into(),
                labels: ["1", "2", "3", "4"].map(String::from).to_vec(),
                temperature: 1.5,
                lora_temperature: None,
                own: None,
                use_hybrid: false,
                gate: None,
                answer: None,
                heads: Vec::new(),
                out_of_fold_labels: Vec::new(),
                out_of_fold: Vec::new(),
            },
        ],
        shared: false,
        options: Default::default(),
    };
    let heads = vec![
        AnswerHeads {
            frozen: Some(ClassifierHead::init(32, 2, 0.0, 5, &device)),
            source: Some(ClassifierHead::init(32, 2, 0.0, 6, &device)),
            out_of_fold: Some(OutOfFold {
                labels: vec![0, 1, 1],
                probs: vec![
                    (
                        Answerer::Lora,
                        vec![vec![0.9, 0.1], vec![0.3, 0.7], vec![0.5, 0.5]],
                    ),
                    (
                        Answerer::Hybrid,
                        vec![vec![0.6, 0.4], vec![0.2, 0.8], vec![0.1, 0.9]],
                    ),
                ],
            }),
        },
        AnswerHeads::default(),
    ];
    let out = block_on(files::to_files(&manifest, &layers, &heads)).unwrap();
    let (m2, back, heads_back) = files::from_files(&out, 32, &device).unwrap();
    assert_eq!(
        m2, manifest,
        "temperatures, the answer and the heads' list included"
    );
    assert_eq!(m2.tasks[0].answerer(), Answerer::Frozen);
    assert_eq!(
        m2.tasks[1].answerer(),
        Answerer::Lora,
        "older files: use_hybrid"
    );
    assert_eq!(heads_back[0].kinds(), [Answerer::Frozen, Answerer::Source]);
    assert!(heads_back[1].kinds().is_empty());
    // The fresh heads give the same logits after the round trip, and say what they read.
    let x = Tensor::<2>::from_data(TensorData::new(random(4 * 32, 9), [4, 32]), &device);
    for a in [Answerer::Frozen, Answerer::Source] {
        let (h1, h2) = (heads[0].get(a).unwrap(), heads_back[0].get(a).unwrap());
        assert_eq!(
            host2(h1.forward(x.clone(), false)).0,
            host2(h2.forward(x.clone(), false)).0
        );
    }
    let fresh = FreshHead::of(&heads_back[0], &m2.tasks[0], Answerer::Source).unwrap();
    assert_eq!((fresh.reads, fresh.temperature), (Some(2), 1.25));
    let fresh = FreshHead::of(&heads_back[0], &m2.tasks[0], Answerer::Frozen).unwrap();
    assert_eq!((fresh.reads, fresh.temperature), (None, 0.75));
    assert!(FreshHead::of(&heads_back[0], &m2.tasks[0], Answerer::Lora).is_none());
    // The gate's out-of-fold evidence comes back as written.
    assert_eq!(heads_back[0].out_of_fold, heads[0].out_of_fold);
    assert_eq!(heads_back[1].out_of_fold, None);
    // Listed evidence missing from the weights, or a class beyond the labels, is an error.
    let mut listed = manifest.clone();
    listed.tasks[0].out_of_fold.push(Answerer::Frozen);
    let mut bad = out.clone();
    bad.insert(files::MANIFEST.into(), serde_json::to_vec(&listed).unwrap());
    assert!(files::from_files(&bad, 32, &device).is_err());
    let mut listed = manifest.clone();
    listed.tasks[0].out_of_fold_labels[2] = 2;
    let mut bad = out.clone();
    bad.insert(files::MANIFEST.into(), serde_json::to_vec(&listed).unwrap());
    assert!(files::from_files(&bad, 32, &device).is_err());
    // A listed head missing from the weights is an error, not a panic.
    let mut listed = manifest.clone();
    listed.tasks[1].heads = vec![Answerer::Frozen];
    let mut bad = out.clone();
    bad.insert(files::MANIFEST.into(), serde_json::to_vec(&listed).unwrap());
    assert!(files::from_files(&bad, 32, &device).is_err());
    // A source head needs the fused adapter it reads.
    let mut no_source = manifest.clone();
    no_source.tasks[0]
        .gate
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .best = None;
    let mut bad = out.clone();
    bad.insert(
        files::MANIFEST.into(),
        serde_json::to_vec(&no_source).unwrap(),
    );
    assert!(files::from_files(&bad, 32, &device).is_err());
    // A manifest written before temperatures existed loads with none (1).
    let mut old: serde_json::Value = serde_json::from_slice(&out[files::MANIFEST]).unwrap();
    for t in old["tasks"].as_array_mut().unwrap() {
        t.as_object_mut().unwrap().remove("temperature");
    }
    let mut old_files = out.clone();
    old_files.insert(files::MANIFEST.into(), serde_json::to_vec(&old).unwrap());
    let (m3, _, _) = files::from_files(&old_files, 32, &device).unwrap();
    assert!(m3.tasks.iter().all(|t| t.temperature == 1.0));
    let base = Tensor::<2>::from_data(TensorData::new(random(5 * 32, 3), [5, 32]), &device);
    let ad = Tensor::<3>::from_data(TensorData::new(random(5 * 3 * 32, 4), [5, 3, 32]), &device);
    for (a, b) in layers.iter().zip(&back) {
        let x = a.forward(base.clone(), ad.clone(), None, false);
        let y = b.forward(base.clone(), ad.clone(), None, false);
        assert_eq!(host2(x.logits).0, host2(y.logits).0);
        assert_eq!(host2(x.weights).0, host2(y.weights).0);
    }
    // Damaged files give errors, not panics.
    let mut bad = out.clone();
    bad.insert(files::WEIGHTS.into(), b"nope".to_vec());
    assert!(files::from_files(&bad, 32, &device).is_err());
    let mut bad = out.clone();
    bad.remove(files::MANIFEST);
    assert!(files::from_files(&bad, 32, &device).is_err());
    let mut bad: BTreeMap<String, Vec<u8>> = out;
    bad.insert(
        files::MANIFEST.into(),
        serde_json::to_vec(&FusionManifest {
            d_model: 30,
            ..manifest.clone()
        })
        .unwrap(),
    );
    assert!(files::from_files(&bad, 32, &device).is_err());
    // A crafted manifest is refused by its field before any layer is allocated from it.
    let refuse = |m: FusionManifest, want: &str| {
        let mut f = bad.clone();
        f.insert(files::MANIFEST.into(), serde_json::to_vec(&m).unwrap());
        let msg = files::from_files(&f, 32, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains(files::MANIFEST) && msg.contains(want),
            "{want}: {msg}"
        );
    };
    refuse(
        FusionManifest {
            d_model: 1 << 30,
            heads: 1,
            ..manifest.clone()
        },
        "d_model is 1073741824, but the running model's vectors have 32 dimensions",
    );
    refuse(
        FusionManifest {
            heads: 0,
            ..manifest.clone()
        },
        "heads is 0",
    );
    let mut many = manifest.clone();
    many.tasks[0].labels = (0..1_000_000).map(|i| i.to_string()).collect();
    refuse(many, "lists 1000000 labels");
    let mut own = manifest.clone();
    own.tasks[0].own = Some(7);
    refuse(own, "names adapter 7 as its own, but there are 3");
    let mut temp = manifest.clone();
    temp.tasks[1].temperature = -1.0;
    refuse(temp, "has temperature -1");
    let mut adapters = manifest.clone();
    adapters.adapters = Vec::new();
    refuse(adapters, "lists 0 adapters");
}

fn train(
    engine: &Engine,
    texts: &[String],
    labels: &[usize],
    cfg: &TrainConfig,
) -> lorafuse::train::TaskModel {
    common::train_lora_task(engine, texts, labels, cfg).0
}

/// Two tasks driven by the same signal (movie-review sentiment): "big" has 400 labelled rows,
/// "small" only 12, with its own label names. The small task's hybrid, which can read the big
/// task's adapter, must beat its own single-task LoRA.
#[test]
fn knowledge_sharing_helps_the_small_task() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let engine = common::engine();
    let all = load("data/sst2_train_600.csv");
    let rename = |rows: &[data::Example]| -> Vec<data::Example> {
        rows.iter()
            .map(|e| data::Example {
                text: e.text.clone(),
                label: if e.label == "positive" {
                    "thumbs-up".into()
                } else {
                    "thumbs-down".into()
                },
            })
            .collect()
    };
    let big_rows = data::stratified_subset(&all[..400], 400, 1);
    let small_rows = rename(&data::stratified_subset(&all[400..], 12, 1));
    let test_rows = rename(&load("data/sst2_test_300.csv"));
    let big_vocab = data::validate_for_training(&big_rows).unwrap();
    let small_vocab = data::validate_for_training(&small_rows).unwrap();
    let big = common::labelled(&big_rows, &big_vocab).unwrap();
    let small = common::labelled(&small_rows, &small_vocab).unwrap();
    let test = common::labelled(&test_rows, &small_vocab).unwrap();

    let cfg = TrainConfig {
        epochs: 3,
        ..Default::default()
    };
    let big_model = train(&engine, &big.0, &big.1, &cfg);
    let small_model = train(
        &engine,
        &small.0,
        &small.1,
        &TrainConfig {
            epochs: 10,
            ..cfg.clone()
        },
    );

    // single-task LoRA of the small task
    let probs = block_on(infer::probabilities(
        &engine.encoder,
        &engine.tokenizer,
        Some(&small_model.adapter),
        &small_model.head,
        &test.0,
        &engine.device,
    ))
    .unwrap();
    let single = metrics::evaluate(&probs, &test.1, 2).0.accuracy;

    // hybrid of the small task over both adapters, trained on its 12 rows
    let adapters = [&big_model.adapter, &small_model.adapter];
    let cache = block_on(FusionCache::build(
        &engine.encoder,
        &engine.tokenizer,
        &adapters,
        &small.0,
        &engine.device,
    ))
    .unwrap();
    let fcfg = FusionConfig::new(384, 2, 2);
    let mut ft = FusionTrainer::new(
        VectorSource::Cached(cache),
        &small.1,
        &fcfg,
        None,
        &lorafuse::train::stage2::default_config(&cfg),
        &engine.device,
    )
    .unwrap();
    block_on(run_to_end(&mut ft)).unwrap();
    let fusion = ft.finish();
    let labels = [big_vocab.names().to_vec(), small_vocab.names().to_vec()];
    let parts = [
        TaskParts {
            name: "big",
            labels: &labels[0],
            adapter: &big_model.adapter,
            head: &big_model.head,
            fusion: None,
            temperature: 1.0,
            hybrid_temperature: 1.0,
            answer: Answerer::Hybrid,
            fresh: None,
        },
        TaskParts {
            name: "small",
            labels: &labels[1],
            adapter: &small_model.adapter,
            head: &small_model.head,
            fusion: Some(&fusion),
            temperature: 1.0,
            hybrid_temperature: 1.0,
            answer: Answerer::Hybrid,
            fresh: None,
        },
    ];
    let out = block_on(predict_all(
        &engine.encoder,
        &engine.tokenizer,
        &parts,
        &test.0,
        &engine.device,
    ))
    .unwrap();
    assert!(
        (out.encoder_passes_per_text - 3.0).abs() < 1e-9,
        "K + 1 = 3 passes, got {}",
        out.encoder_passes_per_text
    );
    let hybrid_pred: Vec<Vec<f32>> = out
        .predictions
        .iter()
        .map(|p| p[1].hybrid.as_ref().unwrap().probabilities.clone())
        .collect();
    let hybrid = metrics::evaluate(&hybrid_pred, &test.1, 2).0.accuracy;
    let att: Vec<f32> = out
        .predictions
        .iter()
        .map(|p| p[1].attention.as_ref().unwrap()[0])
        .collect();
    let mean_att_big = att.iter().sum::<f32>() / att.len() as f32;
    eprintln!(
        "small task (12 rows): single-task LoRA {single:.4}, hybrid {hybrid:.4}; mean attention on the big task's adapter {mean_att_big:.3}"
    );
    assert!(
        hybrid > single + 0.02,
        "hybrid {hybrid:.4} does not beat single-task LoRA {single:.4}"
    );
}

/// The shared variant's joint classifier cut into per-task layers gives, for every task, exactly
/// the joint layer's logits of that task's block, and the same attention.
#[test]
fn shared_fusion_heads_split_exactly() {
    let device = Device::flex();
    let (b, k, d) = (4, 3, 16);
    let joint = FusionConfig::new(d, k, 5).init(9, &device);
    assert!(
        joint.split_heads(&[2, 2]).is_none(),
        "class counts must add up"
    );
    assert!(
        joint.split_heads(&[1, 4]).is_none(),
        "every head needs 2 classes"
    );
    let parts = joint.split_heads(&[2, 3]).unwrap();
    let base = Tensor::<2>::from_data(TensorData::new(random(b * d, 5), [b, d]), &device);
    let ad = Tensor::<3>::from_data(TensorData::new(random(b * k * d, 6), [b, k, d]), &device);
    let all = joint.forward(base.clone(), ad.clone(), None, false);
    let (all_logits, _) = host2(all.logits);
    let all_weights = host2(all.weights).0;
    for (t, (part, range)) in parts.iter().zip([0..2, 2..5]).enumerate() {
        let out = part.forward(base.clone(), ad.clone(), None, false);
        let (logits, [_, c]) = host2(out.logits);
        assert_eq!(c, range.len(), "task {t}");
        for i in 0..b {
            assert_eq!(
                &logits[i * c..(i + 1) * c],
                &all_logits[i * 5..(i + 1) * 5][range.clone()]
            );
        }
        assert_eq!(host2(out.weights).0, all_weights);
    }
}

/// One fusion shared by two tasks learns both, each row's loss taken on its own task's head:
/// task 0 (2 classes) is readable from adapter 0's vectors, task 1 (3 classes) from adapter 1's.
#[test]
fn shared_fusion_learns_each_task_on_its_own_head() {
    let device = Device::flex();
    let (k, d, n) = (2, 16, 120);
    let mut base = random(n * d, 21);
    let mut ad = random(n * k * d, 22);
    let task_of_row: Vec<usize> = (0..n).map(|r| r % 2).collect();
    let labels: Vec<usize> = (0..n)
        .map(|r| if r % 2 == 0 { (r / 2) % 2 } else { (r / 2) % 3 })
        .collect();
    for r in 0..n {
        let (t, y) = (task_of_row[r], labels[r] as f32);
        // The signal: one feature of the task's own adapter vector; the base carries none.
        ad[(r * k + t) * d + t] = if t == 0 { 6.0 * y - 3.0 } else { 3.0 * y - 3.0 };
        base[r * d] = 0.0;
    }
    let cache = FusionCache {
        base: Tensor::from_data(TensorData::new(base, [n, d]), &device),
        adapters: Tensor::from_data(TensorData::new(ad, [n, k, d]), &device),
    };
    let cfg = TrainConfig {
        epochs: 40,
        batch_size: 16,
        head_lr: 3e-3,
        ..Default::default()
    };
    let fcfg = FusionConfig::new(d, k, 2);
    // The first step's loss (one batch of every row, no dropout) is each row's cross-entropy
    // over its own task's head alone: log-sum-exp over that block of the joint logits.
    let mut first = FusionTrainer::new_shared(
        VectorSource::Cached(cache.clone()),
        &task_of_row,
        &labels,
        &[2, 3],
        &fcfg.clone().with_dropout(0.0),
        &TrainConfig {
            batch_size: n,
            ..cfg.clone()
        },
        &device,
    )
    .unwrap();
    let got = block_on(first.step()).unwrap().unwrap().loss;
    let joint = FusionConfig::new(d, k, 5)
        .with_dropout(0.0)
        .init(cfg.seed, &device);
    let (logits, _) = host2(
        joint
            .forward(cache.base.clone(), cache.adapters.clone(), None, false)
            .logits,
    );
    let want = (0..n)
        .map(|r| {
            let block = if task_of_row[r] == 0 { 0..2 } else { 2..5 };
            let row = &logits[r * 5..(r + 1) * 5][block.clone()];
            let lse = row.iter().map(|x| x.exp()).sum::<f32>().ln();
            lse - row[labels[r]]
        })
        .sum::<f32>()
        / n as f32;
    assert!(
        (got - want).abs() < 1e-4,
        "first loss {got}, expected {want}"
    );
    let bad = [0usize, 3].repeat(n / 2); // label 3 is not a class of task 1
    assert!(
        FusionTrainer::new_shared(
            VectorSource::Cached(cache.clone()),
            &task_of_row,
            &bad,
            &[2, 3],
            &fcfg,
            &cfg,
            &device
        )
        .is_err()
    );
    let mut tr = FusionTrainer::new_shared(
        VectorSource::Cached(cache.clone()),
        &task_of_row,
        &labels,
        &[2, 3],
        &fcfg,
        &cfg,
        &device,
    )
    .unwrap();
    block_on(run_to_end(&mut tr)).unwrap();
    let layers = tr.finish_shared().unwrap();
    assert_eq!(layers.len(), 2);
    for (t, layer) in layers.iter().enumerate() {
        let rows: Vec<usize> = (0..n).filter(|&r| task_of_row[r] == t).collect();
        let (b, a) = cache.select(&rows, &device);
        let (logits, [m, c]) = host2(layer.forward(b, a, None, false).logits);
        assert_eq!(c, [2, 3][t]);
        let correct = (0..m)
            .filter(|&i| infer::argmax(&logits[i * c..(i + 1) * c]) == labels[rows[i]])
            .count();
        assert!(
            correct as f64 >= 0.9 * m as f64,
            "task {t}: {correct}/{m} training rows right"
        );
    }
}

/// A task whose models disagree with its labels (a bundle or fused model from elsewhere) is an
/// error from `predict_all`, not a panic.
#[test]
fn a_task_whose_models_disagree_with_its_labels_is_an_error() {
    let engine = common::engine();
    let device = &engine.device;
    let adapter =
        LoraAdapter::init(&LoraConfig::default(), &engine.encoder.config, 1, device).unwrap();
    let head = ClassifierHead::init(384, 2, 0.0, 1, device);
    let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let two = three[..2].to_vec();
    let fusion = FusionConfig::new(384, 1, 3).init(1, device);
    let fresh = ClassifierHead::init(384, 3, 0.0, 2, device);
    let texts = ["one text", "another text"];
    let run =
        |labels: &[String], fusion: Option<&AttentionFusion>, fresh: Option<&ClassifierHead>| {
            let parts = [TaskParts {
                name: "t",
                labels,
                adapter: &adapter,
                head: &head,
                fusion,
                temperature: 1.0,
                hybrid_temperature: 1.0,
                answer: Answerer::Frozen,
                fresh: fresh.map(|head| FreshHead {
                    head,
                    reads: None,
                    temperature: 1.0,
                }),
            }];
            block_on(predict_all(
                &engine.encoder,
                &engine.tokenizer,
                &parts,
                &texts,
                device,
            ))
        };
    let err = run(&three, None, None).unwrap_err().to_string();
    assert!(
        err.contains("has 3 labels, but its head gives 2 classes"),
        "{err}"
    );
    let err = run(&two, Some(&fusion), None).unwrap_err().to_string();
    assert!(err.contains("its fusion layer gives 3 classes"), "{err}");
    let err = run(&two, None, Some(&fresh)).unwrap_err().to_string();
    assert!(err.contains("its fresh head gives 3 classes"), "{err}");
    // Agreeing models predict; the frozen model's fresh head answers.
    let head2 = ClassifierHead::init(384, 2, 0.0, 3, device);
    let out = run(&two, None, Some(&head2)).unwrap();
    assert_eq!(out.predictions.len(), 2);
    assert_eq!(out.predictions[0][0].answerer(), Answerer::Frozen);
}
