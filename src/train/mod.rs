//! Training loops, written as step functions an async caller drives one batch at a time
//! (the browser worker awaits each step; the CLI blocks on it), with progress and cancellation.
//!
//! - [`stage1`]: one LoRA adapter + classifier head per task (docs/design.md §1.2);
//! - [`contrastive`]: stage 1's contrastive objective (SetFit's, through the adapter);
//! - [`probe`]: the `frozen` baseline, a linear head on cached frozen-base vectors (§1.4);
//! - [`schedule`]: AdamW settings and the warm-up + linear-decay learning rate;
//! - [`shards`]: the data-parallel step (a batch cut into shards trained at once);
//! - [`driver`]: the one loop that runs any of them: progress, per-epoch hook, cancellation;
//! - [`calibration`]: temperature scaling, expected calibration error, Brier score;
//! - [`uncertainty`]: Wilson intervals, the exact McNemar test, mean ± std;
//! - [`metrics`]: accuracy, macro-F1, Matthews correlation, confusion matrix;

pub mod calibration;
pub mod contrastive;
pub mod crossfit;
pub mod driver;
pub mod fusion_cache;
pub mod metrics;
mod plan;
pub mod probe;
pub mod schedule;
pub mod shards;
pub mod stage1;
pub mod stage2;
pub mod together;
pub mod uncertainty;

pub use driver::{EpochEnd, Observer, Outcome, Trainer, drive, run_to_end};
pub use metrics::{ConfusionMatrix, Metrics};
pub use schedule::{HeadInit, Objective, TrainConfig};
pub use stage1::{LoraTrainer, TaskModel};

use serde::{Deserialize, Serialize};

/// What a training loop reports after each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps done so far (1-based after the first step).
    pub step: usize,
    /// Total steps planned.
    pub total_steps: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Mean loss of this step's batch.
    pub loss: f32,
    /// Learning rate used for this step (adapter's, or head's for the probe).
    pub lr: f64,
    /// Training examples per second, averaged since the start.
    pub examples_per_sec: f64,
    /// Seconds since the start.
    pub elapsed_sec: f64,
}

impl Trainer for LoraTrainer {
    async fn step(&mut self) -> crate::Result<Option<Progress>> {
        LoraTrainer::step(self).await
    }
    fn steps_per_epoch(&self) -> usize {
        self.plan_steps_per_epoch()
    }
}

impl Trainer for contrastive::ContrastiveTrainer {
    async fn step(&mut self) -> crate::Result<Option<Progress>> {
        contrastive::ContrastiveTrainer::step(self).await
    }
    fn steps_per_epoch(&self) -> usize {
        self.plan_steps_per_epoch()
    }
}

impl Trainer for probe::ProbeTrainer {
    async fn step(&mut self) -> crate::Result<Option<Progress>> {
        probe::ProbeTrainer::step(self).await
    }
    fn steps_per_epoch(&self) -> usize {
        self.plan_steps_per_epoch()
    }
}

impl Trainer for stage2::FusionTrainer {
    async fn step(&mut self) -> crate::Result<Option<Progress>> {
        stage2::FusionTrainer::step(self).await
    }
    fn steps_per_epoch(&self) -> usize {
        self.plan_steps_per_epoch()
    }
}

/// A monotonic clock that works natively and in the browser.
pub(crate) fn now_sec() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() / 1000.0
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
}

/// Cross-entropy of `logits` against class indices.
///
/// # Shapes
/// - logits: `[batch, classes]`, targets: `[batch]` → `[1]`
pub fn cross_entropy(
    logits: burn::tensor::Tensor<2>,
    targets: burn::tensor::Tensor<1, burn::tensor::Int>,
) -> burn::tensor::Tensor<1> {
    let [b, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    logp.gather(1, targets.reshape([b, 1])).mean().neg()
}
