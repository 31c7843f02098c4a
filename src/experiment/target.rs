//! A fusion run's target task ([`FusionTarget`]): its training rows encoded once by the base and
//! every fused adapter, its classes and settings, and what decides its epoch, gate and
//! temperature: the held-out rows (split in two for selection and gate), or the folds of the
//! cross-validated gate ([`super::gate::cv_fold_models`]). Training it is [`super::fusion_job`]'s.

use super::gate::{CvFold, HeldOut, MIN_SPLIT_HELD_OUT};
use super::split::Labelled;
use super::stage1::Start;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fusion::AttentionFusion;
use crate::lora::LoraAdapter;
use crate::model::ClassifierHead;
use crate::train::stage1::{LoraTrainer, TaskModel};
use crate::train::stage2::FusionCache;
use crate::train::{Observer, Outcome, TrainConfig};

/// One target task of a fusion run: its training rows encoded by the base and every adapter.
#[derive(Debug, Clone)]
pub struct FusionTarget {
    /// Task name.
    pub name: String,
    /// Label names in class order.
    pub labels: Vec<String>,
    /// The K + 1 vectors of every training row.
    pub cache: FusionCache,
    /// Class of every cached row.
    pub y: Vec<usize>,
    /// The fusion's training settings for this task.
    pub cfg: TrainConfig,
    /// The task's held-out rows, encoded likewise, with their classes: the fusion's epoch is
    /// selected on them, the gate compares the hybrid with the own LoRA on them, and the hybrid's
    /// temperature is fitted on them (none: the last epoch, the hybrid, temperature 1).
    pub held_out: Option<(FusionCache, Vec<usize>)>,
    /// The task's own adapter position among the fused adapters and its stage-1 head (needed by
    /// the residual variants and the gate; none: the paper's fusion only, no gate).
    pub own: Option<(usize, ClassifierHead)>,
    /// Folds of the cross-validated gate ([`FusionTarget::with_cv_folds`]; none: the epoch and
    /// the gate are decided on the held-out rows).
    pub cv: Option<Vec<CvFold>>,
}

impl FusionTarget {
    /// Encodes `rows` with the base and each of `adapters` (fusion order).
    pub async fn encode(
        engine: &Engine,
        adapters: &[&LoraAdapter],
        name: &str,
        labels: Vec<String>,
        rows: &Labelled,
        cfg: TrainConfig,
    ) -> Result<Self> {
        let e = engine;
        let cache =
            FusionCache::build(&e.encoder, &e.tokenizer, adapters, &rows.texts, &e.device).await?;
        Ok(Self {
            name: name.to_string(),
            labels,
            cache,
            y: rows.labels.clone(),
            cfg,
            held_out: None,
            own: None,
            cv: None,
        })
    }

    /// Records the task's own adapter position and stage-1 head.
    pub fn with_own(mut self, own: usize, head: &ClassifierHead) -> Self {
        self.own = Some((own, head.clone()));
        self
    }

    /// Decides the fusion's epoch and the gate by `k`-fold cross-validation over the task's
    /// training `rows` (the rows this target was encoded from) instead of on the few held-out
    /// rows (docs/design.md §1.6): trains `k` own adapters from the own adapter's `start` with the
    /// task's stage-1 settings `stage1` ([`super::gate::cv_fold_models`]; about `k − 1` stage-1 runs of the
    /// task) through the driver with `observer`, and makes the folds from them
    /// ([`Self::with_cv_fold_models`]; `k` encoder passes over the rows). Needs the own adapter
    /// ([`Self::with_own`]). A stopped run leaves the target as it was.
    #[allow(clippy::too_many_arguments)]
    pub async fn with_cv_folds<O: Observer<LoraTrainer>>(
        self,
        engine: &Engine,
        rows: &Labelled,
        start: Start<'_>,
        stage1: &TrainConfig,
        k: usize,
        observer: &mut O,
    ) -> Result<(Self, Outcome)> {
        if self.own.is_none() {
            return Err(Error::Fusion(
                "the cross-validated gate needs the task's own adapter".into(),
            ));
        }
        // Before training anything.
        super::gate::check_rows(&self.cache, rows)?;
        let classes = self.labels.len();
        let models =
            super::gate::cv_fold_models(engine, rows, classes, start, stage1, k, observer).await?;
        match models {
            Some(m) => Ok((
                self.with_cv_fold_models(engine, rows, k, &m).await?,
                Outcome::Finished,
            )),
            None => Ok((self, Outcome::Cancelled)),
        }
    }

    /// [`Self::with_cv_folds`] with fold models trained before ([`super::gate::cv_fold_models`]
    /// for the same `rows` and `k`, kept by the caller).
    pub async fn with_cv_fold_models(
        mut self,
        engine: &Engine,
        rows: &Labelled,
        k: usize,
        models: &[(usize, TaskModel)],
    ) -> Result<Self> {
        let own = self.own.as_ref().map(|(o, _)| *o).ok_or_else(|| {
            Error::Fusion("the cross-validated gate needs the task's own adapter".into())
        })?;
        let folds = super::gate::cv_folds_from(engine, &self.cache, own, rows, k, models).await?;
        self.cv = Some(folds);
        Ok(self)
    }

    /// Adds the task's held-out `rows` (encoded by the base and each of `adapters`) to fit the
    /// hybrid's temperature on; no rows, nothing added.
    pub async fn with_held_out(
        mut self,
        engine: &Engine,
        adapters: &[&LoraAdapter],
        rows: &Labelled,
    ) -> Result<Self> {
        if !rows.is_empty() {
            let e = engine;
            let c = FusionCache::build(&e.encoder, &e.tokenizer, adapters, &rows.texts, &e.device)
                .await?;
            self.held_out = Some((c, rows.labels.clone()));
        }
        Ok(self)
    }

    /// The temperature of `layer`'s probabilities chosen on the held-out rows
    /// ([`crate::train::calibration::choose_temperature`]; 1 without them).
    pub async fn fit_temperature(&self, layer: &AttentionFusion) -> Result<f64> {
        let Some((cache, labels)) = &self.held_out else {
            return Ok(1.0);
        };
        let out = layer.forward(cache.base.clone(), cache.adapters.clone(), None, false);
        let probs = super::compare::probability_rows(out.logits).await?;
        Ok(crate::train::calibration::choose_temperature(
            &probs, labels,
        ))
    }

    /// The held-out rows in two halves, even and odd positions (docs/design.md §1.6): each half's
    /// best epoch is checked against the own LoRA on the other half, so the gate sees every
    /// held-out row and is not biased by the selection. With fewer than [`MIN_SPLIT_HELD_OUT`]
    /// rows one "half" of all of them. `None` without rows.
    pub(super) fn held_out_halves(&self) -> Option<Vec<HeldOut>> {
        let (cache, labels) = self.held_out.as_ref()?;
        let n = labels.len();
        if n == 0 {
            return None;
        }
        if n < MIN_SPLIT_HELD_OUT {
            let all = HeldOut {
                cache: cache.clone(),
                labels: labels.clone(),
            };
            return Some(vec![all]);
        }
        let part = |r: usize| {
            let idx: Vec<usize> = (0..n).filter(|i| i % 2 == r).collect();
            let (base, adapters) = cache.select(&idx, &cache.base.device());
            HeldOut {
                cache: FusionCache { base, adapters },
                labels: idx.iter().map(|&i| labels[i]).collect(),
            }
        };
        Some(vec![part(0), part(1)])
    }
}
