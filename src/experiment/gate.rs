//! Choosing on held-out rows (docs/design.md §1.6): the fusion's epoch is selected on some
//! held-out rows ([`SelectOnHeldOut`]), and the gate compares the selected hybrid with the task's
//! own LoRA on others ([`HeldOut`]), so the gate is not fooled by the selection. The job that uses
//! them is [`super::fusion_job::train_layer`]; the verdict is a
//! [`GateCheck`](crate::fusion::files::GateCheck).

use burn::tensor::Tensor;

use super::fusion_job::FusionObserver;
use crate::error::{Error, Result};
use crate::fusion::AttentionFusion;
use crate::fusion::files::better;
use crate::model::ClassifierHead;
use crate::train::Observer;
use crate::train::driver::EpochEnd;
use crate::train::stage2::{FusionCache, FusionTrainer};

/// Held-out rows below which selection and gate share them (each half would hold fewer than 2).
pub const MIN_SPLIT_HELD_OUT: usize = 4;

/// Held-out rows with their classes.
#[derive(Clone)]
pub(super) struct HeldOut {
    pub(super) cache: FusionCache,
    pub(super) labels: Vec<usize>,
}

impl HeldOut {
    /// (accuracy, mean NLL) of `logits` on these rows.
    async fn score(&self, logits: Tensor<2>) -> Result<(f64, f64)> {
        let classes = logits.dims()[1];
        let probs = super::compare::probability_rows(logits).await?;
        let (metrics, _) = crate::train::metrics::evaluate(&probs, &self.labels, classes);
        let nll = crate::train::calibration::nll(&probs, &self.labels, 1.0);
        Ok((metrics.accuracy, nll))
    }

    /// `layer`'s (accuracy, NLL).
    pub(super) async fn score_layer(&self, layer: &AttentionFusion) -> Result<(f64, f64)> {
        let c = &self.cache;
        let out = layer.forward(c.base.clone(), c.adapters.clone(), None, false);
        self.score(out.logits).await
    }

    /// The own LoRA's (accuracy, NLL): `head` on adapter `own`'s vectors.
    pub(super) async fn score_lora(&self, own: usize, head: &ClassifierHead) -> Result<(f64, f64)> {
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
        self.score(head.forward(v, false)).await
    }
}

/// Keeps the fusion of the epoch that scores best on the held-out rows (accuracy, then NLL;
/// the earliest on ties), while passing everything on to the caller's observer.
pub(super) struct SelectOnHeldOut<'a, O> {
    pub(super) inner: &'a mut O,
    pub(super) rows: Option<&'a HeldOut>,
    pub(super) best: Option<((f64, f64), usize, AttentionFusion)>,
}

impl<O: FusionObserver> SelectOnHeldOut<'_, O> {
    pub(super) async fn offer(&mut self, layer: AttentionFusion, epoch: usize) -> Result<()> {
        let Some(rows) = self.rows else {
            return Ok(());
        };
        let score = rows.score_layer(&layer).await?;
        if self.best.as_ref().is_none_or(|(b, _, _)| better(score, *b)) {
            self.best = Some((score, epoch, layer));
        }
        Ok(())
    }
}

impl<O: FusionObserver> Observer<FusionTrainer> for SelectOnHeldOut<'_, O> {
    async fn should_stop(&mut self) -> bool {
        self.inner.should_stop().await
    }
    fn on_step(&mut self, p: &crate::train::Progress) {
        self.inner.on_step(p)
    }
    async fn on_epoch_end(&mut self, t: &FusionTrainer, e: EpochEnd) -> Result<()> {
        self.offer(t.current(), e.epoch).await?;
        self.inner.on_epoch_end(t, e).await
    }
}
