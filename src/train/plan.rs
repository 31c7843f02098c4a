//! The bookkeeping every training loop shares: a seeded shuffled order re-drawn each epoch, batches
//! taken from it, the step count, the learning-rate schedule and the progress report.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::schedule::{TrainConfig, lr_at};
use super::{Progress, now_sec};

/// Which examples each step trains on, and when the run ends.
pub(crate) struct BatchPlan {
    order: Vec<usize>,
    cursor: usize,
    step: usize,
    total: usize,
    warmup: usize,
    epoch: usize,
    batch: usize,
    /// The run's generator (shuffling, and any other per-step randomness of the trainer).
    pub(crate) rng: ChaCha8Rng,
    start: f64,
    seen: usize,
}

impl BatchPlan {
    /// A plan over `n` examples for `cfg.epochs` epochs of `cfg.batch_size` (a caller that wants
    /// [`TrainConfig::min_steps`] passes [`TrainConfig::scaled_to`] `n`).
    pub(crate) fn new(n: usize, cfg: &TrainConfig) -> Self {
        let total = n.div_ceil(cfg.batch_size.max(1)) * cfg.epochs;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0x0b5e_55ed));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        Self {
            order,
            cursor: 0,
            step: 0,
            total,
            warmup: (total as f64 * cfg.warmup_ratio).round() as usize,
            epoch: 0,
            batch: cfg.batch_size.max(1),
            rng,
            start: now_sec(),
            seen: 0,
        }
    }

    /// The next batch's example indices and its epoch; `None` once every step is done.
    pub(crate) fn next_batch(&mut self) -> Option<(Vec<usize>, usize)> {
        if self.step >= self.total {
            return None;
        }
        if self.cursor >= self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
            self.epoch += 1;
        }
        let end = (self.cursor + self.batch).min(self.order.len());
        let idx = self.order[self.cursor..end].to_vec();
        self.cursor = end;
        Some((idx, self.epoch))
    }

    /// The scheduled learning rate of the current step for peak rate `peak`.
    pub(crate) fn lr(&self, peak: f64) -> f64 {
        lr_at(peak, self.step, self.total, self.warmup)
    }

    /// Records a finished step of `n` examples and reports it.
    pub(crate) fn done(&mut self, n: usize, epoch: usize, loss: f32, lr: f64) -> Progress {
        self.step += 1;
        self.seen += n;
        let elapsed = now_sec() - self.start;
        Progress {
            step: self.step,
            total_steps: self.total,
            epoch,
            loss,
            lr,
            examples_per_sec: self.seen as f64 / elapsed.max(1e-9),
            elapsed_sec: elapsed,
        }
    }

    /// Total steps planned.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Steps in one pass over the data.
    pub(crate) fn steps_per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.batch).max(1)
    }

    /// Steps done.
    pub(crate) fn steps_done(&self) -> usize {
        self.step
    }
}
