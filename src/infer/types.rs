//! The results of prediction as plain data: no tensors, nothing from burn, so the UI (and the
//! worker's messages) can use them without importing the engine.

use serde::{Deserialize, Serialize};

/// A label and the class probabilities behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The most probable label.
    pub label: String,
    /// Probability per class, in label order.
    pub probabilities: Vec<f32>,
}

/// Which model a task answers with (docs/design.md §1.6): its own LoRA, the hybrid, or a fresh
/// linear head on the frozen base's vectors or on another task's adapter's vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answerer {
    /// The task's own LoRA adapter and head.
    #[default]
    Lora,
    /// The hybrid: the task's fusion layer over every adapter and the base.
    Hybrid,
    /// The frozen probe: a linear head on the frozen base's vectors.
    Frozen,
    /// The source probe: a linear head on the best other task's adapter's vectors.
    Source,
}

impl Answerer {
    /// Its name in files and benchmark tables: `lora`, `hybrid`, `frozen`, `source`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Lora => "lora",
            Self::Hybrid => "hybrid",
            Self::Frozen => "frozen",
            Self::Source => "source",
        }
    }

    /// Its name in a sentence: "own LoRA", "hybrid", "frozen model", "other task's adapter".
    pub fn words(self) -> &'static str {
        match self {
            Self::Lora => "own LoRA",
            Self::Hybrid => "hybrid",
            Self::Frozen => "frozen model",
            Self::Source => "other task's adapter",
        }
    }
}

/// One task's predictions for one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPrediction {
    /// Task name.
    pub task: String,
    /// Single-task LoRA prediction.
    pub single: Prediction,
    /// Hybrid (fusion) prediction, when the task has a fusion layer.
    pub hybrid: Option<Prediction>,
    /// Attention of the fusion over the task adapters (sums to 1), in task order.
    pub attention: Option<Vec<f32>>,
    /// Whether the task's answer is `hybrid`: the fusion's gate, or the user's choice.
    #[serde(default)]
    pub uses_hybrid: bool,
    /// The fresh head's prediction when the task answers with one (the frozen model's or
    /// another task's adapter's, see `answered_by`).
    #[serde(default)]
    pub probe: Option<Prediction>,
    /// Which model gave the answer (absent in older messages: `hybrid` where `uses_hybrid`, else
    /// the own LoRA).
    #[serde(default)]
    pub answered_by: Option<Answerer>,
}

impl TaskPrediction {
    /// Which model answers: `answered_by`, or for older messages `uses_hybrid`; the own LoRA
    /// where the named model's prediction is missing.
    pub fn answerer(&self) -> Answerer {
        let by = self.answered_by.unwrap_or(match self.uses_hybrid {
            true => Answerer::Hybrid,
            false => Answerer::Lora,
        });
        match by {
            Answerer::Hybrid if self.hybrid.is_some() => by,
            Answerer::Frozen | Answerer::Source if self.probe.is_some() => by,
            _ => Answerer::Lora,
        }
    }

    /// The prediction the task answers with.
    pub fn answer(&self) -> &Prediction {
        match (self.answerer(), &self.hybrid, &self.probe) {
            (Answerer::Hybrid, Some(h), _) => h,
            (Answerer::Frozen | Answerer::Source, _, Some(p)) => p,
            _ => &self.single,
        }
    }

    /// The answer's label and its probability.
    pub fn answer_label(&self) -> (&str, f32) {
        let a = self.answer();
        let p = a
            .probabilities
            .get(argmax(&a.probabilities))
            .copied()
            .unwrap_or(0.0);
        (&a.label, p)
    }

    /// The answer in one short sentence, as a screen reader says it:
    /// `"sentiment: positive, 63.0 % (hybrid)"`.
    pub fn summary(&self) -> String {
        let (label, p) = self.answer_label();
        let by = self.answerer().words();
        format!("{}: {label}, {} ({by})", self.task, percent(p))
    }
}

/// Predictions for a batch of texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiTaskOutput {
    /// `[text][task]`.
    pub predictions: Vec<Vec<TaskPrediction>>,
    /// Encoder passes per text that were run (K + 1 with fusion, K without).
    pub encoder_passes_per_text: f64,
}

/// The texts to predict from what the user typed: the whole input as one text, or, with
/// `one_per_line`, each non-blank line (trimmed) as a text of its own.
pub fn texts_of(input: &str, one_per_line: bool) -> Vec<String> {
    match one_per_line {
        true => input
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        false if input.trim().is_empty() => Vec::new(),
        false => vec![input.to_owned()],
    }
}

/// Index of the largest probability.
pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// A probability as the page shows it, to one decimal of a percent, never claiming certainty:
/// a softmax is never exactly 0 or 1 (an f32 that reads 1.0 is rounding), so what would show as
/// 100.0 shows as `"> 99.9 %"` and what would show as 0.0 as `"< 0.1 %"`.
pub fn percent(p: f32) -> String {
    let pct = f64::from(p.clamp(0.0, 1.0)) * 100.0;
    let shown = format!("{pct:.1}");
    match shown.as_str() {
        "100.0" => "> 99.9 %".into(),
        "0.0" => "< 0.1 %".into(),
        _ => format!("{shown} %"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_splits_lines_only_when_asked() {
        let input = "  first line \n\n second line\r\n   \n";
        assert_eq!(texts_of(input, true), ["first line", "second line"]);
        assert_eq!(texts_of(input, false), [input]);
        assert!(texts_of(" \n ", false).is_empty());
        assert!(texts_of(" \n ", true).is_empty());
    }

    #[test]
    fn summary_names_the_answer_and_who_gave_it() {
        let p = |label: &str, probabilities: Vec<f32>| Prediction {
            label: label.into(),
            probabilities,
        };
        let mut tp = TaskPrediction {
            task: "sentiment".into(),
            single: p("negative", vec![0.8, 0.2]),
            hybrid: Some(p("positive", vec![0.37, 0.63])),
            attention: None,
            uses_hybrid: true,
            probe: None,
            answered_by: None,
        };
        assert_eq!(tp.summary(), "sentiment: positive, 63.0 % (hybrid)");
        tp.uses_hybrid = false;
        assert_eq!(tp.summary(), "sentiment: negative, 80.0 % (own LoRA)");
        tp.single = p("negative", vec![1.0, 0.0]);
        assert_eq!(tp.summary(), "sentiment: negative, > 99.9 % (own LoRA)");
        // A fresh head's answer names its model; without its prediction the own LoRA answers.
        tp.answered_by = Some(Answerer::Frozen);
        assert_eq!(tp.summary(), "sentiment: negative, > 99.9 % (own LoRA)");
        tp.probe = Some(p("positive", vec![0.1, 0.9]));
        assert_eq!(tp.summary(), "sentiment: positive, 90.0 % (frozen model)");
        assert_eq!(tp.answer().label, "positive");
    }

    #[test]
    fn percent_never_rounds_to_certainty() {
        assert_eq!(percent(0.9999), "> 99.9 %");
        assert_eq!(percent(0.99949), "99.9 %");
        assert_eq!(
            percent(1.0),
            "> 99.9 %",
            "an f32 softmax of 1.0 is rounding"
        );
        assert_eq!(percent(0.00001), "< 0.1 %");
        assert_eq!(percent(0.0), "< 0.1 %");
        assert_eq!(percent(0.5), "50.0 %");
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }
}
