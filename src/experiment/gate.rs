//! Choosing on held-out rows (docs/design.md §1.6): the fusion's epoch is selected on some
//! held-out rows ([`SelectOnHeldOut`]), and the gate compares the selected hybrid with the task's
//! own LoRA on others ([`HeldOut`]), so the gate is not fooled by the selection. The job that uses
//! them is [`super::fusion_job::train_runs`]; the verdict is a
//! [`GateCheck`](crate::fusion::files::GateCheck).

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;

use super::fusion_job::FusionObserver;
use super::split::Labelled;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fusion::files::better;
use crate::fusion::{AttentionFusion, FusionConfig};
use crate::infer::{argmax, pooled_vectors};
use crate::lora::LoraConfig;
use crate::model::ClassifierHead;
use crate::train::driver::EpochEnd;
use crate::train::stage1::{LoraTrainer, TaskModel};
use crate::train::stage2::{FusionCache, FusionTrainer, VectorSource};
use crate::train::together::drive_together;
use crate::train::uncertainty::Paired;
use crate::train::{Observer, Outcome, TrainConfig};

/// Held-out rows below which selection and gate share them (each half would hold fewer than 2).
pub const MIN_SPLIT_HELD_OUT: usize = 4;

/// Folds of the cross-validated gate where the caller does not choose (the page, `bench-transfer`):
/// measured with 3 (docs/results.md); each fold costs one more adapter on 2/3 of the task's rows.
pub const DEFAULT_GATE_FOLDS: usize = 3;

/// Training rows below which the page cross-validates the gate by default: where it was measured
/// to pay (N ≤ 64: +4.7 points over the own LoRA against +2.8 for the held-out gate, and no loss
/// beyond 1 point on an unrelated target, docs/results.md), and where the extra adapters are cheap.
pub const CROSS_VALIDATE_BELOW_ROWS: usize = 200;

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
        let [n, k, d] = self.cache.adapters.dims();
        if own >= k {
            return Err(Error::Fusion(
                "the own adapter is not among the fused ones".into(),
            ));
        }
        let v = self
            .cache
            .adapters
            .clone()
            .slice([0..n, own..own + 1, 0..d])
            .reshape([n, d]);
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

/// One fold of the cross-validated gate: the task's own adapter and head trained on the other
/// folds' rows ([`cv_fold_models`], [`cv_folds_from`]), and every row of the task encoded with that adapter in the own
/// slot, cut into the fold's training rows and the rows it left out.
#[derive(Clone)]
pub struct CvFold {
    /// The K + 1 vectors of the rows the fold's adapter trained on.
    pub(super) fit: FusionCache,
    /// Their classes.
    pub(super) fit_y: Vec<usize>,
    /// The rows it left out.
    pub(super) out: HeldOut,
    /// The fold adapter's head.
    pub(super) head: ClassifierHead,
}

impl std::fmt::Debug for CvFold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CvFold")
            .field("fit_rows", &self.fit_y.len())
            .field("out_rows", &self.out.labels.len())
            .finish()
    }
}

/// The folds the cross-validated gate cuts `n` training rows into when `k` are asked for: at most
/// half the rows (each fold leaves out at least 2) and at least 2; none below 4 rows, where the
/// held-out rows decide as without cross-validation.
pub fn cv_fold_count(n: usize, k: usize) -> usize {
    match n < 4 {
        true => 0,
        false => k.clamp(2, n / 2),
    }
}

/// That `cache` holds one row per row of `rows`.
pub(super) fn check_rows(cache: &FusionCache, rows: &Labelled) -> Result<()> {
    match cache.len() == rows.len() {
        true => Ok(()),
        false => Err(Error::Fusion(format!(
            "cross-validation: {} rows for a cache of {}",
            rows.len(),
            cache.len()
        ))),
    }
}

/// Which of the [`cv_fold_count`]`(rows, k)` folds each of the task's rows is left out of
/// ([`crate::train::crossfit::folds`], stratified by class).
fn fold_of(labels: &[usize], k: usize) -> Vec<usize> {
    crate::train::crossfit::folds(labels, cv_fold_count(labels.len(), k))
}

/// The own adapter and head of each fold of the cross-validated gate, `(fold, model)` (a fold
/// that would leave out no row, as with classes smaller than `k`, has none): trained
/// with `lora` and the task's stage-1 settings `stage1` on the other folds' rows, through the
/// driver with `observer` (a stopped run returns `None`). A caller may keep them (the transfer
/// benchmark's cache) and make the folds again with [`cv_folds_from`].
pub async fn cv_fold_models<O: Observer<LoraTrainer>>(
    engine: &Engine,
    rows: &Labelled,
    classes: usize,
    lora: &LoraConfig,
    stage1: &TrainConfig,
    k: usize,
    observer: &mut O,
) -> Result<Option<Vec<(usize, TaskModel)>>> {
    let n = rows.len();
    let k = cv_fold_count(n, k);
    if k == 0 {
        // Too few rows for two folds of two: no folds, so the held-out rows decide.
        return Ok(Some(Vec::new()));
    }
    let fold = fold_of(&rows.labels, k);
    let e = engine;
    let mut models = Vec::with_capacity(k);
    for f in 0..k {
        let fit: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
        if fit.len() == n || fit.is_empty() {
            continue;
        }
        let (model, outcome) = crate::train::crossfit::train_fold(
            &e.encoder,
            &e.tokenizer,
            &rows.texts,
            &rows.labels,
            classes,
            lora,
            stage1,
            &fit,
            &e.device,
            observer,
        )
        .await?;
        if outcome == Outcome::Cancelled {
            return Ok(None);
        }
        models.push((f, model));
    }
    Ok(Some(models))
}

/// The folds of the cross-validated gate from their models (what [`cv_fold_models`] returned for
/// the same rows and `k`): every row of the task encoded once per fold with the fold's adapter in the own slot
/// (the base and the other adapters never saw the task's rows, so `cache`'s vectors are reused),
/// cut into the fold's training rows and the rows it left out.
pub async fn cv_folds_from(
    engine: &Engine,
    cache: &FusionCache,
    own: usize,
    rows: &Labelled,
    k: usize,
    models: &[(usize, TaskModel)],
) -> Result<Vec<CvFold>> {
    check_rows(cache, rows)?;
    let n = rows.len();
    if models.is_empty() || cv_fold_count(n, k) == 0 {
        return Ok(Vec::new());
    }
    let fold = fold_of(&rows.labels, k);
    let e = engine;
    let mut out_folds = Vec::with_capacity(models.len());
    for (f, model) in models {
        let fit: Vec<usize> = (0..n).filter(|&i| fold[i] != *f).collect();
        let out: Vec<usize> = (0..n).filter(|&i| fold[i] == *f).collect();
        if out.is_empty() || fit.is_empty() {
            return Err(Error::Fusion(format!(
                "cross-validation: fold {f} of {k} leaves nothing to fit or to score for {n} rows"
            )));
        }
        let v = pooled_vectors(
            &e.encoder,
            &e.tokenizer,
            Some(&model.adapter),
            &rows.texts,
            &e.device,
        )
        .await?;
        let all = cache.with_adapter(own, v)?;
        let part = |idx: &[usize]| {
            let (base, adapters) = all.select(idx, &e.device);
            FusionCache { base, adapters }
        };
        out_folds.push(CvFold {
            fit: part(&fit),
            fit_y: fit.iter().map(|&i| rows.labels[i]).collect(),
            out: HeldOut {
                cache: part(&out),
                labels: out.iter().map(|&i| rows.labels[i]).collect(),
            },
            head: model.head.clone(),
        });
    }
    Ok(out_folds)
}

/// Out-of-fold probability rows pooled over the folds, with their classes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Pooled {
    pub(super) probs: Vec<Vec<f32>>,
    pub(super) labels: Vec<usize>,
}

impl Pooled {
    fn add(&mut self, probs: Vec<Vec<f32>>, labels: &[usize]) {
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

/// The cross-validated learning curve of one fusion variant: the fusion trained on each fold's
/// rows as the full run will be, scored on the rows the fold left out after every epoch (0 = the
/// untrained layer), pooled over folds; and the fold LoRAs pooled on the same rows.
pub(super) struct CvCurve {
    /// Per epoch, 0..=epochs.
    pub(super) epochs: Vec<Pooled>,
    /// The fold adapters' own heads.
    pub(super) lora: Pooled,
    /// Folds.
    pub(super) folds: usize,
}

impl CvCurve {
    /// The epoch with the best pooled score (accuracy, then NLL; the earliest on ties).
    pub(super) fn best_epoch(&self) -> usize {
        let mut best = 0;
        for (e, p) in self.epochs.iter().enumerate() {
            if better(p.score(), self.epochs[best].score()) {
                best = e;
            }
        }
        best
    }

    /// The curves of several runs at once, each `(folds, own adapter slot, layer, settings)`:
    /// every fold of every run trains side by side ([`drive_together`]), with `observer` asked
    /// whether to stop between rounds and shown their joint progress as the job `job`. With
    /// `patience`, a run's folds all end once its pooled curve has gone `patience` epochs
    /// without beating its best epoch; its curve then holds the epochs every fold reached. A
    /// cancelled call returns `None`.
    pub(super) async fn run_all<O: FusionObserver>(
        runs: &[(&[CvFold], usize, &FusionConfig, &TrainConfig)],
        patience: Option<usize>,
        device: &Device,
        job: &str,
        observer: &mut O,
    ) -> Result<Option<Vec<Self>>> {
        let mut loras = Vec::with_capacity(runs.len());
        let mut pools = Vec::with_capacity(runs.len());
        let mut trainers = Vec::new();
        for &(folds, own, config, cfg) in runs {
            let mut lora = Pooled::default();
            let labels = folds.iter().map(|f| f.out.labels.clone()).collect();
            let pool = Rc::new(RefCell::new(FoldCurves::new(labels, patience)));
            for (i, f) in folds.iter().enumerate() {
                lora.add(f.out.lora_probs(own, &f.head).await?, &f.out.labels);
                let head = config.needs_own().then_some((own, &f.head));
                let source = VectorSource::Cached(f.fit.clone());
                let t = FusionTrainer::new(source, &f.fit_y, config, head, cfg, device)?;
                let probs = f.out.layer_probs(&t.current()).await?;
                pool.borrow_mut().add(i, probs);
                let curve = Curve {
                    rows: &f.out,
                    fold: i,
                    pool: pool.clone(),
                };
                trainers.push((t, curve));
            }
            loras.push(lora);
            pools.push(pool);
        }
        observer.start(job, trainers.iter().map(|(t, _)| t.total_steps()).sum());
        if drive_together(&mut trainers, observer).await? == Outcome::Cancelled {
            return Ok(None);
        }
        drop(trainers);
        let mut out = Vec::with_capacity(runs.len());
        for ((&(folds, ..), lora), pool) in runs.iter().zip(loras).zip(pools) {
            out.push(Self {
                epochs: std::mem::take(&mut pool.borrow_mut().epochs),
                lora,
                folds: folds.len(),
            });
        }
        Ok(Some(out))
    }
}

/// One run's folds' probabilities on their left-out rows, pooled per epoch once every fold has
/// reached it (in fold order, so every epoch pools the same rows in the same order as the fold
/// LoRAs), and the early-stopping decision on that pooled curve.
struct FoldCurves {
    /// Each fold's left-out classes.
    labels: Vec<Vec<usize>>,
    /// Each fold's probability rows per epoch, until pooled (then left empty).
    probs: Vec<Vec<Vec<Vec<f32>>>>,
    /// The epochs every fold has reached, pooled.
    epochs: Vec<Pooled>,
    patience: Option<usize>,
    /// The best pooled epoch so far (accuracy, then NLL; the earliest on ties).
    best: usize,
}

impl FoldCurves {
    fn new(labels: Vec<Vec<usize>>, patience: Option<usize>) -> Self {
        Self {
            probs: vec![Vec::new(); labels.len()],
            labels,
            epochs: Vec::new(),
            patience,
            best: 0,
        }
    }

    /// Fold `fold`'s probabilities after its next epoch.
    fn add(&mut self, fold: usize, probs: Vec<Vec<f32>>) {
        if let Some(p) = self.probs.get_mut(fold) {
            p.push(probs);
        }
        loop {
            let e = self.epochs.len();
            if self.probs.is_empty() || self.probs.iter().any(|p| p.len() <= e) {
                return;
            }
            let mut pooled = Pooled::default();
            for (p, l) in self.probs.iter_mut().zip(&self.labels) {
                pooled.add(std::mem::take(&mut p[e]), l);
            }
            let best = self.epochs.get(self.best);
            if best.is_none_or(|b| better(pooled.score(), b.score())) {
                self.best = e;
            }
            self.epochs.push(pooled);
        }
    }

    /// Whether the pooled curve has gone `patience` epochs without beating its best.
    fn should_stop(&self) -> bool {
        self.patience
            .is_some_and(|p| self.epochs.len() > self.best + p)
    }
}

/// One fold's fusion run: its probabilities on the fold's left-out rows after every epoch go to
/// the run's [`FoldCurves`], which also says when to stop (one run's own observer under
/// [`drive_together`]).
struct Curve<'a> {
    rows: &'a HeldOut,
    fold: usize,
    pool: Rc<RefCell<FoldCurves>>,
}

impl Observer<FusionTrainer> for Curve<'_> {
    async fn should_stop(&mut self) -> bool {
        self.pool.borrow().should_stop()
    }

    async fn on_epoch_end(&mut self, t: &FusionTrainer, _e: EpochEnd) -> Result<()> {
        let probs = self.rows.layer_probs(&t.current()).await?;
        self.pool.borrow_mut().add(self.fold, probs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::block_on;

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

    #[test]
    fn folds_leave_out_at_least_two_rows_and_need_four() {
        assert_eq!(cv_fold_count(3, 3), 0);
        assert_eq!(cv_fold_count(4, 3), 2);
        assert_eq!(cv_fold_count(9, 5), 4);
        assert_eq!(cv_fold_count(64, 3), 3);
        assert_eq!(cv_fold_count(64, 1), 2);
    }

    #[test]
    fn folds_pool_in_fold_order_once_all_reach_an_epoch_and_stop_after_patience() {
        // Fold 0 leaves out one row of class 1, fold 1 one row of class 0.
        let mut c = FoldCurves::new(vec![vec![1], vec![0]], Some(2));
        // Epoch 0: both wrong.
        c.add(1, rows(&[0.9]));
        assert!(c.epochs.is_empty(), "fold 0 has not reached epoch 0");
        c.add(0, rows(&[0.1]));
        assert_eq!(c.epochs.len(), 1);
        // Fold 1 runs ahead: epochs 1 and 2 (right from epoch 1 on).
        c.add(1, rows(&[0.2]));
        c.add(1, rows(&[0.3]));
        assert_eq!(c.epochs.len(), 1);
        // Fold 0 catches up: epoch 1 both right (the best), epoch 2 fold 0 wrong again.
        c.add(0, rows(&[0.8]));
        c.add(0, rows(&[0.4]));
        assert_eq!(c.epochs.len(), 3);
        assert_eq!(c.best, 1);
        // Pooled in fold order, whatever the order the folds reported in.
        assert_eq!(c.epochs[1].labels, vec![1, 0]);
        assert_eq!(c.epochs[1].probs, rows(&[0.8, 0.2]));
        assert_eq!(c.epochs[1].score().0, 1.0);
        assert!(!c.should_stop(), "one epoch since the best");
        c.add(0, rows(&[0.4]));
        c.add(1, rows(&[0.3]));
        assert!(c.should_stop(), "two epochs since the best");
        // Without patience it never stops.
        let mut c = FoldCurves::new(vec![vec![1]], None);
        for p in [0.9, 0.1, 0.1, 0.1] {
            c.add(0, rows(&[p]));
        }
        assert!(!c.should_stop());
    }
}
