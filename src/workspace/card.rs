//! The model card (`README.md`) written into every task's adapter folder and zip: what the adapter
//! is (base model and its sha256, task, labels in the head's class order), how it was trained
//! (LoRA and training settings, examples), how well it did on held-out examples (the metrics when
//! the run measured them, the accuracy per epoch, the temperature), and how to use it outside
//! lorafuse: `python/load_adapter.py`, included verbatim, which `scripts/interop` runs against the
//! CLI. The YAML front matter is the Hugging Face Hub's (`base_model`, `library_name: peft`), as in
//! the card PEFT's `save_pretrained` writes.
//!
//! Left out: anything about the data beyond the count (the texts stay with the user).

use std::fmt::Write;

use super::task_files::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD, META, TaskMeta};

/// File name of the card.
pub const CARD: &str = "README.md";

/// The Python recipe the card and the README show (run by `scripts/interop`).
pub const RECIPE: &str = include_str!("../../python/load_adapter.py");

/// Markdown with front matter: a text from metadata the reader checks anyway, so a label or a
/// task name is written in code spans (backticks inside are replaced) and cannot inject markup.
pub fn model_card(meta: &TaskMeta) -> String {
    let code = |s: &str| format!("`{}`", s.replace('`', "'").replace(['\n', '\r'], " "));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "---\nbase_model: {}\nlibrary_name: peft\npipeline_tag: text-classification\ntags:\n- lora\n- lorafuse\n- text-classification\n---\n",
        serde_json::to_string(&meta.base_model).unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "# {}: a LoRA adapter and classifier head for {}\n",
        code(&meta.task),
        code(&meta.base_model)
    );
    let _ = writeln!(
        s,
        "Trained with lorafuse (one LoRA adapter per task, and an attention fusion over them), in the browser or with its CLI. The adapter is PEFT's format and loads \
         with `PeftModel.from_pretrained`; the head and the labels are lorafuse's own files.\n"
    );
    let _ = writeln!(s, "## Model\n");
    let _ = writeln!(s, "- base model: {}", code(&meta.base_model));
    let _ = writeln!(
        s,
        "- base model weights sha256: {} (lorafuse refuses to apply the adapter to other weights)",
        code(&meta.base_model_sha256)
    );
    let _ = writeln!(
        s,
        "- adapter weights sha256: {}",
        code(&meta.adapter_sha256)
    );
    let labels: Vec<String> = meta.labels.iter().map(|l| code(l)).collect();
    let _ = writeln!(
        s,
        "- task {}: {} classes, in the head's order: {}\n",
        code(&meta.task),
        meta.labels.len(),
        labels.join(", ")
    );

    let (l, t) = (&meta.lora, &meta.train);
    let _ = writeln!(s, "## Training\n");
    let _ = writeln!(s, "| setting | value |\n| --- | --- |");
    let _ = writeln!(s, "| training examples | {} |", meta.train_examples);
    let _ = writeln!(s, "| LoRA rank r, alpha | {}, {} |", l.r, l.alpha);
    let _ = writeln!(s, "| LoRA targets | {} |", l.target_modules.join(", "));
    let _ = writeln!(s, "| LoRA dropout | {} |", l.dropout);
    let _ = writeln!(s, "| epochs | {} |", t.epochs);
    let _ = writeln!(s, "| batch size | {} |", t.batch_size);
    let _ = writeln!(
        s,
        "| learning rate: adapter, head | {}, {} |",
        t.lr, t.head_lr
    );
    let _ = writeln!(s, "| weight decay | {} |", t.weight_decay);
    let _ = writeln!(s, "| seed | {} |\n", t.seed);

    let _ = writeln!(s, "## Held-out results\n");
    match &meta.metrics {
        Some(m) => {
            let _ = writeln!(
                s,
                "On {} held-out examples: accuracy {:.1} %, macro-F1 {:.3}, MCC {:.3}.",
                m.n,
                m.accuracy * 100.0,
                m.macro_f1,
                m.mcc
            );
        }
        None => {
            let _ = writeln!(
                s,
                "No final evaluation was stored with the adapter (the page's Evaluation panel \
                 measures it); the accuracy on the held-out examples after each epoch is below."
            );
        }
    }
    let curve: Vec<&_> = meta.history.iter().collect();
    if !curve.is_empty() {
        let _ = writeln!(
            s,
            "\n| epoch | mean training loss | held-out accuracy |\n| --- | --- | --- |"
        );
        for r in curve {
            let acc = r
                .val_accuracy
                .map_or("–".to_string(), |a| format!("{:.1} %", a * 100.0));
            let _ = writeln!(s, "| {} | {:.4} | {acc} |", r.epoch, r.loss);
        }
    }
    let _ = writeln!(
        s,
        "\nProbabilities are `softmax(logits / T)` with T = {:.4}, fitted on the held-out \
         examples (temperature scaling; 1 means none).\n",
        meta.temperature
    );

    let _ = writeln!(s, "## Files\n");
    let _ = writeln!(
        s,
        "- `{ADAPTER_CONFIG}`, `{ADAPTER_WEIGHTS}`: PEFT's LoRA adapter\n\
         - `{HEAD}`: the classifier head, `weight [classes, hidden]` and `bias [classes]` \
         (PyTorch layout), applied to the mean of the last hidden states over the real tokens\n\
         - `{META}`: labels, settings, history and temperature, as lorafuse reads them back\n"
    );
    let _ = writeln!(s, "## Use it in Python (PEFT + transformers)\n");
    let _ = writeln!(
        s,
        "Save this as `load_adapter.py`, then run \
         `python load_adapter.py THIS_FOLDER {} \"a text to classify\"`:\n",
        meta.base_model
    );
    let _ = writeln!(s, "```python\n{}```", RECIPE);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::LoraConfig;
    use crate::train::{Metrics, TrainConfig};
    use crate::workspace::task_files::{EpochRecord, TASK_FORMAT};

    fn meta() -> TaskMeta {
        TaskMeta {
            format: TASK_FORMAT.into(),
            task: "sentiment".into(),
            labels: vec!["negative".into(), "pos`itive\n# x".into()],
            base_model: "sentence-transformers/all-MiniLM-L6-v2".into(),
            base_model_sha256: "ab".repeat(32),
            lora: LoraConfig::default(),
            train: TrainConfig::default(),
            train_examples: 90,
            metrics: None,
            adapter_sha256: "cd".repeat(32),
            history: vec![
                EpochRecord {
                    epoch: 1,
                    loss: 0.69,
                    val_accuracy: Some(0.5),
                },
                EpochRecord {
                    epoch: 2,
                    loss: 0.41,
                    val_accuracy: Some(0.9),
                },
            ],
            temperature: 1.25,
            start: None,
        }
    }

    #[test]
    fn card_says_what_the_adapter_is_and_how_to_load_it() {
        let card = model_card(&meta());
        assert!(card.starts_with("---\nbase_model: \"sentence-transformers/all-MiniLM-L6-v2\"\n"));
        assert!(card.contains("library_name: peft"));
        assert!(card.contains(&format!("`{}`", "ab".repeat(32))));
        assert!(card.contains("2 classes, in the head's order: `negative`, `pos'itive # x`"));
        assert!(card.contains("| 2 | 0.4100 | 90.0 % |"));
        assert!(card.contains("T = 1.2500"));
        assert!(card.contains("No final evaluation"));
        assert!(card.contains(RECIPE));
        assert!(card.contains("PeftModel.from_pretrained"));
        // A label cannot start a heading or break out of its code span.
        assert!(!card.lines().any(|l| l.starts_with("# x")));
    }

    #[test]
    fn card_reports_the_final_metrics_when_measured() {
        let mut m = meta();
        m.metrics = Some(Metrics {
            accuracy: 0.875,
            macro_f1: 0.8,
            mcc: 0.7,
            n: 40,
        });
        let card = model_card(&m);
        assert!(
            card.contains("On 40 held-out examples: accuracy 87.5 %, macro-F1 0.800, MCC 0.700.")
        );
    }

    #[test]
    fn readme_shows_the_recipe_scripts_interop_runs() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(RECIPE),
            "README.md must show python/load_adapter.py verbatim"
        );
    }
}
