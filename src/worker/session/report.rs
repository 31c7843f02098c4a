//! The session's evaluation report: for each trained task, the frozen probe, single-task LoRA and
//! the hybrid on its held-out rows through [`crate::experiment::compare`] — accuracy with its
//! interval, calibration before and after temperature scaling (out of fold), per-class scores,
//! and what the numbers say in words.

use super::{Host, Session};
use crate::error::Result;
use crate::experiment::compare::{Comparison, paired_finding, width_finding};
use crate::experiment::{EvalVectors, Methods, compare, train_probe};
use crate::infer::pooled_vectors;
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
            if held.is_empty() {
                report.source = "no held-out examples (upload more data or a test file)".into();
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
                    let (calibrated, reliability) = r.cross_fitted(&held.labels);
                    let temperature = match r.method.as_str() {
                        "lora" => tr.temperature,
                        "hybrid" => self.hybrid_temperature(name),
                        _ => choose_temperature(&r.probabilities, &held.labels),
                    };
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
                })
                .collect();
            reports.push(report);
        }
        Ok(reports)
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
