//! Several training runs driven at once, one step of each per round ([`drive_together`]): the
//! fusions of several tasks, or of a task's cross-validation folds, which are independent.
//!
//! Why: a fusion step is small (a batch of cached vectors) and most of its time goes to work
//! that grows with the layer's parameters, not the batch (the weight gradients and the
//! optimiser), so cutting one step into shards (as stage 1 does) repeats that work on every
//! shard and gains nothing. Measured on this 2-core machine, two 960-step runs take 29.5 s one
//! after the other and 17.5 s side by side. Each round's steps run at once on rayon's pool
//! ([`crate::parallel::map_mut`]); without threads (the page's single-thread engine) one after
//! the other, with the same result.
//!
//! A trainer takes part through [`ParallelStep`]: its step cut into the host reads before and
//! after (asynchronous: the next batch, the loss) and the tensor work between (synchronous, so
//! it can run on a pool thread). A round's steps draw nothing from a shared generator, so the
//! result does not depend on the thread count or on which step finished first.
//!
//! What it leaves out: rounds are in lockstep, so a run with fewer steps simply finishes early;
//! there is no work stealing between rounds.

use super::Progress;
use super::driver::{EpochTally, Observer, Outcome, Trainer};
use crate::error::Result;
use crate::parallel::MaybeSend;

/// A [`Trainer`] whose step can run beside other runs' steps:
/// `step() = end_step(run_step(begin_step()?))`.
#[allow(async_fn_in_trait)]
pub trait ParallelStep: Trainer + MaybeSend {
    /// What the tensor work needs (the batch's rows, vectors and random draws).
    type Batch: MaybeSend;
    /// What the tensor work leaves for [`end_step`](Self::end_step) (the loss, not yet read).
    type Ran: MaybeSend;
    /// Takes the next batch; `Ok(None)` once all steps are done.
    async fn begin_step(&mut self) -> Result<Option<Self::Batch>>;
    /// The step's tensor work: forward, backward and the optimiser's update. Reads nothing back
    /// from the device.
    fn run_step(&mut self, batch: Self::Batch) -> Self::Ran;
    /// Reads the step's loss back and reports the step (an error when it is not finite).
    async fn end_step(&mut self, ran: Self::Ran) -> Result<Progress>;
}

/// Drives every run of `runs` (a trainer and its own observer) to its end, one step of each
/// per round, the steps of a round at once. `observer` is the caller's: it is asked whether to
/// stop before every round and sees one [`Progress`] per round for all runs together (steps and
/// examples/s summed, the mean loss of the round's steps, the epoch of the run furthest behind).
/// Each run's own observer sees that run's steps and epoch ends, as under
/// [`drive`](super::drive), and is asked before each of that run's steps whether to end it
/// (early stopping): `true` ends that run alone, which keeps what it trained, and the others go
/// on; the call still finishes. A call stopped by `observer` keeps what every run trained so far.
pub async fn drive_together<T, R, O>(runs: &mut [(T, R)], observer: &mut O) -> Result<Outcome>
where
    T: ParallelStep,
    R: Observer<T>,
    O: Observer<T>,
{
    let mut tallies: Vec<EpochTally> = runs
        .iter()
        .map(|(t, _)| EpochTally::new(t.steps_per_epoch()))
        .collect();
    let mut last: Vec<Option<Progress>> = vec![None; runs.len()];
    let mut finished = vec![false; runs.len()];
    loop {
        if observer.should_stop().await {
            return Ok(Outcome::Cancelled);
        }
        let mut steppers = Vec::new();
        let mut watchers = Vec::new();
        for (i, (t, r)) in runs.iter_mut().enumerate() {
            if finished[i] {
                continue;
            }
            if r.should_stop().await {
                // Ended early by its own observer: the run counts as complete in the joint
                // progress, and the others go on.
                finished[i] = true;
                if let Some(p) = last[i].as_mut() {
                    p.total_steps = p.step;
                }
                continue;
            }
            match t.begin_step().await? {
                Some(b) => {
                    steppers.push((t, Some(b)));
                    watchers.push((i, r));
                }
                None => finished[i] = true,
            }
        }
        if steppers.is_empty() {
            return Ok(Outcome::Finished);
        }
        let ran =
            crate::parallel::map_mut(&mut steppers, |_, (t, b)| b.take().map(|b| t.run_step(b)));
        let (mut round_loss, mut count) = (0.0f64, 0usize);
        for (((t, _), (i, r)), ran) in steppers.into_iter().zip(watchers).zip(ran) {
            let Some(ran) = ran else { continue };
            let p = t.end_step(ran).await?;
            round_loss += f64::from(p.loss);
            count += 1;
            r.on_step(&p);
            if let Some(e) = tallies[i].add(&p) {
                r.on_epoch_end(t, e).await?;
            }
            last[i] = Some(p);
        }
        observer.on_step(&together(&last, round_loss / count.max(1) as f64));
    }
}

/// One progress report for all runs from each run's latest.
fn together(last: &[Option<Progress>], loss: f64) -> Progress {
    let seen = || last.iter().flatten();
    let behind = seen()
        .filter(|p| p.step < p.total_steps)
        .map(|p| p.epoch)
        .min();
    Progress {
        step: seen().map(|p| p.step).sum(),
        total_steps: seen().map(|p| p.total_steps).sum(),
        epoch: behind.unwrap_or_else(|| seen().map(|p| p.epoch).max().unwrap_or(0)),
        loss: loss as f32,
        lr: seen().next().map_or(0.0, |p| p.lr),
        examples_per_sec: seen().map(|p| p.examples_per_sec).sum(),
        elapsed_sec: seen().map(|p| p.elapsed_sec).fold(0.0, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fusion::FusionConfig;
    use crate::host::block_on;
    use crate::train::TrainConfig;
    use crate::train::driver::{EpochEnd, drive};
    use crate::train::stage2::{FusionCache, FusionTrainer, VectorSource};
    use burn::tensor::{Device, Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    const D: usize = 16;

    /// A fusion run over 2 adapters on `n` seeded random rows with random classes.
    fn run(n: usize, seed: u64) -> FusionTrainer {
        let device = Device::flex();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut uniform =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
        let cache = FusionCache {
            base: Tensor::from_data(TensorData::new(uniform(n * D), [n, D]), &device),
            adapters: Tensor::from_data(TensorData::new(uniform(n * 2 * D), [n, 2, D]), &device),
        };
        let y: Vec<usize> = uniform(n).iter().map(|&v| usize::from(v > 0.0)).collect();
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 8,
            seed,
            ..TrainConfig::default()
        };
        // Dropout on, so the test also covers where the masks come from.
        let fusion = FusionConfig::new(D, 2, 2).with_heads(2);
        FusionTrainer::new(
            VectorSource::Cached(cache),
            &y,
            &fusion,
            None,
            &cfg,
            &device,
        )
        .unwrap()
    }

    fn weights(t: FusionTrainer) -> Vec<f32> {
        let f = t.finish();
        block_on(crate::host::floats(f.classifier.weight.val())).unwrap()
    }

    /// The two runs' weights agree (to rounding: a round's steps may run on other threads).
    fn assert_same_weights(x: FusionTrainer, y: FusionTrainer) {
        let (x, y) = (weights(x), weights(y));
        let diff = x
            .iter()
            .zip(&y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-6, "weights differ by {diff}");
    }

    /// Counts what a run's own observer sees; ends the run after `stop_after` epochs.
    #[derive(Default)]
    struct Seen {
        steps: usize,
        epochs: Vec<EpochEnd>,
        stop_after: Option<usize>,
    }

    impl Observer<FusionTrainer> for Seen {
        async fn should_stop(&mut self) -> bool {
            self.stop_after.is_some_and(|n| self.epochs.len() >= n)
        }
        fn on_step(&mut self, _p: &Progress) {
            self.steps += 1;
        }
        async fn on_epoch_end(&mut self, _t: &FusionTrainer, e: EpochEnd) -> Result<()> {
            self.epochs.push(e);
            Ok(())
        }
    }

    /// The caller's observer: joint progress, and a stop after `stop_after` rounds.
    #[derive(Default)]
    struct Caller {
        rounds: Vec<Progress>,
        stop_after: Option<usize>,
    }

    impl Observer<FusionTrainer> for Caller {
        async fn should_stop(&mut self) -> bool {
            self.stop_after.is_some_and(|n| self.rounds.len() >= n)
        }
        fn on_step(&mut self, p: &Progress) {
            self.rounds.push(p.clone());
        }
    }

    /// Runs `a` (24 rows, seed 1) and `b` (40 rows, seed 2) each alone under `drive` and then
    /// together, each with the observer `observer(run)` makes; checks each run's observer saw the
    /// same and each run trained the same weights. Returns (steps of `a`, of `b`) and the caller.
    fn alone_and_together(observer: impl Fn(usize) -> Seen) -> ((usize, usize), Caller) {
        let (mut a, mut b) = (run(24, 1), run(40, 2));
        let (mut sa, mut sb) = (observer(0), observer(1));
        block_on(drive(&mut a, &mut sa)).unwrap();
        block_on(drive(&mut b, &mut sb)).unwrap();
        let mut runs = vec![(run(24, 1), observer(0)), (run(40, 2), observer(1))];
        let mut caller = Caller::default();
        let outcome = block_on(drive_together(&mut runs, &mut caller)).unwrap();
        assert_eq!(outcome, Outcome::Finished);
        let (rb, rb_seen) = runs.pop().unwrap();
        let (ra, ra_seen) = runs.pop().unwrap();
        // Each run's own observer sees what `drive` showed it.
        assert_eq!((ra_seen.steps, &ra_seen.epochs), (sa.steps, &sa.epochs));
        assert_eq!((rb_seen.steps, &rb_seen.epochs), (sb.steps, &sb.epochs));
        assert_same_weights(a, ra);
        assert_same_weights(b, rb);
        ((sa.steps, sb.steps), caller)
    }

    #[test]
    fn runs_trained_together_equal_each_trained_alone() {
        // Different sizes, so the shorter run finishes rounds before the longer one.
        let ((a, b), caller) = alone_and_together(|_| Seen::default());
        // One report per round (as many rounds as the longer run has steps), summed steps.
        assert_eq!(caller.rounds.len(), b);
        let last = caller.rounds.last().unwrap();
        assert_eq!((last.step, last.total_steps), (a + b, a + b));
        assert!(caller.rounds.windows(2).all(|w| w[0].step < w[1].step));
    }

    #[test]
    fn a_stop_between_rounds_keeps_every_run_as_trained() {
        let mut runs = vec![(run(24, 1), Seen::default()), (run(40, 2), Seen::default())];
        let mut caller = Caller {
            stop_after: Some(2),
            ..Caller::default()
        };
        let outcome = block_on(drive_together(&mut runs, &mut caller)).unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        assert!(runs.iter().all(|(_, s)| s.steps == 2));
        assert_eq!(caller.rounds.last().map(|p| p.step), Some(4));
    }

    #[test]
    fn a_run_ended_by_its_own_observer_stops_alone() {
        // `a` ended by its observer after its first epoch (3 steps of 8 rows), `b` to its end;
        // the call still finishes.
        let ((a, b), caller) = alone_and_together(|run| Seen {
            stop_after: (run == 0).then_some(1),
            ..Seen::default()
        });
        assert_eq!(a, 3);
        // The ended run counts as complete in the joint progress.
        let last = caller.rounds.last().unwrap();
        assert_eq!((last.step, last.total_steps), (a + b, a + b));
    }
}
