//! The held-out policy (docs/design.md §4): how much of a task's rows is held out from training,
//! and how. Plain data (it is stored in a task's settings); [`crate::experiment::split`] applies it.
//! A small task holds nothing out: every row trains, and the checks that choose its start, its
//! fusion epoch and its answer cross-validate over the training rows instead.

use serde::{Deserialize, Serialize};

use super::Example;
use crate::error::{Error, Result};

/// Default share of a task's rows held out when no test file is given.
pub const DEFAULT_HOLDOUT_FRACTION: f64 = 0.1;
/// Largest share that may be held out.
pub const MAX_HOLDOUT_FRACTION: f64 = 0.5;
/// Held-out rows used for the per-epoch validation accuracy (reports use all of them).
pub const VALIDATION_CAP: usize = 200;
/// Examples below which a task without a test file holds none out (default of
/// [`HoldoutPolicy::train_all_below`]): under 200 rows the cross-validated checks already decide
/// everything the held-out rows would (`experiment::gate::CROSS_VALIDATE_BELOW_ROWS`), and at
/// 8 rows per class training on all of them scored 1.5 points more than on 90 % of them
/// (docs/results.md, "Few-shot").
pub const TRAIN_ALL_BELOW_ROWS: usize = 200;

/// How much of a task's rows is held out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HoldoutPolicy {
    /// Share of the rows held out when no test file is given, in `0..=0.5` (default 0.1).
    pub fraction: f64,
    /// A task with fewer examples than this (and no test file) holds none out: every example
    /// trains, and its checks are cross-validated (default [`TRAIN_ALL_BELOW_ROWS`]; 0: always
    /// hold out `fraction`).
    pub train_all_below: usize,
}

impl Default for HoldoutPolicy {
    fn default() -> Self {
        Self {
            fraction: DEFAULT_HOLDOUT_FRACTION,
            train_all_below: TRAIN_ALL_BELOW_ROWS,
        }
    }
}

impl HoldoutPolicy {
    /// Checks the fraction; the error names it.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=MAX_HOLDOUT_FRACTION).contains(&self.fraction) {
            return Err(Error::Invalid(format!(
                "the held-out share must be between 0 and {MAX_HOLDOUT_FRACTION}, got {}",
                self.fraction
            )));
        }
        Ok(())
    }

    /// The share of `examples` rows held out when no test file is given: none below
    /// [`HoldoutPolicy::train_all_below`], else `fraction`.
    pub fn fraction_for(&self, examples: usize) -> f64 {
        match examples < self.train_all_below {
            true => 0.0,
            false => self.fraction,
        }
    }

    /// `(training rows, held-out rows)` of a task: the test rows when there are any, else a
    /// stratified split of `examples` seeded with `seed` ([`HoldoutPolicy::fraction_for`]).
    pub fn split(
        &self,
        examples: &[Example],
        test: &[Example],
        seed: u64,
    ) -> (Vec<Example>, Vec<Example>) {
        if test.is_empty() {
            super::stratified_split(examples, self.fraction_for(examples.len()), seed)
        } else {
            (examples.to_vec(), test.to_vec())
        }
    }

    /// Where the held-out rows of a task of `examples` rows come from, in words.
    pub fn describe(&self, examples: usize, has_test_file: bool) -> String {
        if has_test_file {
            "the uploaded test file".into()
        } else if self.fraction_for(examples) == 0.0 && self.fraction > 0.0 {
            format!(
                "none: with fewer than {} examples every one trains, and the checks are cross-validated over them",
                self.train_all_below
            )
        } else {
            format!(
                "{} % of the task's examples, held out from training",
                fmt_percent(self.fraction)
            )
        }
    }
}

fn fmt_percent(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round())
    } else {
        format!("{p:.1}")
    }
}
