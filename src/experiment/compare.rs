//! The per-task comparison of docs/design.md §1.4: the frozen probe, single-task LoRA and the
//! hybrid scored on the same encoded held-out rows (accuracy with its Wilson interval, macro-F1,
//! MCC, confusion, calibration; the exact McNemar test between two methods), and the
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
use crate::infer::{EVAL_BATCH, SortedBatches, argmax};
use crate::lora::LoraAdapter;
use crate::model::ClassifierHead;
use crate::train::calibration::{self, Calibration};
use crate::train::metrics::{ConfusionMatrix, Metrics, evaluate};
use crate::train::probe::{self, ProbeTrainer};
use crate::train::stage2::FusionCache;
use crate::train::uncertainty::{Paired, Z95, wilson};
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
            return Err(Error::Invalid(
                "the task's own adapter is not among the adapters".into(),
            ));
        }
        let e = engine;
        let batches = SortedBatches::new(&e.tokenizer, texts, EVAL_BATCH)?;
        // The base's pass (if wanted) and every adapter's, at once where there are threads.
        let passes: Vec<Option<&LoraAdapter>> = with_base
            .then_some(None)
            .into_iter()
            .chain(adapters.iter().map(|&a| Some(a)))
            .collect();
        let mut per = batches.pooled_each(&e.encoder, &passes, &e.device).await?;
        let base = with_base.then(|| per.remove(0));
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
    /// Every row's class probabilities, as the method gives them (temperature 1).
    pub probabilities: Vec<Vec<f32>>,
    /// Calibration of those probabilities.
    pub calibration: Calibration,
}

impl MethodResult {
    /// Scores `probs` against `labels`.
    pub fn new(method: &str, probs: Vec<Vec<f32>>, labels: &[usize], classes: usize) -> Self {
        let (metrics, confusion) = evaluate(&probs, labels, classes);
        Self {
            method: method.into(),
            metrics,
            confusion,
            calibration: Calibration::of(&probs, labels),
            probabilities: probs,
        }
    }

    /// The predicted class of every row.
    pub fn predictions(&self) -> Vec<usize> {
        self.probabilities.iter().map(|p| argmax(p)).collect()
    }

    /// The 95 % Wilson interval of the accuracy.
    pub fn accuracy_interval(&self) -> (f64, f64) {
        wilson(self.confusion.correct(), self.confusion.total(), Z95)
    }

    /// The same rows at temperature `t` (predictions and metrics unchanged, calibration anew).
    pub fn at_temperature(&self, t: f64, labels: &[usize]) -> Self {
        let probs = calibration::scale(&self.probabilities, t);
        Self {
            calibration: Calibration::of(&probs, labels),
            probabilities: probs,
            ..self.clone()
        }
    }

    /// Calibration measured honestly on these rows after temperature scaling, and the
    /// reliability diagram's bins of the same probabilities: each half of the rows scaled with the
    /// temperature fitted on the other half ([`calibration::cross_fitted`]).
    pub fn cross_fitted(&self, labels: &[usize]) -> (Calibration, Vec<calibration::Bin>) {
        let probs = calibration::cross_fitted(&self.probabilities, labels);
        (
            Calibration::of(&probs, labels),
            calibration::reliability(&probs, labels),
        )
    }
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

    /// Methods `a` and `b` compared row by row (exact McNemar test), if both were scored.
    pub fn paired(&self, a: &str, b: &str, labels: &[usize]) -> Option<Paired> {
        let (a, b) = (self.get(a)?, self.get(b)?);
        Some(Paired::of(&a.predictions(), &b.predictions(), labels))
    }
}

/// Methods `a` and `b` compared on the same rows, in words: "hybrid 64.0 % vs lora 62.0 % on the
/// same 50 examples: no significant difference (exact McNemar test, p = 0.77)".
pub fn paired_finding(a: &MethodResult, b: &MethodResult, p: &Paired) -> String {
    let verdict = if p.p_value < 0.05 {
        let better = if a.metrics.accuracy > b.metrics.accuracy {
            &a.method
        } else {
            &b.method
        };
        format!("{better} is significantly better")
    } else {
        "no significant difference".to_string()
    };
    format!(
        "{} {:.1} % vs {} {:.1} % on the same {} examples: {verdict} (exact McNemar test, {} vs {} \
         examples only one of them got right, {})",
        a.method,
        100.0 * a.metrics.accuracy,
        b.method,
        100.0 * b.metrics.accuracy,
        p.n,
        p.only_first,
        p.only_second,
        fmt_p(p.p_value),
    )
}

/// A p-value for people: "p = 0.77" with two decimals, "p < 0.001" below that.
pub fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.2}")
    }
}

/// Half-width of a 95 % interval above which the report suggests more held-out data (5 points).
pub const WIDE_INTERVAL: f64 = 0.05;

/// A note when any method's accuracy interval is wider than ±[`WIDE_INTERVAL`].
pub fn width_finding(results: &[MethodResult]) -> Option<String> {
    let widest = results
        .iter()
        .map(|r| {
            let (lo, hi) = r.accuracy_interval();
            (hi - lo) / 2.0
        })
        .fold(0.0f64, f64::max);
    (widest > WIDE_INTERVAL).then(|| {
        format!(
            "the 95 % intervals are up to ±{:.1} points wide on these {} examples: differences \
             smaller than that may be noise; more labelled examples or a test file narrow them",
            100.0 * widest,
            results.first().map_or(0, |r| r.metrics.n)
        )
    })
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
    let score =
        |method: &str, probs: Vec<Vec<f32>>| MethodResult::new(method, probs, labels, classes);
    let base = || {
        v.base
            .clone()
            .ok_or_else(|| Error::Invalid("the base model's vectors were not encoded".into()))
    };
    let mut results = Vec::new();
    let mut attention = None;
    if let Some(h) = methods.frozen {
        let probs = probability_rows(h.forward(base()?, false)).await?;
        results.push(score("frozen", probs));
    }
    if let Some(h) = methods.lora {
        let probs = probability_rows(h.forward(v.own_vectors(), false)).await?;
        results.push(score("lora", probs));
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
        results.push(score("hybrid", probs));
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
    let cfg = probe::default_config(stage1).scaled_to(labels.len());
    let mut p = ProbeTrainer::new(features, labels, classes, &cfg, device)?;
    run_to_end(&mut p).await?;
    Ok(p.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of two classes where the first `correct` rows are predicted right (class 0, p 0.8).
    fn method(name: &str, correct: usize, n: usize) -> MethodResult {
        let probs = (0..n)
            .map(|i| {
                if i < correct {
                    vec![0.8, 0.2]
                } else {
                    vec![0.3, 0.7]
                }
            })
            .collect();
        MethodResult::new(name, probs, &vec![0; n], 2)
    }

    #[test]
    fn the_paired_finding_states_the_test_in_words() {
        let labels = vec![0; 50];
        let (h, l) = (method("hybrid", 32, 50), method("lora", 31, 50));
        let p = Paired::of(&h.predictions(), &l.predictions(), &labels);
        assert_eq!(
            paired_finding(&h, &l, &p),
            "hybrid 64.0 % vs lora 62.0 % on the same 50 examples: no significant difference \
             (exact McNemar test, 1 vs 0 examples only one of them got right, p = 1.00)"
        );
        // 20 rows only the hybrid got right, none only LoRA: p = 2 / 2^20.
        let (h, l) = (method("hybrid", 40, 50), method("lora", 20, 50));
        let p = Paired::of(&h.predictions(), &l.predictions(), &labels);
        assert!(paired_finding(&h, &l, &p).contains("hybrid is significantly better"));
        assert!(paired_finding(&h, &l, &p).ends_with("p < 0.001)"));
    }

    #[test]
    fn wide_intervals_are_called_out() {
        let few = [method("lora", 32, 50)];
        let note = width_finding(&few).expect("±13 points on 50 examples");
        assert!(note.contains("±12.9 points"), "{note}");
        let many = [method("lora", 3200, 5000)];
        assert!(
            width_finding(&many).is_none(),
            "±1.3 points on 5000 examples"
        );
        let r = &few[0];
        assert_eq!(r.metrics.n, 50);
        let (lo, hi) = r.accuracy_interval();
        assert!((lo - 0.501_410_2).abs() < 1e-6 && (hi - 0.758_612_5).abs() < 1e-6);
    }
}
