//! The held-out policy (docs/design.md §4): how much of a task's rows is held out from training,
//! and how. Plain data (it is stored in a task's settings); [`crate::experiment::split`] applies it.

use serde::{Deserialize, Serialize};

use super::Example;
use crate::error::{Error, Result};

/// Default share of a task's rows held out when no test file is given.
pub const DEFAULT_HOLDOUT_FRACTION: f64 = 0.1;
/// Largest share that may be held out.
pub const MAX_HOLDOUT_FRACTION: f64 = 0.5;
/// Held-out rows used for the per-epoch validation accuracy (reports use all of them).
pub const VALIDATION_CAP: usize = 200;

/// How much of a task's rows is held out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HoldoutPolicy {
    /// Share of the rows held out when no test file is given, in `0..=0.5` (default 0.1).
    pub fraction: f64,
}

impl Default for HoldoutPolicy {
    fn default() -> Self {
        Self {
            fraction: DEFAULT_HOLDOUT_FRACTION,
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

    /// `(training rows, held-out rows)` of a task: the test rows when there are any, else a
    /// stratified split of `examples` seeded with `seed`.
    pub fn split(
        &self,
        examples: &[Example],
        test: &[Example],
        seed: u64,
    ) -> (Vec<Example>, Vec<Example>) {
        if test.is_empty() {
            super::stratified_split(examples, self.fraction, seed)
        } else {
            (examples.to_vec(), test.to_vec())
        }
    }

    /// Where the held-out rows come from, in words.
    pub fn describe(&self, has_test_file: bool) -> String {
        if has_test_file {
            "the uploaded test file".into()
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
