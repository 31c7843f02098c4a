//! Inverted dropout, and where its random masks come from.
//!
//! Outside a [`seeded`] scope a mask is drawn from the device's generator (which the trainer
//! seeds once per run). Inside one, masks come from a ChaCha8 generator of the calling thread,
//! seeded for the scope. The data-parallel training step (`src/train/shards.rs`) runs each shard
//! of a batch in its own scope, so the masks a shard draws depend on the run's seed, the step and
//! the shard, never on how many threads there are or which one finishes first.
//!
//! Scopes nest: when one ends, the generator that was current before it (in the state it had) is
//! put back. While a shard waits inside a parallel kernel, rayon may run the other shard on the
//! same thread; that shard's scope opens and closes within the wait, and the waiting shard's
//! stream continues exactly where it stopped. Left out: dropout variants other than elementwise
//! Bernoulli (no DropConnect, no structured masks).

use std::cell::RefCell;

use burn::tensor::{Distribution, Tensor, TensorData};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

thread_local! {
    /// The generator of the innermost open [`seeded`] scope on this thread.
    static SCOPED: RefCell<Option<ChaCha8Rng>> = const { RefCell::new(None) };
}

/// Puts the enclosing scope's generator back when a scope ends (also when it unwinds).
struct Restore(Option<ChaCha8Rng>);

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        SCOPED.with(|s| *s.borrow_mut() = prev);
    }
}

/// Runs `f` with dropout masks drawn from a generator seeded with `seed`.
pub fn seeded<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let prev = SCOPED.with(|s| s.replace(Some(ChaCha8Rng::seed_from_u64(seed))));
    let _restore = Restore(prev);
    f()
}

/// Inverted dropout: zeroes each value with probability `p` and rescales the rest by
/// `1 / (1 - p)`, when `active`. The mask comes from the open [`seeded`] scope, or else from the
/// device's generator.
pub(crate) fn dropout<const D: usize>(x: Tensor<D>, p: f64, active: bool) -> Tensor<D> {
    if !active || p <= 0.0 {
        return x;
    }
    let keep = 1.0 - p;
    match scoped_mask(&x, keep) {
        Some(mask) => x * mask,
        None => {
            let mask = x.random_like(Distribution::Bernoulli(keep));
            (x * mask).mul_scalar(1.0 / keep)
        }
    }
}

/// A mask shaped like `x` whose values are `1 / keep` (kept) or 0, from the scope's generator;
/// `None` outside a scope. A value is kept when a uniform 32-bit draw falls below
/// `keep · 2³²`.
fn scoped_mask<const D: usize>(x: &Tensor<D>, keep: f64) -> Option<Tensor<D>> {
    let shape = x.shape();
    let values = SCOPED.with(|s| {
        let mut s = s.borrow_mut();
        let rng = s.as_mut()?;
        let threshold = (keep * 4_294_967_296.0) as u64;
        let kept = (1.0 / keep) as f32;
        let n = shape.num_elements();
        Some(
            (0..n)
                .map(|_| match u64::from(rng.next_u32()) < threshold {
                    true => kept,
                    false => 0.0,
                })
                .collect::<Vec<f32>>(),
        )
    })?;
    let data = TensorData::new(values, shape).convert_dtype(x.dtype());
    Some(Tensor::from_data(data, &x.device()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn ones(device: &Device) -> Tensor<2> {
        Tensor::ones([64, 64], device)
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn a_seeded_scope_repeats_its_masks_and_rescales_what_it_keeps() {
        let device = Device::default();
        let a = values(seeded(7, || dropout(ones(&device), 0.25, true)));
        let b = values(seeded(7, || dropout(ones(&device), 0.25, true)));
        let c = values(seeded(8, || dropout(ones(&device), 0.25, true)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        assert!((dropped - 0.25).abs() < 0.03, "dropped {dropped}");
    }

    #[test]
    fn a_nested_scope_leaves_the_outer_stream_where_it_was() {
        let device = Device::default();
        let straight = seeded(3, || {
            let first = values(dropout(ones(&device), 0.5, true));
            let second = values(dropout(ones(&device), 0.5, true));
            (first, second)
        });
        let interrupted = seeded(3, || {
            let first = values(dropout(ones(&device), 0.5, true));
            let _other = seeded(99, || dropout(ones(&device), 0.5, true));
            let second = values(dropout(ones(&device), 0.5, true));
            (first, second)
        });
        assert_eq!(straight, interrupted);
    }

    #[test]
    fn inactive_or_zero_dropout_is_the_identity() {
        let device = Device::default();
        assert!(
            values(seeded(1, || dropout(ones(&device), 0.5, false)))
                .iter()
                .all(|&v| v == 1.0)
        );
        assert!(
            values(dropout(ones(&device), 0.0, true))
                .iter()
                .all(|&v| v == 1.0)
        );
    }
}
