//! `bench`'s output: the overlap removal, the accuracy tables (mean ± std over seeds), the
//! variants' rows, the wall times and the JSON file with every number.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use lorafuse::experiment::compare::fmt_p;
use lorafuse::lora::LoraConfig;
use lorafuse::train::calibration::Calibration;
use lorafuse::train::uncertainty::{mcnemar_exact, mean_std};
use lorafuse::train::{Metrics, TrainConfig};

use super::{BenchArgs, MethodScores, SeedTimes, TaskData, TaskSeedResult};

/// Prints how many train rows each task lost to the overlap removal.
pub(super) fn overlap(tasks: &[TaskData]) {
    println!("Overlap removal (train texts whose normalised form is in any task's test split):");
    for t in tasks {
        println!(
            "- {}: {} rows removed, {} train rows left",
            t.name,
            t.removed,
            t.train.len()
        );
    }
}

/// The metric a task is judged by: MCC for CoLA, accuracy otherwise.
fn metric_name(task: &str) -> &'static str {
    if task == "cola" { "MCC" } else { "accuracy" }
}

fn pick(m: &Metrics, task: &str) -> f64 {
    if task == "cola" { m.mcc } else { m.accuracy }
}

/// `mean ± std` in %.
fn fmt_mean_std(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
}

/// Prints the tables: per task and method mean ± std over seeds, the variants, the times.
pub(super) fn print(
    a: &BenchArgs,
    tasks: &[TaskData],
    results: &[TaskSeedResult],
    times: &[SeedTimes],
    passes_per_text: f64,
    wall_seconds: f64,
) {
    accuracy_table(a, tasks, results);
    calibration_table(tasks, results);
    paired_summary(results);
    fusion_variants_table(a, results);
    times_table(a, tasks, results, times);
    println!(
        "\nMulti-task prediction, {} tasks: {:.2} encoder passes per text (K + 1 = {}).",
        tasks.len(),
        passes_per_text,
        tasks.len() + 1
    );
    println!("Total wall time: {:.1} min.", wall_seconds / 60.0);
}

/// Test scores per task and method (main metric and macro-F1), the variants' rows, the average.
fn accuracy_table(a: &BenchArgs, tasks: &[TaskData], results: &[TaskSeedResult]) {
    type Get = fn(&TaskSeedResult) -> &Metrics;
    let methods: [(&str, Get); 4] = [
        ("frozen", |r| &r.frozen.test),
        ("lora", |r| &r.lora.test),
        ("hybrid", |r| &r.hybrid.test),
        ("answer", |r| &r.answer.test),
    ];
    let seeds = a.seeds.len();
    println!();
    println!(
        "| task | metric | frozen | lora | hybrid | answer | frozen F1 | lora F1 | hybrid F1 | answer F1 |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    // Per method: the average over tasks of each seed's main metric and F1.
    let mut avg: BTreeMap<&str, [Vec<f64>; 2]> = BTreeMap::new();
    for t in tasks {
        let rs: Vec<&TaskSeedResult> = results.iter().filter(|r| r.task == t.name).collect();
        let (mut main_cells, mut f1_cells) = (Vec::new(), Vec::new());
        for (key, get) in methods {
            let main: Vec<f64> = rs.iter().map(|r| pick(get(r), &t.name)).collect();
            let f1: Vec<f64> = rs.iter().map(|r| get(r).macro_f1).collect();
            let e = avg
                .entry(key)
                .or_insert_with(|| [vec![0.0; seeds], vec![0.0; seeds]]);
            for (j, (m, f)) in main.iter().zip(&f1).enumerate() {
                e[0][j] += m / tasks.len() as f64;
                e[1][j] += f / tasks.len() as f64;
            }
            main_cells.push(fmt_mean_std(&main));
            f1_cells.push(fmt_mean_std(&f1));
        }
        println!(
            "| {} | {} | {} | {} |",
            t.name,
            metric_name(&t.name),
            main_cells.join(" | "),
            f1_cells.join(" | ")
        );
    }
    let v = &a.variants;
    type GetVariant = fn(&TaskSeedResult) -> Option<&MethodScores>;
    let variants: [(bool, &str, GetVariant); 4] = [
        (
            v.fusion_grid,
            "hybrid, fusion settings selected on dev",
            |r| r.variants.hybrid_selected.as_ref(),
        ),
        (v.fusion_crossfit, "hybrid, cross-fit", |r| {
            r.variants.hybrid_crossfit.as_ref()
        }),
        (v.fusion_no_base, "hybrid, no base branch", |r| {
            r.variants.hybrid_no_base.as_ref()
        }),
        (v.fusion_shared, "hybrid, one shared fusion", |r| {
            r.variants.hybrid_shared.as_ref()
        }),
    ];
    for (on, label, get) in variants {
        if on {
            variant_rows(tasks, results, seeds, label, get);
        }
    }
    let cell = |m: &str, i: usize| fmt_mean_std(&avg[m][i]);
    println!(
        "| **average** | | {} | {} | {} | {} | {} | {} | {} | {} |",
        cell("frozen", 0),
        cell("lora", 0),
        cell("hybrid", 0),
        cell("answer", 0),
        cell("frozen", 1),
        cell("lora", 1),
        cell("hybrid", 1),
        cell("answer", 1)
    );
    println!(
        "\n(mean ± sample std over seeds {:?}, in %; macro-F1 columns are F1 for every task.)",
        a.seeds
    );
}

/// Test ECE and Brier per task and method, raw and at the dev-fitted temperature (mean over seeds).
fn calibration_table(tasks: &[TaskData], results: &[TaskSeedResult]) {
    type Get = fn(&TaskSeedResult) -> &MethodScores;
    let methods: [(&str, Get); 3] = [
        ("frozen", |r| &r.frozen),
        ("lora", |r| &r.lora),
        ("hybrid", |r| &r.hybrid),
    ];
    println!(
        "\nCalibration on test (ECE, 10 bins; Brier), raw → at the temperature fitted on dev:"
    );
    println!(
        "| task | frozen ECE | lora ECE | hybrid ECE | frozen Brier | lora Brier | hybrid Brier |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mean = |v: Vec<f64>| mean_std(&v).0;
    let mut rows: Vec<(String, Vec<&TaskSeedResult>)> = tasks
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                results.iter().filter(|r| r.task == t.name).collect(),
            )
        })
        .collect();
    rows.push(("**average**".into(), results.iter().collect()));
    for (name, rs) in rows {
        let cell = |get: Get, brier: bool| {
            let pick = |c: &Calibration| if brier { c.brier } else { c.ece };
            let raw = mean(rs.iter().map(|r| pick(&get(r).test_calibration)).collect());
            let scaled = mean(
                rs.iter()
                    .map(|r| pick(&get(r).test_calibration_scaled))
                    .collect(),
            );
            format!("{raw:.3} → {scaled:.3}")
        };
        let eces: Vec<String> = methods.iter().map(|&(_, g)| cell(g, false)).collect();
        let briers: Vec<String> = methods.iter().map(|&(_, g)| cell(g, true)).collect();
        println!("| {name} | {} | {} |", eces.join(" | "), briers.join(" | "));
    }
}

/// The hybrid against LoRA over every task and seed: mean difference, wins / ties / losses with an
/// exact sign test, and how many single comparisons the exact McNemar test finds significant.
/// The default fusion and every `--fusion-variants` entry, averaged over tasks and seeds: test
/// and dev accuracy as the product uses it (epoch selected on dev, gated), test accuracy after the
/// last epoch, and how often the gate chose the hybrid.
fn fusion_variants_table(a: &BenchArgs, results: &[TaskSeedResult]) {
    if results.is_empty() {
        return;
    }
    println!(
        "\nFusion variants (mean over tasks and seeds, %; `gated` = epoch selected on dev, LoRA \
         where the hybrid does not beat it on dev):"
    );
    println!(
        "| variant | test, gated | dev, gated | test, last epoch trained | epochs trained | gate chose the hybrid |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let n = results.len() as f64;
    let mean = |f: &dyn Fn(&TaskSeedResult) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = results.iter().filter_map(f).collect();
        (v.len() == results.len()).then(|| 100.0 * v.iter().sum::<f64>() / n)
    };
    let lora_test = mean(&|r| Some(r.lora.test.accuracy)).unwrap_or(0.0);
    let lora_dev = mean(&|r| Some(r.lora.dev.accuracy)).unwrap_or(0.0);
    println!("| (own LoRA) | {lora_test:.2} | {lora_dev:.2} | — | — | — |");
    if !a.no_gate {
        let chose = results.iter().filter(|r| r.use_hybrid).count();
        println!(
            "| {} (default) | {:.2} | {:.2} | — | — | {chose} of {} |",
            a.fusion,
            mean(&|r| Some(r.hybrid.test.accuracy)).unwrap_or(0.0),
            mean(&|r| Some(r.hybrid.dev.accuracy)).unwrap_or(0.0),
            results.len()
        );
    }
    for name in &a.fusion_variants {
        let get = |r: &TaskSeedResult| r.fusion_variants.get(name).cloned();
        let (Some(t), Some(d), Some(l)) = (
            mean(&|r| get(r).map(|v| v.gated.test.accuracy)),
            mean(&|r| get(r).map(|v| v.gated.dev.accuracy)),
            mean(&|r| get(r).map(|v| v.last.test.accuracy)),
        ) else {
            continue;
        };
        let chose = results
            .iter()
            .filter(|r| get(r).is_some_and(|v| v.use_hybrid))
            .count();
        let epochs: usize = results
            .iter()
            .filter_map(|r| get(r).map(|v| v.epochs_trained))
            .sum();
        println!(
            "| {name} | {t:.2} | {d:.2} | {l:.2} | {:.1} | {chose} of {} |",
            epochs as f64 / n,
            results.len()
        );
    }
}

fn paired_summary(results: &[TaskSeedResult]) {
    let diffs: Vec<f64> = results
        .iter()
        .map(|r| r.hybrid.test.accuracy - r.lora.test.accuracy)
        .collect();
    let wins = diffs.iter().filter(|&&d| d > 0.0).count();
    let losses = diffs.iter().filter(|&&d| d < 0.0).count();
    let (mean, sd) = mean_std(&diffs);
    let significant = results
        .iter()
        .filter(|r| r.hybrid_vs_lora.p_value < 0.05)
        .count();
    println!(
        "\nHybrid − LoRA on test, paired over {} task × seed runs: {:+.2} ± {:.2} points; {wins} wins, \
         {} ties, {losses} losses (exact sign test, {}); {significant} of the {} single \
         comparisons significant at 0.05 (exact McNemar).",
        diffs.len(),
        100.0 * mean,
        100.0 * sd,
        diffs.len() - wins - losses,
        fmt_p(mcnemar_exact(wins, losses)),
        results.len()
    );
}

/// One extra hybrid variant: a row per task and their average, in the hybrid column.
fn variant_rows(
    tasks: &[TaskData],
    results: &[TaskSeedResult],
    seeds: usize,
    label: &str,
    get: fn(&TaskSeedResult) -> Option<&MethodScores>,
) {
    let mut all = vec![0.0; seeds];
    for t in tasks {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.task == t.name)
            .filter_map(|r| get(r).map(|m| pick(&m.test, &t.name)))
            .collect();
        for (j, x) in v.iter().enumerate() {
            all[j] += x / tasks.len() as f64;
        }
        println!(
            "| {} ({label}) | {} | | | {} | | | | | |",
            t.name,
            metric_name(&t.name),
            fmt_mean_std(&v)
        );
    }
    println!(
        "| **average** ({label}) | | | | {} | | | | | |",
        fmt_mean_std(&all)
    );
}

/// Wall time per seed and stage, the fusion's share, and stage 1 per task.
fn times_table(a: &BenchArgs, tasks: &[TaskData], results: &[TaskSeedResult], times: &[SeedTimes]) {
    println!(
        "\n| seed | stage 1 (s) | caching (s) | frozen probe (s) | fusion (s) | fusion share of training |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for t in times {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} % |",
            t.seed,
            t.stage1_seconds,
            t.caching_seconds,
            t.frozen_seconds,
            t.fusion_seconds,
            100.0 * t.fusion_seconds / t.training_total()
        );
    }
    if a.variants.fusion_shared {
        for t in times {
            println!(
                "\nSeed {}: the one shared fusion trained in {:.1} s ({:.2} % of the training above).",
                t.seed,
                t.shared_fusion_seconds,
                100.0 * t.shared_fusion_seconds / t.training_total()
            );
        }
    }
    println!("\nStage 1 per task (s, mean over seeds):");
    for t in tasks {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.task == t.name)
            .map(|r| r.stage1_seconds)
            .collect();
        println!("- {}: {:.1}", t.name, mean_std(&v).0);
    }
}

/// Writes every number as JSON to `path`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_json(
    path: &Path,
    a: &BenchArgs,
    tasks: &[TaskData],
    lora: &LoraConfig,
    base_cfg: &TrainConfig,
    results: &[TaskSeedResult],
    times: &[SeedTimes],
    passes_per_text: f64,
    wall_seconds: f64,
) -> Result<()> {
    let json = serde_json::json!({
        "args": {"tasks": a.tasks, "train_per_task": a.train_per_task, "test_per_task": a.test_per_task, "seeds": a.seeds},
        "lora": lora, "train": base_cfg,
        "overlap_removed": tasks.iter().map(|t| (t.name.clone(), t.removed)).collect::<BTreeMap<_, _>>(),
        "results": results, "times": times, "encoder_passes_per_text": passes_per_text,
        "wall_seconds": wall_seconds,
    });
    std::fs::write(path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The reliability diagrams of the test probabilities, pooled over tasks and seeds per method:
/// `<prefix>_raw.svg` and `<prefix>_scaled.svg` (at the dev-fitted temperatures).
pub(super) fn reliability_svgs(results: &[TaskSeedResult], prefix: &Path) -> Result<()> {
    type Pick = fn(&MethodScores) -> &Vec<lorafuse::train::calibration::Bin>;
    let kinds: [(&str, &str, Pick); 2] = [
        ("raw", "as trained", |m| &m.test_reliability),
        ("scaled", "at the dev-fitted temperature", |m| {
            &m.test_reliability_scaled
        }),
    ];
    for (suffix, words, pick) in kinds {
        let methods: Vec<(String, Vec<lorafuse::train::calibration::Bin>)> = [
            (
                "frozen",
                (|r| &r.frozen) as fn(&TaskSeedResult) -> &MethodScores,
            ),
            ("lora", |r| &r.lora),
            ("hybrid", |r| &r.hybrid),
        ]
        .into_iter()
        .map(|(name, get)| {
            let diagrams: Vec<_> = results.iter().map(|r| pick(get(r)).clone()).collect();
            (
                name.to_string(),
                lorafuse::train::calibration::pool(&diagrams),
            )
        })
        .collect();
        let svg = lorafuse::chart::reliability_svg(&methods, &format!("test, {words}"));
        let stem = prefix
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let path = prefix.with_file_name(format!("{stem}_{suffix}.svg"));
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
