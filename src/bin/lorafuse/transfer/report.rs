//! `bench-transfer`'s output: markdown tables of mean test accuracy per method and N (over
//! targets and seeds, then per target), the stage times, and the accuracy-vs-N plot (plotters SVG).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{Row, Times};

/// Mean and sample standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    lorafuse::train::uncertainty::mean_std(v)
}

/// Methods in first-seen order.
fn methods(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.method) {
            out.push(r.method.clone());
        }
    }
    out
}

/// Accuracy (in %) per (method, n), averaged first over targets within a seed, then over seeds:
/// (mean, std over seeds).
fn by_method_n(rows: &[Row], target: Option<&str>) -> BTreeMap<(String, usize), (f64, f64)> {
    let mut per_seed: BTreeMap<(String, usize, u64), Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| target.is_none_or(|t| r.target == t)) {
        per_seed
            .entry((r.method.clone(), r.n, r.seed))
            .or_default()
            .push(100.0 * r.accuracy);
    }
    let mut per: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for ((m, n, _), v) in per_seed {
        per.entry((m, n))
            .or_default()
            .push(v.iter().sum::<f64>() / v.len() as f64);
    }
    per.into_iter().map(|(k, v)| (k, mean_std(&v))).collect()
}

fn table(rows: &[Row], target: Option<&str>) {
    let ns: Vec<usize> = {
        let mut v: Vec<usize> = rows.iter().map(|r| r.n).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let cells = by_method_n(rows, target);
    let mut head = "| method |".to_string();
    let mut rule = "| --- |".to_string();
    for n in &ns {
        head += &format!(" N = {n} |");
        rule += " ---: |";
    }
    println!("{head}\n{rule}");
    for m in methods(rows) {
        let mut line = format!("| {m} |");
        for n in &ns {
            match cells.get(&(m.clone(), *n)) {
                Some((mean, std)) => line += &format!(" {mean:.2} ± {std:.2} |"),
                None => line += " — |",
            }
        }
        println!("{line}");
    }
}

/// Prints the tables and the stage times.
pub fn print(rows: &[Row], times: &[Times], wall_seconds: f64) {
    let targets: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in rows {
            if !v.contains(&r.target) {
                v.push(r.target.clone());
            }
        }
        v
    };
    println!("Test accuracy (%), mean over targets {targets:?}, then mean ± std over seeds:");
    table(rows, None);
    for t in &targets {
        println!("\n{t}: test accuracy (%), mean ± std over seeds:");
        table(rows, Some(t));
    }
    let (s1, seq, fu): (f64, f64, f64) = times.iter().fold((0.0, 0.0, 0.0), |a, t| {
        (
            a.0 + t.stage1_seconds,
            a.1 + t.sequential_seconds,
            a.2 + t.fusion_seconds,
        )
    });
    println!(
        "\nTraining time: own LoRA {s1:.1} s, sequential transfer {seq:.1} s, default fusion \
         {fu:.1} s ({:.2} % of own LoRA + fusion). Total wall time: {:.1} min.",
        100.0 * fu / (s1 + fu).max(1e-9),
        wall_seconds / 60.0
    );
}

/// The methods drawn: the main ones and every `lora-seq-*` / `source-head-*`.
fn drawn(m: &str) -> bool {
    ["frozen", "lora", "hybrid", "hybrid-paper"].contains(&m)
        || m.starts_with("lora-seq-")
        || m.starts_with("source-head-")
}

/// Writes the accuracy-vs-N plot (mean over targets and seeds; log2 N on x) as SVG to `path`.
pub fn plot(rows: &[Row], path: &Path) -> Result<()> {
    let cells = by_method_n(rows, None);
    let ns: Vec<usize> = {
        let mut v: Vec<usize> = rows.iter().map(|r| r.n).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (lo, hi) = cells
        .iter()
        .filter(|((m, _), _)| drawn(m))
        .fold((100.0f64, 0.0f64), |(lo, hi), (_, (v, _))| {
            (lo.min(*v), hi.max(*v))
        });
    let x = |n: usize| (n.max(1) as f64).log2();
    let (x0, x1) = (x(ns[0]) - 0.2, x(*ns.last().unwrap_or(&ns[0])) + 0.2);
    let mut svg = String::new();
    {
        let e = |x: &dyn std::fmt::Display| anyhow!("plot: {x}");
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .caption(
                "bench-transfer: test accuracy vs target training rows (mean over targets, seeds)",
                ("sans-serif", 15),
            )
            .x_label_area_size(34)
            .y_label_area_size(48)
            .right_y_label_area_size(0)
            .build_cartesian_2d(x0..x1, (lo - 2.0).floor()..(hi + 2.0).ceil())
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("N (training rows per target, log scale)")
            .y_desc("accuracy (%)")
            .x_label_formatter(&|v| format!("{:.0}", 2f64.powf(*v)))
            .x_labels(ns.len() + 2)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|x| e(&x))?;
        let palette = [
            RGBColor(100, 100, 100),
            RGBColor(37, 99, 235),
            RGBColor(220, 38, 38),
            RGBColor(234, 88, 12),
            RGBColor(22, 163, 74),
            RGBColor(147, 51, 234),
            RGBColor(8, 145, 178),
            RGBColor(190, 24, 93),
        ];
        for (i, m) in methods(rows).iter().filter(|m| drawn(m)).enumerate() {
            let c = palette[i % palette.len()];
            let pts: Vec<(f64, f64)> = ns
                .iter()
                .filter_map(|n| cells.get(&(m.clone(), *n)).map(|(v, _)| (x(*n), *v)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(m.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|x| e(&x))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    std::fs::write(path, svg)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
