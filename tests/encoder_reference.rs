//! The burn encoder matches PyTorch (`tests/fixtures/minilm/encoder.json`): sentence embeddings
//! within 1e-4, hidden states within 1e-3; batched + padded equals one-by-one; the CPU inference
//! paths equal the general ones; and, when a wgpu adapter exists (build with `--features wgpu`),
//! the GPU forward agrees with the CPU one (listed as ignored otherwise).

mod common;

use lorafuse::engine::Engine;
use lorafuse::host::{block_on, floats};
use lorafuse::model::{ForwardMode, mean_pool};

#[test]
fn embeddings_and_hidden_states_match_pytorch() {
    let fx = common::json("minilm/encoder.json");
    let engine = common::engine();
    for s in fx["sentences"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let text = s["text"].as_str().unwrap();
        let input = engine.tokenizer.batch(&[text]).unwrap();
        let want_ids: Vec<i64> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(input.ids, want_ids, "{name}: ids");

        let emb = block_on(engine.embed(&[text], None)).unwrap().remove(0);
        let d = common::max_abs_diff(&emb, &common::floats(&s["sentence_embedding"]));
        assert!(d < 1e-4, "{name}: sentence embedding differs by {d}");

        let mode = ForwardMode::eval(None);
        let (hidden, mask) = engine
            .encoder
            .hidden_states(&input, None, &mode, &engine.device);
        let t = input.seq;
        let want_layers = s["token0_hidden_states_first8"].as_array().unwrap();
        assert_eq!(
            hidden.len(),
            want_layers.len(),
            "{name}: embedding output + one per layer"
        );
        for (k, (h, want)) in hidden.iter().zip(want_layers).enumerate() {
            let v = block_on(floats(h.clone())).unwrap();
            let d = common::max_abs_diff(&v[..8], &common::floats(want));
            assert!(
                d < 1e-3,
                "{name}: hidden state {k}, token 0, differs by {d}"
            );
        }
        let last = block_on(floats(hidden.last().unwrap().clone())).unwrap();
        let dm = 384;
        let d = common::max_abs_diff(&last[..dm], &common::floats(&s["cls_last_hidden_state"]));
        assert!(d < 1e-3, "{name}: CLS last hidden differs by {d}");
        let d = common::max_abs_diff(
            &last[(t - 1) * dm..(t - 1) * dm + 8],
            &common::floats(&s["last_hidden_state_token_last_first8"]),
        );
        assert!(d < 1e-3, "{name}: last token differs by {d}");
        let pooled = block_on(floats(mean_pool(hidden.last().unwrap().clone(), mask))).unwrap();
        let d = common::max_abs_diff(&pooled, &common::floats(&s["mean_pooled_unnormalized"]));
        assert!(d < 1e-3, "{name}: unnormalised mean pool differs by {d}");
    }
}

#[test]
fn batched_and_padded_equals_one_by_one() {
    let fx = common::json("minilm/encoder.json");
    let engine = common::engine();
    let texts: Vec<String> = fx["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    let together = block_on(engine.embed(&texts, None)).unwrap();
    for (t, v) in texts.iter().zip(&together) {
        let alone = block_on(engine.embed(&[t], None)).unwrap().remove(0);
        let d = common::max_abs_diff(v, &alone);
        assert!(d < 1e-5, "padding changed the embedding of {t:?} by {d}");
    }
}

/// The CPU backends' inference paths (burn's fused attention, the vectorised GELU of
/// `model::gelu`) give the embeddings of the general ones, which an autodiff device takes (as in
/// training, and on the GPU).
#[test]
fn cpu_inference_paths_agree_with_the_general_ones() {
    let device = lorafuse::backend::cpu_device(lorafuse::backend::DEFAULT_CPU)
        .unwrap()
        .autodiff();
    let text = [
        "The quick brown fox jumps over the lazy dog.",
        "Hello world",
        "A much longer sentence, with punctuation; and numbers like 3.14 — to pad the other two.",
    ];
    assert_embeddings_agree(
        &common::engine_on_device(&device),
        &common::engine(),
        &text,
        1e-5,
        "the general and fast paths",
    );
}

/// Asserts that `a` and `b` embed every text within `tol` (max absolute difference).
fn assert_embeddings_agree(a: &Engine, b: &Engine, texts: &[&str], tol: f32, what: &str) {
    let ea = block_on(a.embed(texts, None)).unwrap();
    let eb = block_on(b.embed(texts, None)).unwrap();
    for ((x, y), t) in ea.iter().zip(&eb).zip(texts) {
        let d = common::max_abs_diff(x, y);
        assert!(d < tol, "{what} differ by {d} on {t:?}");
    }
}

#[test]
#[cfg_attr(
    not(all(feature = "flex", feature = "ndarray")),
    ignore = "needs both the flex and ndarray backends compiled in"
)]
fn cpu_backends_agree() {
    let text = [
        "A short sentence about cats.",
        "Another, longer sentence about the weather in spring.",
    ];
    assert_embeddings_agree(
        &common::engine_on("flex"),
        &common::engine_on("ndarray"),
        &text,
        1e-5,
        "flex and ndarray",
    );
}

/// Built only with `--features wgpu` (`./scripts/test --gpu`), where a missing adapter is a
/// failure, not a pass; otherwise listed as ignored.
#[test]
#[cfg_attr(
    not(feature = "wgpu"),
    ignore = "built without the `wgpu` feature (./scripts/test --gpu builds and runs it)"
)]
fn wgpu_agrees_with_cpu() {
    let device = lorafuse::backend::device("wgpu")
        .unwrap_or_else(|e| panic!("built with wgpu, but no wgpu adapter is usable here: {e}"));
    let text = [
        "The quick brown fox jumps over the lazy dog.",
        "Hello world",
    ];
    assert_embeddings_agree(
        &common::engine_on_device(&device),
        &common::engine(),
        &text,
        1e-3,
        "wgpu and CPU",
    );
}

/// The sha256 values the page checks its (cached) model files against are those of the installed
/// default model.
#[test]
fn installed_model_files_have_the_pages_sha256() {
    for (name, want) in lorafuse::engine::DEFAULT_MODEL_FILES {
        let bytes = common::read(&common::model_dir().join(name));
        assert_eq!(
            lorafuse::workspace::task_files::sha256_hex(&bytes),
            want,
            "{name}"
        );
    }
}
