//! The gate's verdict as recorded in `fusion_manifest.json` (docs/design.md §1.6): the hybrid
//! against the task's own LoRA on rows the training did not choose ([`GateCheck`]), the
//! relatedness check beside it ([`SourceCheck`]), and the task's gate in words
//! ([`FusedTask::describe_gate`]). Deciding it is [`crate::experiment::gate`]'s.

use serde::{Deserialize, Serialize};

use super::files::{FusedAdapter, FusedTask};
use crate::infer::Answerer;

impl FusedTask {
    /// The model the task answers with by its gate: `answer`, or in older files `use_hybrid`.
    pub fn answerer(&self) -> Answerer {
        self.answer.unwrap_or(match self.use_hybrid {
            true => Answerer::Hybrid,
            false => Answerer::Lora,
        })
    }

    /// The temperature of the own LoRA's probabilities: the one chosen out of fold by the
    /// cross-validated gate, else `stage1` (the adapter's own).
    pub fn lora_temperature_or(&self, stage1: f64) -> f64 {
        self.lora_temperature.unwrap_or(stage1)
    }

    /// What the gate decided, in words: which model the task answers with, and every
    /// candidate's score on the rows that decided it (`adapters`: the fused adapters, in fusion
    /// order, to name the other task's adapter).
    pub fn describe_gate(&self, adapters: &[FusedAdapter]) -> String {
        let source_name = self
            .gate
            .and_then(|g| g.source)
            .and_then(|s| s.best)
            .and_then(|b| adapters.get(b))
            .map_or("?", |a| a.task.as_str());
        let name = |a: Answerer| match a {
            Answerer::Lora => "its own LoRA".to_string(),
            Answerer::Hybrid => "the hybrid".to_string(),
            Answerer::Frozen => "the frozen model with a fresh head".to_string(),
            Answerer::Source => {
                format!("the other task's adapter with a fresh head ({source_name})")
            }
        };
        let used = self.answerer();
        let Some(g) = &self.gate else {
            return match used {
                Answerer::Hybrid => "answers with the hybrid (no held-out check was made: a shared fusion, or no held-out rows)".into(),
                other => format!("answers with {}", name(other)),
            };
        };
        let rows = match g.folds {
            0 => format!("{} held-out examples", g.rows),
            k => format!(
                "its {} training examples, cross-validated over {k} folds",
                g.rows
            ),
        };
        let pct = |a: f64| format!("{:.1} %", 100.0 * a);
        let mut scores = vec![
            format!("its own LoRA {}", pct(g.lora_accuracy)),
            format!("the hybrid {}", pct(g.hybrid_accuracy)),
        ];
        match g.source {
            Some(s) => {
                scores.push(format!(
                    "the frozen model with a fresh head {}",
                    pct(s.frozen_accuracy)
                ));
                match s.best {
                    Some(_) => scores.push(format!(
                        "the other task's adapter with a fresh head ({source_name}) {}",
                        pct(s.accuracy)
                    )),
                    None => scores.push("no other task's adapter to read it with".into()),
                }
            }
            None => {}
        }
        format!(
            "answers with {}: on {rows} (none chose the model they check), {}",
            name(used),
            scores.join(", ")
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

/// The share of the checked rows by which a fresh head must lead to replace the own LoRA as the
/// answer, or a fresh adapter as the start (docs/design.md §1.2 "Transfer", §1.6 "The answer"):
/// on a few dozen rows a lead of two or three rows (4–7 points) is what an adapter of an
/// unrelated task shows, one that knows the task led by 14 points or more (docs/results.md,
/// "Few-shot").
pub const CLEAR_LEAD_SHARE: f64 = 0.10;

/// Whether `lead` more rows right of `rows` is a clear lead: at least [`SOURCE_LEAD_ROWS`] rows
/// and at least [`CLEAR_LEAD_SHARE`] of the rows.
pub fn clear_lead(lead: f64, rows: usize) -> bool {
    let need = (SOURCE_LEAD_ROWS as f64).max(CLEAR_LEAD_SHARE * rows as f64);
    lead > need - 1e-6
}

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
    /// The best source's mean negative log-likelihood on them (0 in older files).
    #[serde(default)]
    pub nll: f64,
    /// The frozen base's head's mean negative log-likelihood on them (0 in older files).
    #[serde(default)]
    pub frozen_nll: f64,
    /// Temperature of the best source's probabilities, chosen on the gate's rows (1 in older
    /// files).
    #[serde(default = "one")]
    pub temperature: f64,
    /// Temperature of the frozen base's head's probabilities, chosen on the gate's rows (1 in
    /// older files).
    #[serde(default = "one")]
    pub frozen_temperature: f64,
}

fn one() -> f64 {
    1.0
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

    /// The model the task answers with (docs/design.md §1.6): of the own LoRA and the
    /// candidates that may replace it, the one that scores best on the gate's rows (accuracy,
    /// then log-loss; the own LoRA, the frozen model, the other task's adapter, the hybrid in
    /// this order on ties). The own LoRA is replaced only by
    /// - a fresh head (the frozen model's, or the best other task's adapter's) with a clear lead
    ///   over it ([`clear_lead`]);
    /// - the hybrid where it wins ([`Self::hybrid_wins`]).
    pub fn answer(&self) -> Answerer {
        let leads = |accuracy: f64| {
            clear_lead(
                (accuracy - self.lora_accuracy) * self.rows as f64,
                self.rows,
            )
        };
        let mut best = (Answerer::Lora, (self.lora_accuracy, self.lora_nll));
        if let Some(s) = self.source {
            let frozen = (s.frozen_accuracy, s.frozen_nll);
            if leads(s.frozen_accuracy) && better(frozen, best.1) {
                best = (Answerer::Frozen, frozen);
            }
            let source = (s.accuracy, s.nll);
            if s.best.is_some() && leads(s.accuracy) && better(source, best.1) {
                best = (Answerer::Source, source);
            }
        }
        let hybrid = (self.hybrid_accuracy, self.hybrid_nll);
        if self.hybrid_wins() && better(hybrid, best.1) {
            best = (Answerer::Hybrid, hybrid);
        }
        best.0
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

/// The gate's evidence (docs/design.md §1.6): the class of every row it checked, and each
/// candidate's probabilities for those rows (temperature 1) from models that neither trained on
/// them nor chose their epoch on them, in the order the gate pooled them. With cross-validation
/// the rows are the task's training rows, each scored out of fold; else its held-out rows, in two
/// halves, each scored by the hybrid of the epoch the other half chose. The report scores the
/// candidates on these rows, so its numbers are the gate's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutOfFold {
    /// Class of every checked row.
    pub labels: Vec<usize>,
    /// `(candidate, one probability row per label)`.
    pub probs: Vec<(Answerer, Vec<Vec<f32>>)>,
}

impl OutOfFold {
    /// The probability rows of `candidate`, if recorded.
    pub fn get(&self, candidate: Answerer) -> Option<&[Vec<f32>]> {
        self.probs
            .iter()
            .find(|(a, _)| *a == candidate)
            .map(|(_, p)| p.as_slice())
    }

    /// The candidates recorded, in order.
    pub fn candidates(&self) -> Vec<Answerer> {
        self.probs.iter().map(|(a, _)| *a).collect()
    }
}

/// `a` beats `b`, each (accuracy, NLL): higher accuracy, or equal accuracy and lower NLL.
pub fn better(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 > b.0 + 1e-12 || ((a.0 - b.0).abs() <= 1e-12 && a.1 < b.1 - 1e-9)
}
