//! Deterministic class-stratified subsets and splits, and train/test overlap removal (docs/design.md §1.5).
//!
//! Rows are ordered by a seeded hash of their text (FNV-1a over the seed and the text's bytes, then the
//! splitmix64 finaliser), ties broken by position, so the same input and seed always give the same
//! output on every platform.

use super::Example;
use super::rng::splitmix64;
use std::collections::{BTreeMap, HashSet};

/// Seeded 64-bit hash of a text: FNV-1a over `seed` (little-endian) and the bytes, then splitmix64's mix.
fn hash_key(seed: u64, text: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;
    let mut h = FNV_OFFSET;
    for &b in seed.to_le_bytes().iter().chain(text.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    splitmix64(h)
}

/// Sorts example indices into the seeded order.
fn seeded_order(indices: &mut [usize], examples: &[Example], seed: u64) {
    indices.sort_by_cached_key(|&i| {
        let text = examples.get(i).map_or("", |e| e.text.as_str());
        (hash_key(seed, text), i)
    });
}

/// Indices of each class, classes in label order, indices in seeded order.
fn classes_in_seeded_order(examples: &[Example], seed: u64) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        groups.entry(e.label.as_str()).or_default().push(i);
    }
    groups
        .into_values()
        .map(|mut idx| {
            seeded_order(&mut idx, examples, seed);
            idx
        })
        .collect()
}

/// Splits `n` (at most the sum of `sizes`) into per-class quotas proportional to `sizes` by
/// largest-remainder rounding; when `n` covers one per class, every class gets at least one.
fn quotas(sizes: &[usize], n: usize) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    if total == 0 {
        return vec![0; sizes.len()];
    }
    let (n128, total128) = (n as u128, total as u128);
    let mut quota: Vec<usize> = sizes
        .iter()
        .map(|&s| (n128 * s as u128 / total128) as usize)
        .collect();
    let remainders: Vec<u128> = sizes.iter().map(|&s| n128 * s as u128 % total128).collect();
    let mut by_remainder: Vec<usize> = (0..sizes.len()).collect();
    by_remainder.sort_by_key(|&c| std::cmp::Reverse(remainders.get(c).copied().unwrap_or(0)));
    let leftover = n.saturating_sub(quota.iter().sum());
    for &c in by_remainder.iter().take(leftover) {
        if let Some(q) = quota.get_mut(c) {
            *q += 1;
        }
    }
    if n >= sizes.len() {
        // Give each empty-handed class one row, taken from the class furthest above its exact share.
        while let Some(zero) = quota.iter().position(|&q| q == 0) {
            // Surplus of class c over its exact share, scaled by `total`: q*total - n*size.
            let donor = (0..sizes.len())
                .filter(|&c| quota.get(c).copied().unwrap_or(0) >= 2)
                .max_by_key(|&c| {
                    let q = quota.get(c).copied().unwrap_or(0) as i128;
                    let s = sizes.get(c).copied().unwrap_or(0) as i128;
                    (q * total as i128 - n as i128 * s, std::cmp::Reverse(c))
                });
            let Some(donor) = donor else { break };
            if let Some(q) = quota.get_mut(donor) {
                *q -= 1;
            }
            if let Some(q) = quota.get_mut(zero) {
                *q += 1;
            }
        }
    }
    quota
}

fn collect_sorted(mut indices: Vec<usize>, examples: &[Example], seed: u64) -> Vec<Example> {
    seeded_order(&mut indices, examples, seed);
    indices
        .into_iter()
        .filter_map(|i| examples.get(i).cloned())
        .collect()
}

/// A deterministic, class-stratified subset of `min(n, examples.len())` examples.
///
/// Each class's share is proportional to its size (largest-remainder rounding); when `n` is at least
/// the number of classes, every class has at least one example. Within a class the examples with the
/// smallest seeded hash of their text are taken. The result is in seeded hash order, so classes are
/// mixed and a different seed gives a different order.
pub fn stratified_subset(examples: &[Example], n: usize, seed: u64) -> Vec<Example> {
    let n = n.min(examples.len());
    let classes = classes_in_seeded_order(examples, seed);
    let sizes: Vec<usize> = classes.iter().map(Vec::len).collect();
    let chosen: Vec<usize> = classes
        .iter()
        .zip(quotas(&sizes, n))
        .flat_map(|(idx, q)| idx.iter().take(q).copied())
        .collect();
    collect_sorted(chosen, examples, seed)
}

/// A deterministic subset of `k` examples of every class (all of a class with fewer), as few-shot
/// benchmarks draw them (SetFit's K per class). Within a class the examples with the smallest
/// seeded hash of their text are taken; the result is in seeded hash order.
pub fn per_class_subset(examples: &[Example], k: usize, seed: u64) -> Vec<Example> {
    let chosen: Vec<usize> = classes_in_seeded_order(examples, seed)
        .into_iter()
        .flat_map(|idx| idx.into_iter().take(k))
        .collect();
    collect_sorted(chosen, examples, seed)
}

/// A deterministic, class-stratified split into `(train, holdout)`.
///
/// Each class puts `round(size * holdout_fraction)` examples in the holdout; when the fraction is
/// above 0, a class with at least two examples has at least one on each side (a class of one example
/// stays in train unless the fraction is 1). Fractions are clamped to `[0, 1]`; NaN counts as 0. Both
/// sides are in seeded hash order.
pub fn stratified_split(
    examples: &[Example],
    holdout_fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let fraction = if holdout_fraction.is_nan() {
        0.0
    } else {
        holdout_fraction.clamp(0.0, 1.0)
    };
    let mut train = Vec::new();
    let mut holdout = Vec::new();
    for idx in classes_in_seeded_order(examples, seed) {
        let size = idx.len();
        let h = if fraction <= 0.0 {
            0
        } else if fraction >= 1.0 {
            size
        } else if size < 2 {
            0
        } else {
            ((size as f64 * fraction).round() as usize).clamp(1, size - 1)
        };
        holdout.extend(idx.iter().take(h).copied());
        train.extend(idx.iter().skip(h).copied());
    }
    (
        collect_sorted(train, examples, seed),
        collect_sorted(holdout, examples, seed),
    )
}

/// The form used to find train/test overlap: lower-cased, alphanumeric characters only.
pub fn normalise_for_overlap(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Drops every example whose [`normalise_for_overlap`] form is in `forbidden` (the normalised test
/// texts); returns the kept examples, in order, and how many were dropped.
pub fn remove_overlap(train: &[Example], forbidden: &HashSet<String>) -> (Vec<Example>, usize) {
    let kept: Vec<Example> = train
        .iter()
        .filter(|e| !forbidden.contains(&normalise_for_overlap(&e.text)))
        .cloned()
        .collect();
    let removed = train.len() - kept.len();
    (kept, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_pinned() {
        // Values of the original inline FNV-1a + splitmix64 code: every split depends on them.
        assert_eq!(hash_key(0, ""), 0x5BA3_14B8_CFDA_3B6B);
        assert_eq!(hash_key(42, "hello world"), 0xBD51_6CBE_E018_4DB3);
        assert_eq!(hash_key(7, "é"), 0x4D8F_3413_05B7_FD3E);
    }

    /// `counts` examples per label `c0`, `c1`, …, texts unique.
    fn data(counts: &[usize]) -> Vec<Example> {
        counts
            .iter()
            .enumerate()
            .flat_map(|(c, &k)| {
                (0..k).map(move |i| Example {
                    text: format!("text {i} of class {c}"),
                    label: format!("c{c}"),
                })
            })
            .collect()
    }

    fn per_class(examples: &[Example], n_classes: usize) -> Vec<usize> {
        (0..n_classes)
            .map(|c| {
                examples
                    .iter()
                    .filter(|e| e.label == format!("c{c}"))
                    .count()
            })
            .collect()
    }

    #[test]
    fn quotas_largest_remainder_and_minimum_one() {
        assert_eq!(quotas(&[60, 30, 10], 10), vec![6, 3, 1]);
        assert_eq!(quotas(&[5, 5, 5], 10), vec![4, 3, 3]);
        assert_eq!(quotas(&[98, 1, 1], 5), vec![3, 1, 1]);
        assert_eq!(quotas(&[98, 1, 1], 2), vec![2, 0, 0]);
        assert_eq!(quotas(&[3, 2], 5), vec![3, 2]);
        assert_eq!(quotas(&[], 0), Vec::<usize>::new());
    }

    #[test]
    fn subset_is_proportional() {
        let ds = data(&[60, 30, 10]);
        let sub = stratified_subset(&ds, 20, 7);
        assert_eq!(sub.len(), 20);
        assert_eq!(per_class(&sub, 3), vec![12, 6, 2]);
        let sub = stratified_subset(&data(&[98, 1, 1]), 5, 7);
        assert_eq!(per_class(&sub, 3), vec![3, 1, 1]);
        // Every picked example comes from the input, once.
        let set: HashSet<&str> = sub.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(set.len(), sub.len());
    }

    #[test]
    fn per_class_subset_takes_k_of_every_class() {
        let ds = data(&[60, 30, 3]);
        let sub = per_class_subset(&ds, 8, 7);
        assert_eq!(per_class(&sub, 3), vec![8, 8, 3]);
        let set: HashSet<&str> = sub.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(set.len(), sub.len());
        // Seeded: the same seed draws the same rows, another seed others.
        assert_eq!(per_class_subset(&ds, 8, 7), sub);
        assert_ne!(per_class_subset(&ds, 8, 8), sub);
        // A larger K keeps the smaller K's rows (each class's first rows in seeded order).
        let more = per_class_subset(&ds, 16, 7);
        assert!(sub.iter().all(|e| more.contains(e)));
        assert!(per_class_subset(&ds, 0, 7).is_empty());
    }

    #[test]
    fn subset_edge_sizes() {
        let ds = data(&[3, 2]);
        assert!(stratified_subset(&ds, 0, 1).is_empty());
        assert!(stratified_subset(&[], 10, 1).is_empty());
        let all = stratified_subset(&ds, 100, 1);
        assert_eq!(all.len(), 5);
        assert_eq!(per_class(&all, 2), vec![3, 2]);
    }

    #[test]
    fn subset_is_deterministic_and_seeded() {
        let ds = data(&[50, 50]);
        let a = stratified_subset(&ds, 20, 1);
        assert_eq!(a, stratified_subset(&ds, 20, 1));
        let b = stratified_subset(&ds, 20, 2);
        assert_ne!(a, b);
        assert_eq!(per_class(&b, 2), vec![10, 10]);
        // Same examples, different seed: same set, different order.
        let all1 = stratified_subset(&ds, 100, 1);
        let all2 = stratified_subset(&ds, 100, 2);
        assert_ne!(all1, all2);
        let s1: HashSet<&Example> = all1.iter().collect();
        let s2: HashSet<&Example> = all2.iter().collect();
        assert_eq!(s1, s2);
        // Classes are interleaved, not blocked.
        assert!(
            a.iter().take(10).any(|e| e.label == "c0")
                && a.iter().take(10).any(|e| e.label == "c1")
        );
    }

    #[test]
    fn split_sizes_and_stratification() {
        let ds = data(&[10, 5, 2, 1]);
        let (train, hold) = stratified_split(&ds, 0.2, 3);
        assert_eq!(per_class(&hold, 4), vec![2, 1, 1, 0]);
        assert_eq!(per_class(&train, 4), vec![8, 4, 1, 1]);
        let mut both: Vec<&str> = train.iter().chain(&hold).map(|e| e.text.as_str()).collect();
        both.sort_unstable();
        both.dedup();
        assert_eq!(both.len(), ds.len());
        assert_eq!(stratified_split(&ds, 0.2, 3), (train, hold));
        assert_ne!(
            stratified_split(&ds, 0.2, 4).1,
            stratified_split(&ds, 0.2, 3).1
        );
    }

    #[test]
    fn split_extreme_fractions() {
        let ds = data(&[4, 3]);
        let (t, h) = stratified_split(&ds, 0.0, 1);
        assert_eq!((t.len(), h.len()), (7, 0));
        let (t, h) = stratified_split(&ds, f64::NAN, 1);
        assert_eq!((t.len(), h.len()), (7, 0));
        let (t, h) = stratified_split(&ds, 1.5, 1);
        assert_eq!((t.len(), h.len()), (0, 7));
        let (t, h) = stratified_split(&ds, 0.99, 1);
        assert_eq!(
            (per_class(&t, 2), per_class(&h, 2)),
            (vec![1, 1], vec![3, 2])
        );
        let (t, h) = stratified_split(&[], 0.5, 1);
        assert!(t.is_empty() && h.is_empty());
    }

    #[test]
    fn overlap_normalisation_and_removal() {
        assert_eq!(normalise_for_overlap("It's GREAT, 10/10!"), "itsgreat1010");
        assert_eq!(normalise_for_overlap("Ünïcode  SS"), "ünïcodess");
        let train = vec![
            Example {
                text: "A fine film.".into(),
                label: "pos".into(),
            },
            Example {
                text: "a FINE film".into(),
                label: "pos".into(),
            },
            Example {
                text: "dull".into(),
                label: "neg".into(),
            },
        ];
        let forbidden: HashSet<String> = ["afinefilm".to_owned()].into();
        let (kept, removed) = remove_overlap(&train, &forbidden);
        assert_eq!(removed, 2);
        assert_eq!(kept, vec![train[2].clone()]);
    }
}
