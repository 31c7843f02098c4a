//! `bench`'s output: the overlap removal, the accuracy tables (mean ± std over seeds), the
//! variants' rows, the wall times and the JSON file with every number.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use lorafuse::lora::LoraConfig;
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

/// Prints the tables: per task and method mean ± std over seeds, the variants, the times.
pub(super) fn print(
    a: &BenchArgs,
    tasks: &[TaskData],
    results: &[TaskSeedResult],
    times: &[SeedTimes],
    passes_per_text: f64,
    wall_seconds: f64,
) {
    let metric_name = |task: &str| if task == "cola" { "MCC" } else { "accuracy" };
    let pick = |m: &Metrics, task: &str| if task == "cola" { m.mcc } else { m.accuracy };
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        (mean, sd)
    };
    println!();
    println!("| task | metric | frozen | lora | hybrid | frozen F1 | lora F1 | hybrid F1 |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut avg: BTreeMap<&str, Vec<Vec<f64>>> = BTreeMap::new();
    for t in tasks {
        let rs: Vec<&TaskSeedResult> = results.iter().filter(|r| r.task == t.name).collect();
        let mut cells = Vec::new();
        for (key, get) in [
            (
                "frozen",
                (|r: &TaskSeedResult| r.frozen.test.clone()) as fn(&TaskSeedResult) -> Metrics,
            ),
            ("lora", |r| r.lora.test.clone()),
            ("hybrid", |r| r.hybrid.test.clone()),
        ] {
            let main: Vec<f64> = rs.iter().map(|r| pick(&get(r), &t.name)).collect();
            let f1: Vec<f64> = rs.iter().map(|r| get(r).macro_f1).collect();
            let e = avg
                .entry(key)
                .or_insert_with(|| vec![vec![0.0; a.seeds.len()], vec![0.0; a.seeds.len()]]);
            for (j, (m, f)) in main.iter().zip(&f1).enumerate() {
                e[0][j] += m / tasks.len() as f64;
                e[1][j] += f / tasks.len() as f64;
            }
            cells.push((stats(&main), stats(&f1)));
        }
        let f = |(m, s): (f64, f64)| format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            metric_name(&t.name),
            f(cells[0].0),
            f(cells[1].0),
            f(cells[2].0),
            f(cells[0].1),
            f(cells[1].1),
            f(cells[2].1)
        );
    }
    let f = |v: &Vec<f64>| {
        let (m, s) = stats(v);
        format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
    };
    // Extra hybrid variants: one row per task and their average, in the hybrid column.
    let extra_rows = |label: &str, get: fn(&TaskSeedResult) -> Option<&MethodScores>| {
        let mut all = vec![0.0; a.seeds.len()];
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
                "| {} ({label}) | {} | | | {} | | | |",
                t.name,
                metric_name(&t.name),
                f(&v)
            );
        }
        println!("| **average** ({label}) | | | | {} | | | |", f(&all));
    };
    if a.variants.fusion_grid {
        extra_rows("hybrid, fusion settings selected on dev", |r| {
            r.variants.hybrid_selected.as_ref()
        });
    }
    if a.variants.fusion_crossfit {
        extra_rows("hybrid, cross-fit", |r| r.variants.hybrid_crossfit.as_ref());
    }
    if a.variants.fusion_no_base {
        extra_rows("hybrid, no base branch", |r| r.variants.hybrid_no_base.as_ref());
    }
    if a.variants.fusion_shared {
        extra_rows("hybrid, one shared fusion", |r| r.variants.hybrid_shared.as_ref());
    }
    println!(
        "| **average** | | {} | {} | {} | {} | {} | {} |",
        f(&avg["frozen"][0]),
        f(&avg["lora"][0]),
        f(&avg["hybrid"][0]),
        f(&avg["frozen"][1]),
        f(&avg["lora"][1]),
        f(&avg["hybrid"][1])
    );
    println!(
        "\n(mean ± sample std over seeds {:?}, in %; macro-F1 columns are F1 for every task.)",
        a.seeds
    );

    println!(
        "\n| seed | stage 1 (s) | caching (s) | frozen probe (s) | fusion (s) | fusion share of training |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for t in times {
        let total = t.training_total();
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} % |",
            t.seed,
            t.stage1_seconds,
            t.caching_seconds,
            t.frozen_seconds,
            t.fusion_seconds,
            100.0 * t.fusion_seconds / total
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
        println!("- {}: {:.1}", t.name, stats(&v).0);
    }
    println!(
        "\nMulti-task prediction, {} tasks: {:.2} encoder passes per text (K + 1 = {}).",
        tasks.len(),
        passes_per_text,
        tasks.len() + 1
    );
    println!(
        "Total wall time: {:.1} min.",
        wall_seconds / 60.0
    );

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
