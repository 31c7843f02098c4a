//! The data-parallel training step: a batch is cut into [`SHARDS`] shards whose forward and
//! backward passes run at the same time on rayon's pool (natively, and in the page's threaded
//! engine on Web Workers); their gradients are then summed and the optimiser steps once.
//!
//! Why: burn's CPU backend splits only its matrix products and a few reductions across threads;
//! the elementwise work (the exact GELU's `erf`, dropout, layout copies) runs on one thread, which
//! held training at 2 threads to 1.58× the 1-thread speed in the page. Shards run every operation
//! of their part of the batch in parallel.
//!
//! Rows are cut into shards by length ([`split`]): the longest rows together, the shorter ones
//! together, at the cut that makes the slowest shard fastest. Each shard pads only to its own
//! longest row, so a batch with one long text no longer pads every shard to it.
//!
//! What the result depends on: each shard's loss is its rows' summed cross-entropy divided by the
//! whole batch's size, so the summed gradients equal those of the batch's mean loss. Each shard
//! draws its dropout masks in its own seeded scope ([`crate::model::dropout::seeded`], seed from
//! [`seed`]). The shard count does not depend on the thread count, so a run gives the same model
//! on one thread or many (up to float summation order inside kernels). Without threads (the
//! page's single-thread engine) the shards run one after the other.
//!
//! Left out: more shards than [`SHARDS`] (at 4+ threads the matrix products still use the other
//! threads inside each shard).

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::host;
use crate::model::dropout;
use crate::parallel::{MaybeSend, MaybeSync};

/// Shards per batch.
pub const SHARDS: usize = 2;

/// The batch's rows cut into at most [`SHARDS`] non-empty shards of similar work. A shard's work
/// is taken as its rows times its padded length (its longest row's `len`, in tokens): the matrix
/// products over every token dominate a step, and attention's extra term, quadratic in the length,
/// is under 6 % of it at 128 tokens. Rows are sorted by `len` (longest first; ties keep batch
/// order) and cut into runs of that order, at the cuts that make the largest shard's work smallest,
/// then the least padded tokens in all. For two shards no other grouping does better: with `b`
/// rows in the shard without the longest row, its work is least when they are the `b` shortest.
/// Fewer shards when the batch has fewer rows; no rows, no shards.
///
/// Shards may hold different numbers of rows; the step weighs each shard's loss by its rows
/// (`stage1::LoraTrainer::step`), so the summed gradients are the whole batch's either way.
pub fn split(rows: &[usize], len: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    let k = SHARDS.min(rows.len());
    let mut order: Vec<(usize, usize)> = rows.iter().map(|&r| (r, len(r))).collect();
    order.sort_by_key(|&(_, l)| std::cmp::Reverse(l));
    let n = order.len();
    // best[j][i]: (largest shard's work, padded tokens) cutting the first i rows into j shards,
    // and where its last shard starts. Rows i..e as one shard pad to row i's length (longest first).
    let work = |i: usize, e: usize| (e - i) * order[i].1;
    let mut best = vec![vec![None::<((usize, usize), usize)>; n + 1]; k + 1];
    best[0][0] = Some(((0, 0), 0));
    for j in 1..=k {
        for e in j..=n {
            best[j][e] = (j - 1..e)
                .filter_map(|i| {
                    let ((max, total), _) = best[j - 1][i]?;
                    let w = work(i, e);
                    Some(((max.max(w), total + w), i))
                })
                .min();
        }
    }
    let mut out = Vec::with_capacity(k);
    let mut e = n;
    for j in (1..=k).rev() {
        let Some((_, i)) = best[j][e] else { break };
        out.push(order[i..e].iter().map(|&(r, _)| r).collect());
        e = i;
    }
    out.reverse();
    out
}

/// One data-parallel step's forward and backward passes: `rows` cut by [`split`] (`len` gives a
/// row's token count), each shard's `shard(rows)` run at once in its own seeded dropout scope
/// ([`seed`] of `run_seed`, `step` and the shard), then the shards' losses summed and read back.
/// `shard` returns its part of the batch's loss and its gradients; the summed loss must be
/// finite, or the error names the step (1-based) and what to do.
pub(crate) async fn run<G: MaybeSend>(
    rows: &[usize],
    len: impl Fn(usize) -> usize,
    run_seed: u64,
    step: usize,
    shard: impl Fn(&[usize]) -> (Tensor<1>, G) + MaybeSync,
) -> Result<(f32, Vec<G>)> {
    let shards = split(rows, len);
    let outs = crate::parallel::map(&shards, |k, rows| {
        dropout::seeded(seed(run_seed, step, k), || shard(rows))
    });
    let (losses, grads): (Vec<_>, Vec<_>) = outs.into_iter().unzip();
    let loss = losses
        .into_iter()
        .reduce(|a, b| a + b)
        .ok_or_else(|| Error::Train("an empty batch".into()))?;
    let loss = host::scalar(loss).await?;
    if !loss.is_finite() {
        return Err(Error::Train(format!(
            "loss became {loss} at step {}; lower the learning rate",
            step + 1
        )));
    }
    Ok((loss, grads))
}

/// The dropout seed of shard `shard` at step `step` of a run seeded with `run_seed`
/// (SplitMix64 of the three, so neighbouring steps and shards get unrelated streams).
pub fn seed(run_seed: u64, step: usize, shard: usize) -> u64 {
    let mut z = run_seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add((shard as u64).wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x5851_F42D_4C95_7F2D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest shard's work (rows times longest row) of a grouping.
    fn slowest(shards: &[Vec<usize>], len: impl Fn(usize) -> usize) -> usize {
        shards
            .iter()
            .map(|s| s.len() * s.iter().map(|&r| len(r)).max().unwrap())
            .max()
            .unwrap()
    }

    #[test]
    fn split_puts_every_row_in_one_shard_longest_first() {
        let rows: Vec<usize> = (10..27).collect();
        let len = |r: usize| (r * 7) % 13;
        let shards = split(&rows, len);
        assert_eq!(shards.len(), SHARDS);
        assert!(shards.iter().all(|s| !s.is_empty()));
        let mut all = shards.concat();
        all.sort();
        assert_eq!(all, rows);
        // Runs of the length order: every row of a shard at least as long as any of the next.
        for w in shards.windows(2) {
            let shortest = w[0].iter().map(|&r| len(r)).min().unwrap();
            assert!(w[1].iter().all(|&r| len(r) <= shortest));
        }
        assert_eq!(split(&[4], len), vec![vec![4]]);
        assert!(split(&[], len).is_empty());
        assert_eq!(split(&[3, 5], len).len(), 2);
    }

    /// No grouping of the rows into two non-empty shards, whatever its sizes (every subset tried),
    /// has a smaller slowest shard than `split`'s.
    #[test]
    fn split_is_as_fast_as_the_best_of_all_groupings() {
        let mut rng = crate::data::rng::SplitMix64::new(7);
        for case in 0..40 {
            let n = 2 + case % 9;
            let lens: Vec<usize> = (0..n).map(|_| 8 + (rng.next_u64() % 60) as usize).collect();
            let len = |r: usize| lens[r];
            let rows: Vec<usize> = (0..n).collect();
            let ours = slowest(&split(&rows, len), len);
            let best = (1..(1u32 << n) - 1)
                .map(|mask| {
                    let (a, b): (Vec<usize>, Vec<usize>) =
                        rows.iter().partition(|&&r| mask & (1 << r) != 0);
                    slowest(&[a, b], len)
                })
                .min()
                .unwrap();
            assert_eq!(ours, best, "lengths {lens:?}");
        }
    }

    /// A batch with one long text: the long rows share a small shard instead of padding half the
    /// batch to the longest (an even split in a snake by length, the earlier rule).
    #[test]
    fn one_long_row_no_longer_pads_half_the_batch() {
        let lens = [
            80, 45, 40, 38, 35, 33, 30, 28, 26, 25, 22, 20, 18, 16, 14, 12,
        ];
        let len = |r: usize| lens[r];
        let rows: Vec<usize> = (0..16).collect();
        let shards = split(&rows, len);
        assert_eq!(shards, vec![(0..5).collect::<Vec<_>>(), (5..16).collect()]);
        assert_eq!(slowest(&shards, len), 400);
        let snake = [
            vec![0, 3, 4, 7, 8, 11, 12, 15],
            vec![1, 2, 5, 6, 9, 10, 13, 14],
        ];
        assert_eq!(slowest(&snake, len), 640);
    }

    #[test]
    fn seeds_differ_across_steps_and_shards() {
        let mut seen = std::collections::HashSet::new();
        for step in 0..50 {
            for shard in 0..SHARDS {
                assert!(seen.insert(seed(1, step, shard)));
            }
        }
        assert_ne!(seed(1, 0, 0), seed(2, 0, 0));
    }
}
