//! Label vocabularies: a fixed order of class names, and the checks a data set must pass to train.

use super::{DataError, Example};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The class names of a task in a fixed order; a class's index is its position.
///
/// Built from data the names are sorted by string order, so the same labels always give the same
/// indices. Serialised as a plain JSON list of names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelVocab {
    names: Vec<String>,
}

impl LabelVocab {
    /// The distinct labels of `examples`, sorted.
    pub fn from_examples(examples: &[Example]) -> Self {
        let names: BTreeSet<&str> = examples.iter().map(|e| e.label.as_str()).collect();
        LabelVocab {
            names: names.into_iter().map(str::to_owned).collect(),
        }
    }

    /// A vocabulary with the given order (e.g. one saved with a trained head); repeats are dropped.
    pub fn from_names<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        LabelVocab { names: out }
    }

    /// Index of a label, or `None` if it is not in the vocabulary.
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.names.iter().position(|n| n == label)
    }

    /// Name of class `i`, or `None` if out of range.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.names.get(i).map(String::as_str)
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// All class names, in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Checks that `ds` can train a classifier and returns its vocabulary.
///
/// Fails with [`DataError::NoUsableRows`] when there are no examples, [`DataError::OneClass`] when
/// they all share one label and [`DataError::TooManyClasses`] above [`crate::limits::MAX_CLASSES`].
pub fn validate_for_training(ds: &[Example]) -> Result<LabelVocab, DataError> {
    let vocab = LabelVocab::from_examples(ds);
    match vocab.names() {
        [] => Err(DataError::NoUsableRows {
            rejected: 0,
            first_reasons: Vec::new(),
        }),
        [only] => Err(DataError::OneClass {
            label: only.clone(),
        }),
        names if names.len() > crate::limits::MAX_CLASSES => Err(DataError::TooManyClasses {
            classes: names.len(),
            max: crate::limits::MAX_CLASSES,
        }),
        _ => Ok(vocab),
    }
}

/// How many examples each class of `vocab` has, in index order; labels not in `vocab` are not counted.
pub fn class_counts(examples: &[Example], vocab: &LabelVocab) -> Vec<usize> {
    let mut counts = vec![0; vocab.len()];
    for e in examples {
        if let Some(slot) = vocab.index_of(&e.label).and_then(|i| counts.get_mut(i)) {
            *slot += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, label: &str) -> Example {
        Example {
            text: text.to_owned(),
            label: label.to_owned(),
        }
    }

    #[test]
    fn vocab_is_sorted_and_indexed() {
        let ds = [
            ex("a", "pos"),
            ex("b", "neg"),
            ex("c", "pos"),
            ex("d", "Neutral"),
        ];
        let v = LabelVocab::from_examples(&ds);
        assert_eq!(v.names(), ["Neutral", "neg", "pos"]);
        assert_eq!(v.len(), 3);
        assert!(!v.is_empty());
        assert_eq!(v.index_of("neg"), Some(1));
        assert_eq!(v.index_of("other"), None);
        assert_eq!(v.name(2), Some("pos"));
        assert_eq!(v.name(3), None);
        assert_eq!(class_counts(&ds, &v), vec![1, 1, 2]);
    }

    #[test]
    fn vocab_serde_round_trip_and_from_names() {
        let v = LabelVocab::from_names(["b".to_owned(), "a".to_owned(), "b".to_owned()]);
        assert_eq!(v.names(), ["b", "a"]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"["b","a"]"#);
        let back: LabelVocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn validate_rejects_empty_and_one_class() {
        assert_eq!(
            validate_for_training(&[]),
            Err(DataError::NoUsableRows {
                rejected: 0,
                first_reasons: vec![]
            })
        );
        let err = validate_for_training(&[ex("a", "pos"), ex("b", "pos")]).unwrap_err();
        assert_eq!(
            err,
            DataError::OneClass {
                label: "pos".into()
            }
        );
        assert!(err.to_string().contains("at least two classes"));
        let v = validate_for_training(&[ex("a", "pos"), ex("b", "neg")]).unwrap();
        assert_eq!(v.names(), ["neg", "pos"]);
    }
}
