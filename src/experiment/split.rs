//! A task's labelled training and held-out sets under the held-out policy
//! ([`HoldoutPolicy`], docs/design.md §4), used by the page, the CLI and `bench` alike.
//!
//! A task's labelled rows are split once, class-stratified and deterministic, into a training
//! part and a held-out part of [`HoldoutPolicy::fraction`] (default 10 %), seeded with the run's
//! training seed; when a test file is given, it is the held-out part and every row trains. The
//! label vocabulary comes from the training part; held-out rows with a label it lacks are
//! dropped and counted.

pub use crate::data::holdout::{
    DEFAULT_HOLDOUT_FRACTION, HoldoutPolicy, MAX_HOLDOUT_FRACTION, VALIDATION_CAP,
};
use crate::data::{self, Example, LabelVocab};
use crate::error::{Error, Result};

/// Texts and their class indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labelled {
    /// The texts.
    pub texts: Vec<String>,
    /// Class index of each text.
    pub labels: Vec<usize>,
}

impl Labelled {
    /// The rows of `examples` whose label is in `vocab`, and how many were dropped.
    pub fn known(examples: &[Example], vocab: &LabelVocab) -> (Self, usize) {
        let mut out = Self::default();
        for e in examples {
            if let Some(i) = vocab.index_of(&e.label) {
                out.texts.push(e.text.clone());
                out.labels.push(i);
            }
        }
        let dropped = examples.len() - out.len();
        (out, dropped)
    }

    /// Every row of `examples`; a label outside `vocab` is an error that names it.
    pub fn all(examples: &[Example], vocab: &LabelVocab) -> Result<Self> {
        let (out, dropped) = Self::known(examples, vocab);
        if dropped > 0 {
            let bad = examples
                .iter()
                .find(|e| vocab.index_of(&e.label).is_none())
                .map(|e| e.label.clone())
                .unwrap_or_default();
            return Err(Error::Train(format!(
                "label {bad:?} does not occur in the training data (known labels: {})",
                vocab.names().join(", ")
            )));
        }
        Ok(out)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The first `n` rows.
    pub fn first(&self, n: usize) -> Self {
        Self {
            texts: self.texts.iter().take(n).cloned().collect(),
            labels: self.labels.iter().take(n).copied().collect(),
        }
    }
}

/// A task ready to train: its vocabulary, training rows and held-out rows.
#[derive(Debug, Clone)]
pub struct PreparedTask {
    /// Labels of the training rows, in class order.
    pub vocab: LabelVocab,
    /// Rows stage 1, the probe and the fusion train on.
    pub train: Labelled,
    /// Rows for validation and the report.
    pub held_out: Labelled,
    /// Held-out rows dropped because their label never occurs in training.
    pub held_out_dropped: usize,
    /// Where the held-out rows come from, in words.
    pub source: String,
}

impl PreparedTask {
    /// Splits a task's rows by `policy` (seeded with `seed`), and checks the training part can
    /// train (at least two classes, no empty text).
    pub fn new(
        examples: &[Example],
        test: &[Example],
        policy: &HoldoutPolicy,
        seed: u64,
    ) -> Result<Self> {
        policy.validate()?;
        let (train, held_out) = policy.split(examples, test, seed);
        let vocab = data::validate_for_training(&train).map_err(Error::Data)?;
        let train = Labelled::all(&train, &vocab)?;
        let (held_out, held_out_dropped) = Labelled::known(&held_out, &vocab);
        Ok(Self {
            vocab,
            train,
            held_out,
            held_out_dropped,
            source: policy.describe(examples.len(), !test.is_empty()),
        })
    }

    /// The held-out rows used for per-epoch validation (the first [`VALIDATION_CAP`]).
    pub fn validation(&self) -> Labelled {
        self.held_out.first(VALIDATION_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                text: format!("text number {i}"),
                label: if i % 2 == 0 { "a" } else { "b" }.into(),
            })
            .collect()
    }

    #[test]
    fn holds_out_the_policy_share_stratified_and_seeded() {
        let p = HoldoutPolicy::default();
        let t = PreparedTask::new(&rows(300), &[], &p, 3).unwrap();
        assert_eq!((t.train.len(), t.held_out.len()), (270, 30));
        assert_eq!(t.held_out.labels.iter().filter(|&&l| l == 0).count(), 15);
        let again = PreparedTask::new(&rows(300), &[], &p, 3).unwrap();
        assert_eq!(t.held_out, again.held_out);
        let other = PreparedTask::new(&rows(300), &[], &p, 4).unwrap();
        assert_ne!(t.held_out, other.held_out);
        assert_eq!(
            t.source,
            "10 % of the task's examples, held out from training"
        );
    }

    #[test]
    fn a_test_file_is_the_held_out_part_and_unknown_labels_are_dropped() {
        let mut test = rows(4);
        test[0].label = "never seen".into();
        let t = PreparedTask::new(&rows(20), &test, &HoldoutPolicy::default(), 1).unwrap();
        assert_eq!(
            (t.train.len(), t.held_out.len(), t.held_out_dropped),
            (20, 3, 1)
        );
        assert_eq!(t.source, "the uploaded test file");
    }

    #[test]
    fn a_small_task_holds_nothing_out_unless_told_to() {
        let p = HoldoutPolicy::default();
        let n = p.train_all_below;
        let small = PreparedTask::new(&rows(n - 1), &[], &p, 1).unwrap();
        assert_eq!((small.train.len(), small.held_out.len()), (n - 1, 0));
        assert!(small.source.starts_with("none: with fewer than 200"));
        let large = PreparedTask::new(&rows(n), &[], &p, 1).unwrap();
        assert_eq!(large.held_out.len(), n / 10);
        let always = HoldoutPolicy {
            train_all_below: 0,
            ..p
        };
        let t = PreparedTask::new(&rows(20), &[], &always, 1).unwrap();
        assert_eq!((t.train.len(), t.held_out.len()), (18, 2));
        // Settings saved before the threshold existed load with it.
        let old: HoldoutPolicy = serde_json::from_str(r#"{"fraction":0.2}"#).unwrap();
        assert_eq!((old.fraction, old.train_all_below), (0.2, n));
    }

    #[test]
    fn bad_fractions_are_refused() {
        for f in [-0.1, 0.6, f64::NAN] {
            let p = HoldoutPolicy {
                fraction: f,
                ..Default::default()
            };
            assert!(PreparedTask::new(&rows(20), &[], &p, 1).is_err(), "{f}");
        }
        let p = HoldoutPolicy {
            fraction: 0.0,
            train_all_below: 0,
        };
        let none = PreparedTask::new(&rows(20), &[], &p, 1).unwrap();
        assert!(none.held_out.is_empty());
    }
}
