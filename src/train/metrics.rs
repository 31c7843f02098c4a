//! Classification metrics: confusion matrix, accuracy, macro-F1 and Matthews correlation, with
//! scikit-learn's definitions (`accuracy_score`, `f1_score(average="macro")`, `matthews_corrcoef`).
//!
//! Also per-class precision, recall and F1. Leaves out weighted/micro averages; probability-based
//! measures are in [`super::calibration`].

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Number of classes; `counts` is `n_classes × n_classes`.
    pub n_classes: usize,
    /// `counts[true][pred]`.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Builds the matrix from paired class indices.
    ///
    /// Pairs beyond the shorter slice are ignored; `n_classes` is raised to cover every index seen,
    /// so no pair is dropped.
    pub fn from_predictions(truth: &[usize], pred: &[usize], n_classes: usize) -> Self {
        let n_classes = truth
            .iter()
            .chain(pred)
            .map(|&c| c + 1)
            .fold(n_classes, usize::max);
        let mut counts = vec![vec![0; n_classes]; n_classes];
        for (&t, &p) in truth.iter().zip(pred) {
            if let Some(cell) = counts.get_mut(t).and_then(|row| row.get_mut(p)) {
                *cell += 1;
            }
        }
        ConfusionMatrix { n_classes, counts }
    }

    /// Number of pairs counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Number of pairs on the diagonal (predicted right).
    pub fn correct(&self) -> usize {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, row)| row.get(i))
            .sum()
    }

    /// Per-class number of true examples (row sums).
    fn true_sums(&self) -> Vec<usize> {
        self.counts.iter().map(|row| row.iter().sum()).collect()
    }

    /// Per-class number of predictions (column sums).
    fn pred_sums(&self) -> Vec<usize> {
        let mut sums = vec![0; self.n_classes];
        for row in &self.counts {
            for (s, &c) in sums.iter_mut().zip(row) {
                *s += c;
            }
        }
        sums
    }

    /// Fraction of correct predictions; 0 when empty.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.correct() as f64 / total as f64
        }
    }

    /// Unweighted mean of per-class F1 over the classes that occur in the truth or the predictions
    /// (scikit-learn's default labels); a class with precision + recall = 0 scores 0. 0 when empty.
    pub fn macro_f1(&self) -> f64 {
        let (true_sums, pred_sums) = (self.true_sums(), self.pred_sums());
        let mut sum = 0.0;
        let mut classes = 0usize;
        for (i, (&t, &p)) in true_sums.iter().zip(&pred_sums).enumerate() {
            if t == 0 && p == 0 {
                continue;
            }
            classes += 1;
            let tp = self
                .counts
                .get(i)
                .and_then(|row| row.get(i))
                .copied()
                .unwrap_or(0);
            // F1 = 2·tp / (2·tp + fp + fn) = 2·tp / (true + predicted); the denominator is > 0 here.
            sum += 2.0 * tp as f64 / (t + p) as f64;
        }
        if classes == 0 {
            0.0
        } else {
            sum / classes as f64
        }
    }

    /// Precision, recall and F1 of every class, in class order (0 where undefined, as
    /// scikit-learn's `zero_division=0`).
    pub fn per_class(&self) -> Vec<ClassScores> {
        let (true_sums, pred_sums) = (self.true_sums(), self.pred_sums());
        (0..self.n_classes)
            .map(|i| {
                let tp = self.counts[i][i] as f64;
                let (t, p) = (true_sums[i] as f64, pred_sums[i] as f64);
                let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
                ClassScores {
                    precision: ratio(tp, p),
                    recall: ratio(tp, t),
                    f1: ratio(2.0 * tp, t + p),
                    support: true_sums[i],
                }
            })
            .collect()
    }

    /// Multiclass Matthews correlation coefficient (Gorodkin's R_K, as scikit-learn); 0 when the
    /// denominator is 0 (e.g. a single class in the truth or the predictions).
    pub fn mcc(&self) -> f64 {
        let n = self.total() as f64;
        let c = self.correct() as f64;
        let t = self.true_sums();
        let p = self.pred_sums();
        let dot = |a: &[usize], b: &[usize]| -> f64 {
            a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
        };
        let cov_tp = c * n - dot(&t, &p);
        let cov_pp = n * n - dot(&p, &p);
        let cov_tt = n * n - dot(&t, &t);
        let denom = cov_tt * cov_pp;
        if denom == 0.0 {
            0.0
        } else {
            cov_tp / denom.sqrt()
        }
    }
}

/// One class's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Of the rows predicted as this class, the fraction that are.
    pub precision: f64,
    /// Of the rows of this class, the fraction predicted as it.
    pub recall: f64,
    /// Harmonic mean of the two.
    pub f1: f64,
    /// Rows of this class.
    pub support: usize,
}

/// The metrics reported per task (docs/design.md §1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Fraction correct.
    pub accuracy: f64,
    /// Macro-averaged F1.
    pub macro_f1: f64,
    /// Matthews correlation coefficient.
    pub mcc: f64,
    /// Number of examples evaluated.
    pub n: usize,
}

impl Metrics {
    /// All metrics of a confusion matrix.
    pub fn from_confusion(cm: &ConfusionMatrix) -> Self {
        Metrics {
            accuracy: cm.accuracy(),
            macro_f1: cm.macro_f1(),
            mcc: cm.mcc(),
            n: cm.total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn metrics(truth: &[usize], pred: &[usize], k: usize) -> Metrics {
        Metrics::from_confusion(&ConfusionMatrix::from_predictions(truth, pred, k))
    }

    #[test]
    fn three_class_example() {
        // C = [[2,0,0],[1,0,1],[0,2,0]]. F1 per class: 2·2/(2+3)=0.8, 0, 0 → 0.2667.
        // MCC: c·n − t·p = 2·6 − (2·3 + 2·2 + 2·1) = 0 → 0.
        let cm = ConfusionMatrix::from_predictions(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 0, 1], 3);
        assert_eq!(cm.counts, vec![vec![2, 0, 0], vec![1, 0, 1], vec![0, 2, 0]]);
        let m = Metrics::from_confusion(&cm);
        assert!(close(m.accuracy, 1.0 / 3.0));
        assert!(close(m.macro_f1, 0.8 / 3.0));
        assert!(close(m.mcc, 0.0));
        assert_eq!(m.n, 6);
    }

    #[test]
    fn per_class_scores_by_hand() {
        // C = [[2,0,0],[1,0,1],[0,2,0]]: class 0 precision 2/3, recall 1, F1 0.8; classes 1 and
        // 2 have no true positives (0 everywhere, scikit-learn's zero_division=0).
        let cm = ConfusionMatrix::from_predictions(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 0, 1], 3);
        let pc = cm.per_class();
        assert!(
            close(pc[0].precision, 2.0 / 3.0) && close(pc[0].recall, 1.0) && close(pc[0].f1, 0.8)
        );
        assert_eq!(pc.iter().map(|c| c.support).collect::<Vec<_>>(), [2, 2, 2]);
        assert!(
            pc[1..]
                .iter()
                .all(|c| c.precision == 0.0 && c.recall == 0.0 && c.f1 == 0.0)
        );
        let mean_f1 = pc.iter().map(|c| c.f1).sum::<f64>() / 3.0;
        assert!(close(mean_f1, Metrics::from_confusion(&cm).macro_f1));
    }

    #[test]
    fn binary_example() {
        // C = [[3,1],[1,3]]: accuracy 0.75, F1 0.75 for both, MCC (3·3 − 1·1)/sqrt(4·4·4·4) = 0.5.
        let m = metrics(&[1, 1, 1, 0, 0, 0, 1, 0], &[1, 0, 1, 0, 1, 0, 1, 0], 2);
        assert!(close(m.accuracy, 0.75));
        assert!(close(m.macro_f1, 0.75));
        assert!(close(m.mcc, 0.5));
    }

    #[test]
    fn labels_are_those_present_and_mcc_multiclass() {
        // Class 3 never occurs, so macro-F1 averages over 3 classes: (0.5 + 0.8 + 0) / 3.
        // MCC = (3·5 − (2·2 + 2·3 + 1·0)) / sqrt((25 − 13)·(25 − 9)) = 5 / sqrt(192).
        let m = metrics(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 4);
        assert!(close(m.accuracy, 0.6));
        assert!(close(m.macro_f1, 1.3 / 3.0));
        assert!(close(m.mcc, 5.0 / 192f64.sqrt()));
    }

    #[test]
    fn perfectly_wrong_and_degenerate_cases() {
        let m = metrics(&[0, 1, 0, 1], &[1, 0, 1, 0], 2);
        assert!(close(m.accuracy, 0.0) && close(m.macro_f1, 0.0) && close(m.mcc, -1.0));
        // One class only: MCC's denominator is 0.
        let m = metrics(&[0, 0, 0], &[0, 0, 0], 2);
        assert!(close(m.accuracy, 1.0) && close(m.macro_f1, 1.0) && close(m.mcc, 0.0));
        let m = metrics(&[], &[], 3);
        assert_eq!((m.accuracy, m.macro_f1, m.mcc, m.n), (0.0, 0.0, 0.0, 0));
    }

    #[test]
    fn out_of_range_and_uneven_inputs_do_not_panic() {
        let cm = ConfusionMatrix::from_predictions(&[0, 5, 1], &[0, 1], 2);
        assert_eq!(cm.n_classes, 6);
        assert_eq!(cm.total(), 2);
        assert_eq!(cm.counts[5][1], 1);
    }

    #[test]
    fn metrics_serde_round_trip() {
        let m = metrics(&[0, 1], &[0, 1], 2);
        let back: Metrics = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}

/// Metrics and confusion matrix of predicted probabilities against true class indices.
pub fn evaluate(
    probs: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
) -> (Metrics, ConfusionMatrix) {
    let pred: Vec<usize> = probs
        .iter()
        .map(|p| crate::infer::types::argmax(p))
        .collect();
    let cm = ConfusionMatrix::from_predictions(labels, &pred, classes);
    (Metrics::from_confusion(&cm), cm)
}
