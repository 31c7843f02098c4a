//! Choosing on held-out rows (docs/design.md §1.6): the fusion's epoch is selected on all
//! held-out rows ([`SelectOnHeldOut`]), and the gate compares each half's choice with the task's
//! own LoRA on the other half ([`SelectOnHeldOut::gate`]), so no row both selects and checks. The
//! cross-validated gate, over the training rows, is in [`cv`]. The job that uses them is
//! [`super::fusion_job::train_runs`]; the verdict is a
//! [`GateCheck`](crate::fusion::files::GateCheck).

use crate::error::{Error, Result};
use crate::fusion::AttentionFusion;
use crate::fusion::files::better;
use crate::infer::argmax;
use crate::model::ClassifierHead;
use crate::train::Observer;
use crate::train::driver::EpochEnd;
use crate::train::stage2::{FusionCache, FusionTrainer};
use crate::train::uncertainty::Paired;

/// Held-out rows below which selection and gate share them (each half would hold fewer than 2).
pub const MIN_SPLIT_HELD_OUT: usize = 4;

/// Folds of the cross-validated gate where the caller does not choose (the page, `bench-transfer`):
/// measured with 3 (docs/results.md); each fold costs one more adapter on 2/3 of the task's rows.
pub const DEFAULT_GATE_FOLDS: usize = 3;

/// Training rows below which the page cross-validates the gate by default: where it was measured
/// to pay (N ≤ 64: +4.7 points over the own LoRA against +2.8 for the held-out gate, and no loss
/// beyond 1 point on an unrelated target, docs/results.md), and where the extra adapters are cheap.
pub const CROSS_VALIDATE_BELOW_ROWS: usize = 200;

/// Folds of a task's cross-validated gate when `asked` are asked for (0 or 1: none) and it has
/// `held_out` held-out rows: with none (a small task trains on all its rows, docs/design.md §4)
/// at least [`DEFAULT_GATE_FOLDS`], since nothing else could check it.
pub fn gate_folds_for(asked: usize, held_out: usize) -> usize {
    match (asked, held_out) {
        (0 | 1, 0) => DEFAULT_GATE_FOLDS,
        (k, _) => k,
    }
}

/// Held-out rows with their classes.
#[derive(Clone)]
pub(super) struct HeldOut {
    pub(super) cache: FusionCache,
    pub(super) labels: Vec<usize>,
}

/// (accuracy, mean NLL) of probability rows against `labels`.
fn score(probs: &[Vec<f32>], labels: &[usize]) -> (f64, f64) {
    let classes = probs.first().map_or(0, Vec::len);
    let (metrics, _) = crate::train::metrics::evaluate(probs, labels, classes);
    let nll = crate::train::calibration::nll(probs, labels, 1.0);
    (metrics.accuracy, nll)
}

/// Rows only `a` got right and rows only `b` got right (arg-max against `labels`).
fn discordant(a: &[Vec<f32>], b: &[Vec<f32>], labels: &[usize]) -> (usize, usize) {
    let arg = |p: &[Vec<f32>]| p.iter().map(|r| argmax(r)).collect::<Vec<_>>();
    let p = Paired::of(&arg(a), &arg(b), labels);
    (p.only_first, p.only_second)
}

impl HeldOut {
    /// `layer`'s probability rows.
    async fn layer_probs(&self, layer: &AttentionFusion) -> Result<Vec<Vec<f32>>> {
        let c = &self.cache;
        let out = layer.forward(c.base.clone(), c.adapters.clone(), None, false);
        super::compare::probability_rows(out.logits).await
    }

    /// The own LoRA's probability rows: `head` on adapter `own`'s vectors.
    async fn lora_probs(&self, own: usize, head: &ClassifierHead) -> Result<Vec<Vec<f32>>> {
        let v = self
            .cache
            .adapter(own)
            .ok_or_else(|| Error::Fusion("the own adapter is not among the fused ones".into()))?;
        super::compare::probability_rows(head.forward(v, false)).await
    }
}

/// Keeps the fusion of the epoch that scores best on the held-out rows (accuracy, then NLL;
/// the earliest on ties), or of the epoch `keep` (chosen by cross-validation): one run's own
/// observer under [`drive_together`]. With `patience`, it ends the run early: `patience` epochs
/// after the best one without a better one, or once the epoch `keep` is trained. It keeps every
/// epoch's probabilities on each half of the held-out rows for the gate ([`Self::gate`]).
pub(super) struct SelectOnHeldOut<'a> {
    /// The held-out rows in halves ([`FusionTarget::held_out_halves`](super::FusionTarget)).
    pub(super) rows: Option<&'a [HeldOut]>,
    pub(super) keep: Option<usize>,
    pub(super) patience: Option<usize>,
    pub(super) best: Option<((f64, f64), usize, AttentionFusion)>,
    /// The last epoch offered.
    pub(super) seen: usize,
    /// Per half, per epoch: the layer's probability rows.
    pub(super) curves: Vec<Vec<Vec<Vec<f32>>>>,
}

impl<'a> SelectOnHeldOut<'a> {
    pub(super) fn new(
        rows: Option<&'a [HeldOut]>,
        keep: Option<usize>,
        patience: Option<usize>,
    ) -> Self {
        Self {
            rows,
            keep,
            patience,
            best: None,
            seen: 0,
            curves: vec![Vec::new(); rows.map_or(0, <[HeldOut]>::len)],
        }
    }

    pub(super) async fn offer(&mut self, layer: AttentionFusion, epoch: usize) -> Result<()> {
        self.seen = epoch;
        if let Some(keep) = self.keep {
            if keep == epoch {
                self.best = Some(((0.0, 0.0), epoch, layer));
            }
            return Ok(());
        }
        let Some(rows) = self.rows else {
            return Ok(());
        };
        let mut all = Pooled::default();
        for (half, curve) in rows.iter().zip(&mut self.curves) {
            let probs = half.layer_probs(&layer).await?;
            all.add(probs.clone(), &half.labels);
            curve.push(probs);
        }
        let score = all.score();
        if self.best.as_ref().is_none_or(|(b, _, _)| better(score, *b)) {
            self.best = Some((score, epoch, layer));
        }
        Ok(())
    }

    /// The gate's evidence on the held-out rows, `(hybrid, own LoRA)` on the same rows: each
    /// half's rows scored by the epoch the *other* half selects (so no row both selects and
    /// checks), against the own LoRA (`head` on adapter `own`'s vectors); with one half, its
    /// best epoch on its own rows. `None` without held-out rows or with `keep`.
    pub(super) async fn gate(
        &self,
        own: usize,
        head: &ClassifierHead,
    ) -> Result<Option<(Pooled, Pooled)>> {
        let Some(rows) = self.rows else {
            return Ok(None);
        };
        if self.keep.is_some() || self.curves.iter().any(Vec::is_empty) {
            return Ok(None);
        }
        let (mut hybrid, mut lora) = (Pooled::default(), Pooled::default());
        for (h, half) in rows.iter().enumerate() {
            // The other half's choice (with one half, its own).
            let other = (h + 1) % rows.len();
            let choice = best_of(&self.curves[other], &rows[other].labels);
            hybrid.add(self.curves[h][choice].clone(), &half.labels);
            lora.add(half.lora_probs(own, head).await?, &half.labels);
        }
        Ok(Some((hybrid, lora)))
    }
}

/// The epoch whose probability rows score best on `labels` (accuracy, then NLL; the earliest on
/// ties).
fn best_of(curve: &[Vec<Vec<f32>>], labels: &[usize]) -> usize {
    let scores: Vec<(f64, f64)> = curve.iter().map(|p| score(p, labels)).collect();
    let mut best = 0;
    for (e, &s) in scores.iter().enumerate() {
        if better(s, scores[best]) {
            best = e;
        }
    }
    best
}

impl Observer<FusionTrainer> for SelectOnHeldOut<'_> {
    async fn should_stop(&mut self) -> bool {
        let Some(patience) = self.patience else {
            return false;
        };
        match (self.keep, &self.best) {
            // The kept epoch is trained: the rest would change nothing the job returns but
            // `last`.
            (Some(_), best) => best.is_some(),
            (None, Some((_, best, _))) => self.seen >= best + patience,
            (None, None) => false,
        }
    }

    async fn on_epoch_end(&mut self, t: &FusionTrainer, e: EpochEnd) -> Result<()> {
        self.offer(t.current(), e.epoch).await
    }
}

/// Out-of-fold probability rows pooled over the folds, with their classes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Pooled {
    pub(super) probs: Vec<Vec<f32>>,
    pub(super) labels: Vec<usize>,
}

impl Pooled {
    pub(super) fn add(&mut self, probs: Vec<Vec<f32>>, labels: &[usize]) {
        self.probs.extend(probs);
        self.labels.extend_from_slice(labels);
    }

    /// (accuracy, mean NLL).
    pub(super) fn score(&self) -> (f64, f64) {
        score(&self.probs, &self.labels)
    }

    /// Rows pooled.
    pub(super) fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Rows only these probabilities got right, and rows only `other`'s did (the same rows).
    pub(super) fn discordant(&self, other: &Pooled) -> (usize, usize) {
        discordant(&self.probs, &other.probs, &self.labels)
    }
}

mod cv;
pub(super) mod sources;

pub(super) use cv::{CvCurve, check_rows};
pub use cv::{CvFold, cv_fold_count, cv_fold_models, cv_folds_from};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::block_on;
    use burn::tensor::Device;

    /// Two-class probability rows that put `p` on class 1.
    fn rows(ps: &[f32]) -> Vec<Vec<f32>> {
        ps.iter().map(|&p| vec![1.0 - p, p]).collect()
    }

    /// Held-out rows with the given classes (vectors all zero: only the own LoRA reads them).
    fn held_out(labels: Vec<usize>) -> HeldOut {
        let device = Device::flex();
        let n = labels.len();
        HeldOut {
            cache: FusionCache {
                base: burn::tensor::Tensor::zeros([n, 4], &device),
                adapters: burn::tensor::Tensor::zeros([n, 1, 4], &device),
            },
            labels,
        }
    }

    #[test]
    fn each_half_of_the_held_out_rows_is_checked_with_the_epoch_the_other_selects() {
        let device = Device::flex();
        let halves = [held_out(vec![1, 1]), held_out(vec![0, 0])];
        let mut s = SelectOnHeldOut::new(Some(&halves), None, None);
        // Half 0 (class 1) is best at epoch 1, half 1 (class 0) at epoch 2.
        s.curves[0] = vec![rows(&[0.4, 0.4]), rows(&[0.9, 0.9]), rows(&[0.6, 0.6])];
        s.curves[1] = vec![rows(&[0.6, 0.6]), rows(&[0.4, 0.4]), rows(&[0.1, 0.1])];
        let head = ClassifierHead::init(4, 2, 0.0, 1, &device);
        let (hybrid, lora) = block_on(s.gate(0, &head)).unwrap().unwrap();
        // Half 0 scored at half 1's epoch 2, half 1 at half 0's epoch 1.
        assert_eq!(
            hybrid.probs,
            [rows(&[0.6, 0.6]), rows(&[0.4, 0.4])].concat()
        );
        assert_eq!(hybrid.labels, vec![1, 1, 0, 0]);
        assert_eq!(lora.labels, hybrid.labels);
        assert_eq!(hybrid.score().0, 1.0);
        // One "half" (too few rows to split): its own best epoch.
        let one = [held_out(vec![1, 0])];
        let mut s = SelectOnHeldOut::new(Some(&one), None, None);
        s.curves[0] = vec![rows(&[0.4, 0.6]), rows(&[0.9, 0.1])];
        let (hybrid, _) = block_on(s.gate(0, &head)).unwrap().unwrap();
        assert_eq!(hybrid.probs, rows(&[0.9, 0.1]));
        // The epoch chosen by cross-validation: no held-out gate.
        let mut s = SelectOnHeldOut::new(Some(&halves), Some(1), None);
        s.curves[0] = vec![rows(&[0.4, 0.4])];
        s.curves[1] = vec![rows(&[0.4, 0.4])];
        assert!(block_on(s.gate(0, &head)).unwrap().is_none());
    }
}
