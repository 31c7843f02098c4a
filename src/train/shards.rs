//! The data-parallel training step: a batch is cut into [`SHARDS`] shards whose forward and
//! backward passes run at the same time on rayon's pool (natively, and in the page's threaded
//! engine on Web Workers); their gradients are then summed and the optimiser steps once.
//!
//! Why: burn's CPU backend splits only its matrix products and a few reductions across threads;
//! the elementwise work (the exact GELU's `erf`, dropout, layout copies) runs on one thread, which
//! held training at 2 threads to 1.58× the 1-thread speed in the page. Shards run every operation
//! of their half of the batch in parallel.
//!
//! Rows are dealt to shards by length ([`split`]), so the shards pad to about the same length and
//! finish at about the same time.
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

/// Shards per batch.
pub const SHARDS: usize = 2;

/// The batch's rows dealt into at most [`SHARDS`] shards of equal size (±1) and similar work:
/// rows are sorted by `len` (token count, longest first; ties keep batch order) and dealt in a
/// snake (0, 1, 1, 0, 0, 1, …), so every shard gets rows of every length and pads to about the
/// same length. Fewer shards when the batch has fewer rows; no rows, no shards.
pub fn split(rows: &[usize], len: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    let k = SHARDS.min(rows.len());
    let mut out = vec![Vec::with_capacity(rows.len().div_ceil(k.max(1))); k];
    let mut order: Vec<usize> = rows.to_vec();
    order.sort_by_key(|&r| std::cmp::Reverse(len(r)));
    for (i, r) in order.into_iter().enumerate() {
        let (lap, pos) = (i / k, i % k);
        let shard = if lap % 2 == 0 { pos } else { k - 1 - pos };
        out[shard].push(r);
    }
    out
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

    #[test]
    fn split_deals_every_row_once_into_balanced_shards() {
        let rows: Vec<usize> = (10..27).collect();
        let len = |r: usize| (r * 7) % 13;
        let shards = split(&rows, len);
        assert_eq!(shards.len(), SHARDS);
        let mut all = shards.concat();
        all.sort();
        assert_eq!(all, rows);
        let sizes: Vec<usize> = shards.iter().map(|s| s.len()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        // The two longest rows go to different shards, so both pad to about the same length.
        let longest = |s: &Vec<usize>| s.iter().map(|&r| len(r)).max().unwrap();
        assert!(longest(&shards[0]).abs_diff(longest(&shards[1])) <= 1);
        assert_eq!(split(&[4], len), vec![vec![4]]);
        assert!(split(&[], len).is_empty());
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
