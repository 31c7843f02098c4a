//! `bench-transfer`'s output: markdown tables of mean test accuracy per method and N (over
//! targets and seeds, then per target), the stage times, and the accuracy-vs-N plot (plotters SVG).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};

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

/// A row's size: K per class in `--k-per-class` runs, else N rows.
fn size(r: &Row) -> usize {
    r.k.unwrap_or(r.n)
}

/// Accuracy (in %) per (method, size), averaged first over targets within a seed, then over seeds:
/// (mean, std over seeds).
fn by_method_n(rows: &[Row], target: Option<&str>) -> BTreeMap<(String, usize), (f64, f64)> {
    let mut per_seed: BTreeMap<(String, usize, u64), Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| target.is_none_or(|t| r.target == t)) {
        per_seed
            .entry((r.method.clone(), size(r), r.seed))
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
        let mut v: Vec<usize> = rows.iter().map(size).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let cells = by_method_n(rows, target);
    let mut head = "| method |".to_string();
    let mut rule = "| --- |".to_string();
    let unit = match rows.iter().any(|r| r.k.is_some()) {
        true => "K",
        false => "N",
    };
    for n in &ns {
        head += &format!(" {unit} = {n} |");
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

/// `a` against `b` per size, where both ran: the mean over targets of `a − b` per seed, its mean
/// over seeds with a 95 % t-interval, and on how many targets `a`'s mean over seeds is at least
/// `b`'s.
fn versus(rows: &[Row], a: &str, b: &str) {
    let acc = |m: &str| -> BTreeMap<(String, usize, u64), f64> {
        rows.iter()
            .filter(|r| r.method == m)
            .map(|r| ((r.target.clone(), size(r), r.seed), 100.0 * r.accuracy))
            .collect()
    };
    let (xa, xb) = (acc(a), acc(b));
    if xb.is_empty() {
        return;
    }
    // (size) → seed → differences over targets; (size, target) → (sum a, sum b, count).
    let mut per_seed: BTreeMap<usize, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    let mut per_target: BTreeMap<(usize, String), (f64, f64, usize)> = BTreeMap::new();
    for (key, va) in &xa {
        let Some(vb) = xb.get(key) else { continue };
        let (t, s, seed) = key;
        per_seed
            .entry(*s)
            .or_default()
            .entry(*seed)
            .or_default()
            .push(va - vb);
        let e = per_target.entry((*s, t.clone())).or_insert((0.0, 0.0, 0));
        *e = (e.0 + va, e.1 + vb, e.2 + 1);
    }
    println!(
        "
{a} − {b} (points; mean over targets, then over seeds with a 95 % t-interval):"
    );
    for (s, seeds) in per_seed {
        let d: Vec<f64> = seeds
            .values()
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            .collect();
        let (mean, sd) = mean_std(&d);
        let interval = match lorafuse::train::uncertainty::t95(d.len()) {
            Some(t) => {
                let half = t * sd / (d.len() as f64).sqrt();
                format!(
                    "{:+.2} to {:+.2}, {} seeds",
                    mean - half,
                    mean + half,
                    d.len()
                )
            }
            None => "one seed, no interval".into(),
        };
        let targets: Vec<_> = per_target.iter().filter(|((k, _), _)| *k == s).collect();
        let at_least = targets.iter().filter(|(_, (sa, sb, _))| sa >= sb).count();
        println!(
            "- size {s}: {mean:+.2} ({interval}); {a} ≥ {b} on {at_least} of {} targets",
            targets.len()
        );
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
    versus(rows, "answer", "setfit");
    versus(rows, "answer", "frozen");
    versus(rows, "answer", "lora");
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
    [
        "frozen",
        "lora",
        "hybrid",
        "hybrid-paper",
        "answer",
        "setfit",
    ]
    .contains(&m)
        || m.starts_with("lora-seq-")
        || m.starts_with("source-head-")
}

/// Writes the accuracy-vs-N plot (mean over the targets of `rows` and seeds) as SVG to `path`;
/// `targets` names them in the title where they were chosen.
pub fn plot(rows: &[Row], path: &Path, targets: &[String]) -> Result<()> {
    let cells = by_method_n(rows, None);
    let series: Vec<(String, Vec<(usize, f64)>)> = methods(rows)
        .into_iter()
        .filter(|m| drawn(m))
        .map(|m| {
            let pts = cells
                .iter()
                .filter(|((name, _), _)| *name == m)
                .map(|((_, n), (v, _))| (*n, *v))
                .collect();
            (m, pts)
        })
        .collect();
    let over = match targets {
        [] => "targets".to_string(),
        t => t.join(", "),
    };
    let svg = lorafuse::chart::accuracy_vs_n_svg(
        &series,
        &format!("bench-transfer: test accuracy vs target training rows (mean over {over}, seeds)"),
    )
    .map_err(|e| anyhow!("plot: {e}"))?;
    std::fs::write(path, svg)?;
    eprintln!(
        "wrote {} (as PNG: ./scripts/svg-png {})",
        path.display(),
        path.display()
    );
    Ok(())
}
