//! The one training driver: runs any step-wise [`Trainer`] (stage 1, the frozen probe, the
//! fusion) to its end, one batch at a time, for the page, the CLI, `bench` and the tests alike.
//!
//! Between steps it asks its [`Observer`] whether to stop (the browser yields to its event loop
//! there, so a Cancel message can arrive; natively a flag is read), reports every step's
//! [`Progress`] (step, epoch, loss, examples/s, elapsed; [`Progress::eta_sec`]), and at the end of
//! each epoch hands the observer the trainer itself with the epoch's mean loss, so per-epoch
//! validation runs on exactly the weights trained so far. A stopped run keeps what it trained:
//! call the trainer's `finish`.
//!
//! What it leaves out: the trainers own batching, the optimiser and the schedule
//! ([`super::plan`]); the driver only sequences steps and reports them.

use std::sync::atomic::{AtomicBool, Ordering};

use super::Progress;
use crate::error::Result;

/// A training loop advanced one batch at a time (stage 1, the probe, stage 2).
#[allow(async_fn_in_trait)]
pub trait Trainer {
    /// Runs one batch; `Ok(None)` once all steps are done.
    async fn step(&mut self) -> Result<Option<Progress>>;
    /// Steps in one pass over the training data.
    fn steps_per_epoch(&self) -> usize;
}

/// The end of one epoch, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochEnd {
    /// The epoch that just ended, 1-based.
    pub epoch: usize,
    /// Mean training loss of the epoch's steps (of the steps run, for a final partial epoch).
    pub mean_loss: f32,
    /// Steps done so far.
    pub step: usize,
}

/// What a driven run reports to, and asks of, its caller. Every method has a default that does
/// nothing, so an observer implements only what it needs; `()` observes nothing.
#[allow(async_fn_in_trait)]
pub trait Observer<T> {
    /// Called before every step; `true` stops the run (as cancelled).
    async fn should_stop(&mut self) -> bool {
        false
    }
    /// Called after every step.
    fn on_step(&mut self, _p: &Progress) {}
    /// Called after the last step of every epoch (and after the final step), with the trainer.
    async fn on_epoch_end(&mut self, _trainer: &T, _e: EpochEnd) -> Result<()> {
        Ok(())
    }
}

impl<T> Observer<T> for () {}

/// How a driven run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All planned steps ran.
    Finished,
    /// The observer asked to stop; the steps done so far are kept in the trainer.
    Cancelled,
}

/// Drives `trainer` to its end (or until `observer` asks to stop), reporting every step and
/// every epoch end to `observer`.
pub async fn drive<T: Trainer, O: Observer<T>>(
    trainer: &mut T,
    observer: &mut O,
) -> Result<Outcome> {
    let mut tally = EpochTally::new(trainer.steps_per_epoch());
    loop {
        if observer.should_stop().await {
            return Ok(Outcome::Cancelled);
        }
        let Some(p) = trainer.step().await? else {
            return Ok(Outcome::Finished);
        };
        observer.on_step(&p);
        if let Some(e) = tally.add(&p) {
            observer.on_epoch_end(trainer, e).await?;
        }
    }
}

/// The epochs of one run as its steps come in: each epoch's mean loss, and where it ends.
pub(crate) struct EpochTally {
    per_epoch: usize,
    sum: f64,
    count: usize,
}

impl EpochTally {
    /// For a trainer of `steps_per_epoch` steps per epoch.
    pub(crate) fn new(steps_per_epoch: usize) -> Self {
        Self {
            per_epoch: steps_per_epoch.max(1),
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts step `p`; returns the epoch's end when `p` was its last step (or the run's last).
    pub(crate) fn add(&mut self, p: &Progress) -> Option<EpochEnd> {
        self.sum += f64::from(p.loss);
        self.count += 1;
        if !p.step.is_multiple_of(self.per_epoch) && p.step != p.total_steps {
            return None;
        }
        let e = EpochEnd {
            epoch: p.step.div_ceil(self.per_epoch),
            mean_loss: (self.sum / self.count as f64) as f32,
            step: p.step,
        };
        (self.sum, self.count) = (0.0, 0);
        Some(e)
    }
}

/// Drives `trainer` to its end with nothing observed.
pub async fn run_to_end<T: Trainer>(trainer: &mut T) -> Result<()> {
    drive(trainer, &mut ()).await.map(|_| ())
}

/// An observer made of a cancel flag and a step callback: stops once `flag` is set (and clears
/// it), calls `on_step` after every step. Used where no per-epoch work is needed.
pub struct Steps<'a, F> {
    /// Set from elsewhere to stop the run.
    pub cancel: Option<&'a AtomicBool>,
    /// Called after every step.
    pub on_step: F,
}

impl<T, F: FnMut(&Progress)> Observer<T> for Steps<'_, F> {
    async fn should_stop(&mut self) -> bool {
        self.cancel
            .is_some_and(|c| c.swap(false, Ordering::Relaxed))
    }
    fn on_step(&mut self, p: &Progress) {
        (self.on_step)(p)
    }
}

impl Progress {
    /// Seconds left at the average pace so far.
    pub fn eta_sec(&self) -> f64 {
        let per_step = self.elapsed_sec / self.step.max(1) as f64;
        per_step * self.total_steps.saturating_sub(self.step) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::block_on;

    /// A trainer whose loss is its step number: 3 epochs of 2 steps, then a partial epoch of 1.
    struct Counting {
        step: usize,
        total: usize,
    }

    impl Trainer for Counting {
        async fn step(&mut self) -> Result<Option<Progress>> {
            if self.step == self.total {
                return Ok(None);
            }
            self.step += 1;
            Ok(Some(Progress {
                step: self.step,
                total_steps: self.total,
                epoch: (self.step - 1) / 2,
                loss: self.step as f32,
                lr: 0.1,
                examples_per_sec: 1.0,
                elapsed_sec: self.step as f64,
            }))
        }
        fn steps_per_epoch(&self) -> usize {
            2
        }
    }

    #[derive(Default)]
    struct Record {
        steps: Vec<usize>,
        epochs: Vec<EpochEnd>,
        stop_after: Option<usize>,
    }

    impl Observer<Counting> for Record {
        async fn should_stop(&mut self) -> bool {
            self.stop_after.is_some_and(|n| self.steps.len() >= n)
        }
        fn on_step(&mut self, p: &Progress) {
            self.steps.push(p.step);
        }
        async fn on_epoch_end(&mut self, t: &Counting, e: EpochEnd) -> Result<()> {
            assert_eq!(
                t.step, e.step,
                "the observer sees the trainer after the epoch's last step"
            );
            self.epochs.push(e);
            Ok(())
        }
    }

    #[test]
    fn reports_every_step_and_every_epoch_with_its_mean_loss() {
        let mut t = Counting { step: 0, total: 5 };
        let mut r = Record::default();
        assert_eq!(block_on(drive(&mut t, &mut r)).unwrap(), Outcome::Finished);
        assert_eq!(r.steps, vec![1, 2, 3, 4, 5]);
        let got: Vec<(usize, f32, usize)> = r
            .epochs
            .iter()
            .map(|e| (e.epoch, e.mean_loss, e.step))
            .collect();
        assert_eq!(got, vec![(1, 1.5, 2), (2, 3.5, 4), (3, 5.0, 5)]);
    }

    #[test]
    fn stops_between_steps_and_keeps_the_steps_done() {
        let mut t = Counting { step: 0, total: 5 };
        let mut r = Record {
            stop_after: Some(3),
            ..Record::default()
        };
        assert_eq!(block_on(drive(&mut t, &mut r)).unwrap(), Outcome::Cancelled);
        assert_eq!((t.step, r.steps.len(), r.epochs.len()), (3, 3, 1));
    }

    #[test]
    fn a_cancel_flag_stops_the_run_once_and_is_cleared() {
        let flag = AtomicBool::new(false);
        let mut t = Counting { step: 0, total: 5 };
        let mut seen = Vec::new();
        let mut obs = Steps {
            cancel: Some(&flag),
            on_step: |p: &Progress| {
                seen.push(p.step);
                if p.step == 2 {
                    flag.store(true, Ordering::Relaxed);
                }
            },
        };
        assert_eq!(
            block_on(drive(&mut t, &mut obs)).unwrap(),
            Outcome::Cancelled
        );
        assert!(
            !flag.load(Ordering::Relaxed),
            "the flag is cleared for the next run"
        );
        assert_eq!(seen, vec![1, 2]);
    }

    #[test]
    fn eta_is_the_remaining_steps_at_the_average_pace() {
        let p = Progress {
            step: 4,
            total_steps: 10,
            epoch: 0,
            loss: 0.0,
            lr: 0.0,
            examples_per_sec: 0.0,
            elapsed_sec: 8.0,
        };
        assert_eq!(p.eta_sec(), 12.0);
    }
}
