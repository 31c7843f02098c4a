//! The cross-validated gate (docs/design.md §1.6): the task's own adapter trained once per fold
//! on the other folds' rows ([`cv_fold_models`]), the folds made from them ([`cv_folds_from`]),
//! and the fusion's learning curve pooled over the rows each fold left out ([`CvCurve`]), with
//! early stopping on that pooled curve ([`FoldCurves`]). The held-out half of the gate is in the
//! parent module.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;

use super::{HeldOut, Pooled};
use crate::data::LabelVocab;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::experiment::fusion_job::FusionObserver;
use crate::experiment::split::{Labelled, PreparedTask};
use crate::experiment::stage1::{Stage1Observer, Start, run_stage1_from};
use crate::fusion::FusionConfig;
use crate::fusion::files::better;
use crate::infer::pooled_vectors;
use crate::model::ClassifierHead;
use crate::train::driver::EpochEnd;
use crate::train::stage1::{LoraTrainer, TaskModel};
use crate::train::stage2::{FusionCache, FusionTrainer, VectorSource};
use crate::train::together::drive_together;
use crate::train::{Observer, Outcome, Progress, TrainConfig};

/// One fold of the cross-validated gate: the task's own adapter and head trained on the other
/// folds' rows ([`cv_fold_models`], [`cv_folds_from`]), and every row of the task encoded with that adapter in the own
/// slot, cut into the fold's training rows and the rows it left out.
#[derive(Clone)]
pub struct CvFold {
    /// The K + 1 vectors of the rows the fold's adapter trained on.
    pub(in crate::experiment) fit: FusionCache,
    /// Their classes.
    pub(in crate::experiment) fit_y: Vec<usize>,
    /// The rows it left out.
    pub(in crate::experiment) out: HeldOut,
    /// The fold adapter's head.
    pub(in crate::experiment) head: ClassifierHead,
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
pub(in crate::experiment) fn check_rows(cache: &FusionCache, rows: &Labelled) -> Result<()> {
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

/// A caller's step observer as stage 1's: progress and stopping, nothing per epoch.
struct Steps<'a, O>(&'a mut O);

impl<O: Observer<LoraTrainer>> Stage1Observer for Steps<'_, O> {
    async fn should_stop(&mut self) -> bool {
        self.0.should_stop().await
    }

    fn on_step(&mut self, p: &Progress) {
        self.0.on_step(p)
    }
}

/// The own adapter and head of each fold of the cross-validated gate, `(fold, model)` (a fold
/// that would leave out no row, as with classes smaller than `k`, has none): trained on the
/// other folds' rows exactly as the task's own adapter is, through the one stage-1 driver
/// ([`run_stage1_from`]) from the adapter's `start` with the task's stage-1 settings `stage1`,
/// and the objective the whole task trains with (its size decides it, not the fold's). `observer` sees every step and
/// may stop them (a stopped run returns `None`). A caller may keep them (the transfer
/// benchmark's cache) and make the folds again with [`cv_folds_from`].
pub async fn cv_fold_models<O: Observer<LoraTrainer>>(
    engine: &Engine,
    rows: &Labelled,
    classes: usize,
    start: Start<'_>,
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
    let cfg = TrainConfig {
        objective: stage1.objective_for(n, classes),
        ..stage1.clone()
    };
    let vocab = LabelVocab::from_names((0..classes).map(|c| c.to_string()));
    let mut models = Vec::with_capacity(k);
    for f in 0..k {
        let fit: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
        if fit.len() == n || fit.is_empty() {
            continue;
        }
        let task = PreparedTask {
            vocab: vocab.clone(),
            train: Labelled {
                texts: fit.iter().map(|&i| rows.texts[i].clone()).collect(),
                labels: fit.iter().map(|&i| rows.labels[i]).collect(),
            },
            held_out: Labelled::default(),
            held_out_dropped: 0,
            source: format!("fold {f} of {k}"),
        };
        let run = run_stage1_from(engine, &task, start, &cfg, false, &mut Steps(observer)).await?;
        if run.outcome == Outcome::Cancelled {
            return Ok(None);
        }
        models.push((f, run.model));
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

/// The cross-validated learning curve of one fusion variant: the fusion trained on each fold's
/// rows as the full run will be, scored on the rows the fold left out after every epoch (0 = the
/// untrained layer), pooled over folds; and the fold LoRAs pooled on the same rows.
pub(in crate::experiment) struct CvCurve {
    /// Per epoch, 0..=epochs.
    pub(in crate::experiment) epochs: Vec<Pooled>,
    /// The fold adapters' own heads.
    pub(in crate::experiment) lora: Pooled,
    /// Folds.
    pub(in crate::experiment) folds: usize,
}

impl CvCurve {
    /// The epoch with the best pooled score (accuracy, then NLL; the earliest on ties).
    pub(in crate::experiment) fn best_epoch(&self) -> usize {
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
    pub(in crate::experiment) async fn run_all<O: FusionObserver>(
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

    /// Two-class probability rows that put `p` on class 1.
    fn rows(ps: &[f32]) -> Vec<Vec<f32>> {
        ps.iter().map(|&p| vec![1.0 - p, p]).collect()
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
