//! The per-task comparison of docs/design.md §1.4: the frozen probe, single-task LoRA and the
//! hybrid scored on the same encoded held-out rows (accuracy, macro-F1, MCC, confusion), and the
//! frozen probe's training. The page's report, `lorafuse train --compare-frozen`, `lorafuse eval`
//! and `bench` all score through [`compare`].
//!
//! Scoring works on pooled vectors ([`EvalVectors`]): the rows are encoded once (the base and the
//! adapters a method needs) and every method reads the same vectors.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fusion::AttentionFusion;
use crate::host;
use crate::infer::{EVAL_BATCH, SortedBatches};
use crate::lora::LoraAdapter;
use crate::model::ClassifierHead;
use crate::train::metrics::{ConfusionMatrix, Metrics, evaluate};
use crate::train::probe::{self, ProbeTrainer};
use crate::train::stage2::FusionCache;
use crate::train::{TrainConfig, run_to_end};

/// The pooled vectors of a set of rows that the methods read.
#[derive(Debug, Clone)]
pub struct EvalVectors {
    /// `[n, d]` frozen-base vectors (the probe's input and the fusion's base branch), if encoded.
    pub base: Option<Tensor<2>>,
    /// `[n, K, d]` adapter vectors in fusion order (K = 1 when only the task's own is encoded).
    pub adapters: Tensor<3>,
    /// Index of the task's own adapter in `adapters`.
    pub own: usize,
}

impl EvalVectors {
    /// Encodes `texts` with each of `adapters` (and the base, with `with_base`); `own` is the
    /// task's own adapter's index in `adapters`.
    pub async fn encode<S: AsRef<str>>(
        engine: &Engine,
        texts: &[S],
        adapters: &[&LoraAdapter],
        own: usize,
        with_base: bool,
    ) -> Result<Self> {
        if own >= adapters.len() {
            return Err(Error::Invalid("the task's own adapter is not among the adapters".into()));
        }
        let e = engine;
        let batches = SortedBatches::new(&e.tokenizer, texts, EVAL_BATCH)?;
        let base = match with_base {
            true => Some(batches.pooled(&e.encoder, None, &e.device).await?),
            false => None,
        };
        let mut per = Vec::with_capacity(adapters.len());
        for a in adapters {
            per.push(batches.pooled(&e.encoder, Some(a), &e.device).await?);
        }
        Ok(Self {
            base,
            adapters: Tensor::stack(per, 1),
            own,
        })
    }

    /// The vectors of a fusion cache (base and every adapter).
    pub fn from_cache(cache: &FusionCache, own: usize) -> Self {
        Self {
            base: Some(cache.base.clone()),
            adapters: cache.adapters.clone(),
            own,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.adapters.dims()[0]
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[n, d]` vectors of the task's own adapter.
    pub fn own_vectors(&self) -> Tensor<2> {
        let [n, _, d] = self.adapters.dims();
        self.adapters
            .clone()
            .slice([0..n, self.own..self.own + 1, 0..d])
            .squeeze_dim::<2>(1)
    }
}

/// The methods to score; each one present is scored, in the order frozen, lora, hybrid.
#[derive(Default, Clone, Copy)]
pub struct Methods<'a> {
    /// The frozen probe's head (reads the base vectors).
    pub frozen: Option<&'a ClassifierHead>,
    /// The task's stage-1 head (reads its own adapter's vectors).
    pub lora: Option<&'a ClassifierHead>,
    /// The task's fusion layer (reads the base and every adapter's vectors).
    pub hybrid: Option<&'a AttentionFusion>,
}

/// One method's scores on a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResult {
    /// `frozen`, `lora`, `hybrid`, or a variant's name.
    pub method: String,
    /// Accuracy, macro-F1, MCC.
    pub metrics: Metrics,
    /// Counts of truth × prediction.
    pub confusion: ConfusionMatrix,
}

/// Every scored method of one task on one set of rows.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// In the order frozen, lora, hybrid (those scored).
    pub results: Vec<MethodResult>,
    /// With a fusion: its attention over the adapters, averaged over the rows.
    pub attention: Option<Vec<f32>>,
}

impl Comparison {
    /// The result of `method`, if it was scored.
    pub fn get(&self, method: &str) -> Option<&MethodResult> {
        self.results.iter().find(|r| r.method == method)
    }
}

/// Softmax rows of a `[n, classes]` logits tensor.
pub async fn probability_rows(logits: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let c = logits.dims()[1].max(1);
    let v = host::floats(softmax(logits, 1)).await?;
    Ok(v.chunks(c).map(<[f32]>::to_vec).collect())
}

/// Scores `methods` on the rows of `v` whose classes are `labels` (of `classes` classes).
pub async fn compare(
    v: &EvalVectors,
    labels: &[usize],
    classes: usize,
    methods: &Methods<'_>,
) -> Result<Comparison> {
    if v.len() != labels.len() {
        return Err(Error::Invalid("one label per encoded row is needed".into()));
    }
    let score = |method: &str, probs: &[Vec<f32>]| {
        let (metrics, confusion) = evaluate(probs, labels, classes);
        MethodResult {
            method: method.into(),
            metrics,
            confusion,
        }
    };
    let base = || {
        v.base
            .clone()
            .ok_or_else(|| Error::Invalid("the base model's vectors were not encoded".into()))
    };
    let mut results = Vec::new();
    let mut attention = None;
    if let Some(h) = methods.frozen {
        let probs = probability_rows(h.forward(base()?, false)).await?;
        results.push(score("frozen", &probs));
    }
    if let Some(h) = methods.lora {
        let probs = probability_rows(h.forward(v.own_vectors(), false)).await?;
        results.push(score("lora", &probs));
    }
    if let Some(f) = methods.hybrid {
        if f.adapters() != v.adapters.dims()[1] {
            return Err(Error::Fusion(format!(
                "the fusion expects {} adapters, but {} were encoded",
                f.adapters(),
                v.adapters.dims()[1]
            )));
        }
        let out = f.forward(base()?, v.adapters.clone(), None, false);
        attention = Some(host::floats(out.weights.mean_dim(0)).await?);
        let probs = probability_rows(out.logits).await?;
        results.push(score("hybrid", &probs));
    }
    Ok(Comparison { results, attention })
}

/// Trains the frozen probe (docs/design.md §1.4): a linear head on the frozen base's vectors of
/// the training rows, `features` `[n, d]`, with the probe's settings derived from `stage1`.
pub async fn train_probe(
    features: Tensor<2>,
    labels: &[usize],
    classes: usize,
    stage1: &TrainConfig,
    device: &Device,
) -> Result<ClassifierHead> {
    let cfg = probe::default_config(stage1);
    let mut p = ProbeTrainer::new(features, labels, classes, &cfg, device)?;
    run_to_end(&mut p).await?;
    Ok(p.finish())
}
