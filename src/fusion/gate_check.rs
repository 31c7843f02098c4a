//! The gate's verdict as recorded in `fusion_manifest.json` (docs/design.md §1.6): the hybrid
//! against the task's own LoRA on rows the training did not choose ([`GateCheck`]), the
//! relatedness check beside it ([`SourceCheck`]), and the task's gate in words
//! ([`FusedTask::describe_gate`]). Deciding it is [`crate::experiment::gate`]'s.

use serde::{Deserialize, Serialize};

use super::files::{FusedAdapter, FusedTask};

impl FusedTask {
    /// What the gate decided, in words: which prediction the task answers with, and why
    /// (`adapters`: the fused adapters, in fusion order, to name the best source).
    pub fn describe_gate(&self, adapters: &[FusedAdapter]) -> String {
        let Some(g) = &self.gate else {
            return match self.use_hybrid {
                true => "answers with the hybrid (no held-out check was made: a shared fusion, or no held-out rows)".into(),
                false => "answers with its own LoRA".into(),
            };
        };
        let used = match self.use_hybrid {
            true => "the hybrid",
            false => "its own LoRA",
        };
        let rows = match g.folds {
            // Since the twelfth session each half of them is checked with the epoch the other
            // half chose (docs/design.md §1.6); before, half of them checked what the other chose.
            0 => format!(
                "{} held-out examples (none both choosing the epoch and checking it)",
                g.rows
            ),
            k => format!(
                "its {} training examples, cross-validated over {k} folds,",
                g.rows
            ),
        };
        // Older files have no counts (both 0): nothing is said about them.
        let disagreements = match g.only_hybrid + g.only_lora {
            0 => String::new(),
            _ => format!(
                "; {} examples only the hybrid got right, {} only LoRA (exact McNemar p = {:.2})",
                g.only_hybrid,
                g.only_lora,
                g.p_value()
            ),
        };
        let related = match g.source {
            None => String::new(),
            Some(SourceCheck { best: None, .. }) => {
                "; no other task's adapter was fused, so there is nothing to share".into()
            }
            Some(SourceCheck {
                best: Some(b),
                accuracy,
                frozen_accuracy,
                ..
            }) => {
                let name = adapters.get(b).map_or("?", |a| a.task.as_str());
                let verdict = match g.sources_related() {
                    true => "a related task".to_string(),
                    false => format!(
                        "no other task leads its own LoRA by {SOURCE_LEAD_ROWS} examples or more"
                    ),
                };
                format!(
                    "; the best other task's adapter with a fresh head ({name}) scored {:.1} %, \
                     the frozen model with one {:.1} %: {verdict}",
                    100.0 * accuracy,
                    100.0 * frozen_accuracy
                )
            }
        };
        format!(
            "answers with {used}: on {rows} the hybrid (epoch {}) scored {:.1} % \
             (log-loss {:.3}), the task's own LoRA {:.1} % (log-loss {:.3}){disagreements}\
             {related}",
            g.epoch,
            100.0 * g.hybrid_accuracy,
            g.hybrid_nll,
            100.0 * g.lora_accuracy,
            g.lora_nll
        )
    }
}

/// The hybrid against the task's own LoRA on the task's held-out rows, as the gate saw them
/// (docs/design.md §1.6): the hybrid is used only when it beats LoRA there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    /// Held-out rows compared on.
    pub rows: usize,
    /// The selected hybrid's accuracy on them.
    pub hybrid_accuracy: f64,
    /// Its mean negative log-likelihood.
    pub hybrid_nll: f64,
    /// The own LoRA's accuracy on them.
    pub lora_accuracy: f64,
    /// Its mean negative log-likelihood.
    pub lora_nll: f64,
    /// The fusion epoch selected on them (0: the untrained layer).
    pub epoch: usize,
    /// Folds of the cross-validated gate: the rows are the task's training rows, each scored by
    /// models trained on the other folds (0: the rows are held-out rows; absent in older files).
    #[serde(default)]
    pub folds: usize,
    /// Rows only the hybrid got right (0 in older files).
    #[serde(default)]
    pub only_hybrid: usize,
    /// Rows only the own LoRA got right (0 in older files).
    #[serde(default)]
    pub only_lora: usize,
    /// The relatedness check on the same rows: the best fresh head on another task's adapter
    /// (absent in older files, whose decision stands without it).
    #[serde(default)]
    pub source: Option<SourceCheck>,
}

/// Rows by which the best other task's adapter, with a fresh head, must lead the own LoRA on
/// the gate's rows for the hybrid to be considered (docs/design.md §1.6): a lead of one row is
/// what the best of several noisy heads shows by chance.
pub const SOURCE_LEAD_ROWS: usize = 2;

/// The gate's relatedness check (docs/design.md §1.6): each other fused adapter, and the frozen
/// base, with a fresh linear head trained on the rows the own LoRA trained on, scored on the
/// gate's rows. Knowledge sharing can only pay where another task's adapter reads the task
/// better than its own adapter does ([`GateCheck::sources_related`]); the base's head is recorded
/// beside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceCheck {
    /// Other tasks' adapters checked.
    pub sources: usize,
    /// The best one's position among the fused adapters (none without sources).
    pub best: Option<usize>,
    /// Its accuracy on the gate's rows (0 without sources).
    pub accuracy: f64,
    /// The frozen base's fresh head's accuracy on the same rows.
    pub frozen_accuracy: f64,
}

impl GateCheck {
    /// Two-sided exact McNemar p-value of the hybrid against LoRA on the gate's rows (1 when they
    /// disagree on none, or the counts are absent).
    pub fn p_value(&self) -> f64 {
        crate::train::uncertainty::mcnemar_exact(self.only_hybrid, self.only_lora)
    }

    /// Whether the hybrid beats LoRA: strictly more of the compared rows right, where another
    /// task's adapter is related ([`Self::sources_related`]). A tie keeps the task's own LoRA: the
    /// hybrid has to show it classifies better, and an equal count with a lower log-loss let
    /// small, useless fusion moves through (docs/results.md, the CoLA control).
    pub fn hybrid_wins(&self) -> bool {
        self.hybrid_accuracy > self.lora_accuracy + 1e-12 && self.sources_related()
    }

    /// Whether another task's adapter reads the task better than its own LoRA on the gate's rows:
    /// with a fresh head, at least [`SOURCE_LEAD_ROWS`] more of them right ([`SourceCheck`]).
    /// Without sources it is not; files from before the check say nothing and pass.
    pub fn sources_related(&self) -> bool {
        self.source.is_none_or(|s| {
            let lead = (s.accuracy - self.lora_accuracy) * self.rows as f64;
            s.best.is_some() && lead > SOURCE_LEAD_ROWS as f64 - 1e-6
        })
    }
}

/// `a` beats `b`, each (accuracy, NLL): higher accuracy, or equal accuracy and lower NLL.
pub fn better(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 > b.0 + 1e-12 || ((a.0 - b.0).abs() <= 1e-12 && a.1 < b.1 - 1e-9)
}
