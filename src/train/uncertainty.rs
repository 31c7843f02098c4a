//! How sure an evaluation is: the Wilson score interval of an accuracy, the exact McNemar test of
//! two methods scored on the same rows, and the mean ± sample standard deviation over seeds.
//!
//! References: Wilson (1927), "Probable inference, the law of succession, and statistical
//! inference"; McNemar (1947), in its exact (binomial) form, as `statsmodels`'
//! `mcnemar(exact=True)`. What it leaves out: corrections for testing many pairs at once.

use serde::{Deserialize, Serialize};

/// The normal quantile of a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval `(low, high)` of `k` successes in `n` trials at normal quantile `z`;
/// `(0, 1)` when `n` is 0.
pub fn wilson(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k.min(n) as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// `ln C(n, k)`.
fn ln_choose(n: usize, k: usize) -> f64 {
    let ln_fact = |m: usize| (1..=m).map(|i| (i as f64).ln()).sum::<f64>();
    ln_fact(n) - ln_fact(k) - ln_fact(n - k)
}

/// Two-sided exact McNemar p-value from the discordant counts: `b` rows only the first method got
/// right, `c` rows only the second got right. `p = min(1, 2 · P(X ≤ min(b, c)))` with
/// `X ~ Binomial(b + c, 1/2)`; 1 when there are no discordant rows.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let tail: f64 = (0..=b.min(c))
        .map(|i| (ln_choose(n, i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

/// Two methods compared on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Rows.
    pub n: usize,
    /// Rows only the first method got right.
    pub only_first: usize,
    /// Rows only the second method got right.
    pub only_second: usize,
    /// Exact McNemar p-value.
    pub p_value: f64,
}

impl Paired {
    /// Compares the predictions `first` and `second` against `labels`, row by row.
    pub fn of(first: &[usize], second: &[usize], labels: &[usize]) -> Self {
        let (mut b, mut c) = (0, 0);
        for ((&f, &s), &y) in first.iter().zip(second).zip(labels) {
            match (f == y, s == y) {
                (true, false) => b += 1,
                (false, true) => c += 1,
                _ => {}
            }
        }
        Self {
            n: labels.len().min(first.len()).min(second.len()),
            only_first: b,
            only_second: c,
            p_value: mcnemar_exact(b, c),
        }
    }
}

/// The two-sided 95 % quantile of Student's t with `n − 1` degrees of freedom, for a mean of `n`
/// values (standard tables to three decimals up to 30 degrees; the normal quantile beyond). `None`
/// for fewer than two values.
pub fn t95(n: usize) -> Option<f64> {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match n {
        0 | 1 => None,
        n => Some(T.get(n - 2).copied().unwrap_or(Z95)),
    }
}

/// Mean and sample standard deviation (0 for fewer than two values; NaN mean for none).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_hand_computed_intervals() {
        // 32 of 50 (p = 0.64) and 0 of 10: the closed form evaluated by hand in Python
        // (centre ± half, with z = 1.959964).
        let (lo, hi) = wilson(32, 50, Z95);
        assert!(
            (lo - 0.501_410_2).abs() < 1e-6 && (hi - 0.758_612_5).abs() < 1e-6,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 10, Z95);
        assert!(lo == 0.0 && (hi - 0.277_533).abs() < 1e-5, "{lo} {hi}");
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        // b = 2, c = 8: 2 · (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 · 56 / 1024.
        assert!((mcnemar_exact(2, 8) - 112.0 / 1024.0).abs() < 1e-12);
        assert!((mcnemar_exact(8, 2) - 112.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        // b = 0, c = 6: 2 / 64.
        assert!((mcnemar_exact(0, 6) - 2.0 / 64.0).abs() < 1e-12);
        let p = Paired::of(&[0, 1, 1, 0], &[0, 0, 1, 1], &[0, 1, 0, 1]);
        assert_eq!((p.n, p.only_first, p.only_second), (4, 1, 1));
        assert_eq!(p.p_value, 1.0);
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12 && (s - 1.290_994_448_735_805_6).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
        assert_eq!(t95(1), None);
        assert_eq!(t95(2), Some(12.706));
        assert_eq!(t95(5), Some(2.776));
        assert_eq!(t95(1000), Some(Z95));
    }
}
