//! The session's evaluation report: for each trained task, the frozen probe, single-task LoRA and
//! the hybrid on its held-out rows through [`crate::experiment::compare`] — accuracy with its
//! interval, calibration before and after temperature scaling (out of fold), per-class scores,
//! and what the numbers say in words. A fused task with a gate is reported on the gate's evidence
//! instead: every candidate of its answer (the other task's adapter too) on the rows the gate
//! checked, each scored by models that neither trained on them nor chose their epoch on them —
//! out of fold for a task that holds no rows out (docs/design.md §4), so its report exists at all.

use super::{Host, Session};
use crate::error::Result;
use crate::experiment::compare::{self as cmp, Comparison, paired_finding, width_finding};
use crate::experiment::{EvalVectors, Methods, compare, train_probe};
use crate::infer::{Answerer, pooled_vectors};
use crate::lora::LoraAdapter;
use crate::train::calibration::choose_temperature;
use crate::worker::protocol::{Event, MethodResult, TaskReport};

impl Session {
    /// Frozen probe, single-task LoRA and hybrid on each trained task's held-out rows, scored by
    /// [`compare`] on the same encoded rows.
    pub async fn evaluate<H: Host>(&self, host: &H) -> Result<Vec<TaskReport>> {
        let ready = self.ready_tasks()?;
        let all: Vec<&LoraAdapter> = ready.iter().map(|(_, tr, _)| &tr.adapter).collect();
        let e = &self.engine;
        let mut reports = Vec::new();
        for (i, (t, tr, head)) in ready.iter().enumerate() {
            let name = &t.state.name;
            host.emit(Event::Notice(format!("evaluating {name:?}")));
            host.pause().await;
            let s = &t.state.settings;
            let (train, held) = t.rows(&tr.labels);
            let classes = tr.labels.len();
            let mut report = TaskReport {
                task: name.clone(),
                labels: tr.labels.clone(),
                n: held.len(),
                source: s
                    .holdout
                    .describe(t.state.examples.len(), !t.state.test_examples.is_empty()),
                results: Vec::new(),
                findings: Vec::new(),
            };
            let lora_temperature = self.lora_temperature(name, tr.temperature);
            if self.gate_report(name, lora_temperature, &mut report) {
                reports.push(report);
                continue;
            }
            if held.is_empty() {
                report.source = format!(
                    "no held-out examples ({}): the per-task fusion's cross-validated check scores every candidate (a shared fusion makes none), or upload a test file",
                    report.source
                );
                reports.push(report);
                continue;
            }
            // The frozen probe: a head on the frozen base's vectors of the training rows.
            let probe = match classes >= 2 && !train.is_empty() {
                true => {
                    let x = pooled_vectors(&e.encoder, &e.tokenizer, None, &train.texts, &e.device)
                        .await?;
                    Some(train_probe(x, &train.labels, classes, &s.train, &e.device).await?)
                }
                false => None,
            };
            let fusion = self.fusion_for(name);
            let (adapters, own) = match fusion {
                Some(_) => (all.clone(), i),
                None => (vec![&tr.adapter], 0),
            };
            let v = EvalVectors::encode(e, &held.texts, &adapters, own, true).await?;
            let methods = Methods {
                frozen: probe.as_ref(),
                lora: Some(head),
                hybrid: fusion,
            };
            let cmp = compare(&v, &held.labels, classes, &methods).await?;
            report.findings = findings(&cmp, &held.labels);
            report.results = cmp
                .results
                .iter()
                .map(|r| {
                    // The temperature live predictions use: LoRA's and the hybrid's were fitted
                    // on these rows when they trained; the probe exists only here.
                    let temperature = match r.method.as_str() {
                        "lora" => lora_temperature,
                        "hybrid" => self.hybrid_temperature(name),
                        _ => choose_temperature(&r.probabilities, &held.labels),
                    };
                    method_result(r, &held.labels, temperature)
                })
                .collect();
            reports.push(report);
        }
        Ok(reports)
    }

    /// `report` from the gate's evidence of `task` (every candidate of its answer on the rows the
    /// gate checked, each by models that neither trained on them nor chose their epoch on them),
    /// with the temperatures live predictions use (the own LoRA's is `lora_temperature`); `false`
    /// where the task's fusion recorded none.
    fn gate_report(&self, task: &str, lora_temperature: f64, report: &mut TaskReport) -> bool {
        let Some((f, i)) = self.fused_index(task) else {
            return false;
        };
        let ft = &f.manifest.tasks[i];
        let Some(o) = f.heads.get(i).and_then(|h| h.out_of_fold.as_ref()) else {
            return false;
        };
        let classes = ft.labels.len();
        // In the order of the held-out report: frozen, lora, the other task's adapter, hybrid.
        let mut candidates = o.candidates();
        candidates.sort_by_key(|a| match a {
            Answerer::Frozen => 0,
            Answerer::Lora => 1,
            Answerer::Source => 2,
            Answerer::Hybrid => 3,
        });
        let results = candidates
            .iter()
            .filter_map(|&a| {
                let probs = o.get(a)?.to_vec();
                Some(cmp::MethodResult::new(a.key(), probs, &o.labels, classes))
            })
            .collect();
        let compared = Comparison {
            results,
            attention: None,
        };
        let source = ft.gate.and_then(|g| g.source);
        let folds = ft.gate.map_or(0, |g| g.folds);
        report.labels = ft.labels.clone();
        report.n = o.labels.len();
        let n = o.labels.len();
        report.source = match folds {
            0 => format!(
                "its {n} held-out examples, the rows its answer was chosen on: the hybrid on each half at the epoch the other half chose"
            ),
            k => format!(
                "its {n} training examples, cross-validated over {k} folds: each scored by models that did not train on it (the rows its answer was chosen on)"
            ),
        };
        report.findings = findings(&compared, &o.labels);
        report.results = compared
            .results
            .iter()
            .map(|r| {
                let temperature = match r.method.as_str() {
                    "lora" => lora_temperature,
                    "hybrid" => ft.temperature,
                    "frozen" => source.map_or(1.0, |s| s.frozen_temperature),
                    _ => source.map_or(1.0, |s| s.temperature),
                };
                method_result(r, &o.labels, temperature)
            })
            .collect();
        true
    }
}

/// One method's row of the report: its scores on `labels`' rows, calibration after scaling
/// measured out of fold, and the `temperature` live predictions use.
fn method_result(r: &cmp::MethodResult, labels: &[usize], temperature: f64) -> MethodResult {
    let (calibrated, reliability) = r.cross_fitted(labels);
    MethodResult {
        method: r.method.clone(),
        accuracy: r.metrics.accuracy,
        accuracy_interval: r.accuracy_interval(),
        macro_f1: r.metrics.macro_f1,
        confusion: r.confusion.counts.clone(),
        per_class: r.confusion.per_class(),
        temperature,
        raw: r.calibration.clone(),
        calibrated,
        reliability,
    }
}

/// The report's sentences for one task: the hybrid against LoRA on the same rows, and a note when
/// the accuracy intervals are wide.
fn findings(cmp: &Comparison, labels: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(h), Some(l), Some(p)) = (
        cmp.get("hybrid"),
        cmp.get("lora"),
        cmp.paired("hybrid", "lora", labels),
    ) {
        out.push(paired_finding(h, l, &p));
    }
    out.extend(width_finding(&cmp.results));
    out
}
