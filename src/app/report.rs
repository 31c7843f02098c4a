//! The evaluation report: per task, the frozen probe, single-task LoRA and the hybrid on held-out
//! data — accuracy with its 95 % interval, macro-F1, calibration (ECE and Brier before and after
//! temperature scaling), the hybrid against LoRA in words (exact McNemar test), per-class
//! precision / recall / F1 and confusion matrices.

use leptos::prelude::*;

use super::{Ui, send};
use crate::chart::reliability_svg;
use crate::worker::protocol::{MethodResult, Request, TaskReport};

fn confusion(task: String, labels: Vec<String>, m: MethodResult) -> impl IntoView {
    let max = m
        .confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    view! {
        <div class="scroll" tabindex="0" role="region" aria-label=format!("{task}: confusion matrix, {} (scrolls)", m.method)>
        <table class="confusion" aria-label=format!("confusion matrix, {}", m.method)>
            <caption>{format!("{} (rows: truth, columns: predicted)", m.method)}</caption>
            <thead><tr><th><span class="sr-only">"true class"</span></th>{labels.iter().map(|l| view! { <th>{l.clone()}</th> }).collect_view()}</tr></thead>
            <tbody>
            {m.confusion.iter().enumerate().map(|(i, row)| view! {
                <tr><th scope="row">{labels.get(i).cloned().unwrap_or_default()}</th>
                {row.iter().map(|&c| {
                    let a = c as f64 / max;
                    view! { <td style=format!("background: rgba(37,99,235,{:.2})", a * 0.6)>{c}</td> }
                }).collect_view()}
                </tr>
            }).collect_view()}
            </tbody>
        </table>
        </div>
    }
}

/// Precision, recall and F1 per class of one method.
fn per_class(task: String, labels: Vec<String>, m: MethodResult) -> impl IntoView {
    view! {
        <div class="scroll" tabindex="0" role="region" aria-label=format!("{task}: per-class scores, {} (scrolls)", m.method)>
        <table class="per-class" aria-label=format!("per-class scores, {}", m.method)>
            <caption>{format!("{}: per class", m.method)}</caption>
            <thead><tr><th>"class"</th><th>"precision"</th><th>"recall"</th><th>"F1"</th><th>"n"</th></tr></thead>
            <tbody>
            {m.per_class.iter().enumerate().map(|(i, c)| view! {
                <tr><th scope="row">{labels.get(i).cloned().unwrap_or_default()}</th>
                    <td>{format!("{:.2}", c.precision)}</td><td>{format!("{:.2}", c.recall)}</td>
                    <td>{format!("{:.2}", c.f1)}</td><td>{c.support}</td></tr>
            }).collect_view()}
            </tbody>
        </table>
        </div>
    }
}

fn task_report(r: TaskReport) -> impl IntoView {
    let labels = r.labels.clone();
    let labels2 = r.labels.clone();
    let confusions = r
        .results
        .iter()
        .cloned()
        .map(|m| confusion(r.task.clone(), labels.clone(), m))
        .collect_view();
    let scores = r
        .results
        .iter()
        .cloned()
        .map(|m| per_class(r.task.clone(), labels2.clone(), m))
        .collect_view();
    view! {
        <div class="task-report" data-task=r.task.clone()>
            <h3>{r.task.clone()}</h3>
            <p class="hint">{format!("{} examples: {}", r.n, r.source)}</p>
            <ul class="findings" data-testid="findings">
                {r.findings.iter().map(|f| view! { <li>{f.clone()}</li> }).collect_view()}
            </ul>
            {r.results.iter().map(|m| {
                let acc = (m.accuracy * 100.0).clamp(0.0, 100.0);
                view! {
                    <div class="bar-row">
                        <span class="bar-label">{m.method.clone()}</span>
                        <span class="bar" role="meter" aria-label=format!("{} accuracy on {}", m.method, r.task)
                            aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{acc:.0}")>
                            <span class=format!("fill {}", m.method) style=format!("width:{acc:.1}%")></span>
                        </span>
                        <span class="bar-value">{format!("{acc:.1} %")}</span>
                    </div>
                }
            }).collect_view()}
            <div class="matrices">{confusions}</div>
            <div class="matrices">{scores}</div>
            <div class="reliability" data-testid="reliability" inner_html=reliability_svg(
                &r.results.iter().map(|m| (m.method.clone(), m.reliability.clone())).collect::<Vec<_>>(),
                &format!("{}: reliability after scaling", r.task),
            )></div>
        </div>
    }
}

#[component]
pub fn ReportPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let run = move |_| {
        ui.evaluating.set(true);
        send(Request::Evaluate);
    };
    view! {
        <section id="report" class="panel">
            <h2>"Evaluation"</h2>
            <p class="hint">{format!("Frozen probe (a head on the frozen model), single-task LoRA and the hybrid, on each task's held-out examples (or its uploaded test file). A fused task is scored on the rows its answer was chosen on, with the other task's adapter (source) beside them: its held-out examples, the hybrid on each half at the epoch the other half chose; a task with fewer than {} examples holds none out, and is scored on every training example by the models of its cross-validated check, which did not train on it. Calibration: expected calibration error (10 bins) and Brier score of the raw probabilities, and after temperature scaling measured out of fold (each half of the examples scaled with the temperature fitted on the other half).", crate::data::holdout::TRAIN_ALL_BELOW_ROWS)}</p>
            <button id="evaluate" on:click=run disabled=move || !ui.idle() || ui.evaluating.get()>
                {move || if ui.evaluating.get() { "Evaluating…" } else { "Evaluate" }}</button>
            {move || ui.report.get().map(|reports| {
                let rows = reports.clone();
                view! {
                    <table data-testid="report" class="report">
                        <thead><tr><th>"task"</th><th>"method"</th><th>"accuracy (95 % interval)"</th><th>"macro-F1"</th>
                            <th>"ECE raw → calibrated"</th><th>"Brier raw → calibrated"</th><th>"temperature"</th><th>"n"</th></tr></thead>
                        <tbody>
                        {rows.into_iter().flat_map(|r| {
                            let n = r.n;
                            let task = r.task.clone();
                            // A task with nothing to score says why, in its row.
                            let why = r.results.is_empty().then(|| view! {
                                <tr><td>{task.clone()}</td><td colspan="7">{r.source.clone()}</td></tr>
                            }.into_any());
                            why.into_iter().chain(r.results.into_iter().map(move |m| view! {
                                <tr><td>{task.clone()}</td><td>{m.method.clone()}</td>
                                    <td>{format!("{:.1} % ({:.1}–{:.1})", m.accuracy * 100.0,
                                        m.accuracy_interval.0 * 100.0, m.accuracy_interval.1 * 100.0)}</td>
                                    <td>{format!("{:.3}", m.macro_f1)}</td>
                                    <td>{format!("{:.3} → {:.3}", m.raw.ece, m.calibrated.ece)}</td>
                                    <td>{format!("{:.3} → {:.3}", m.raw.brier, m.calibrated.brier)}</td>
                                    <td>{format!("{:.2}", m.temperature)}</td><td>{n}</td></tr>
                            }.into_any())).collect::<Vec<_>>()
                        }).collect_view()}
                        </tbody>
                    </table>
                    <div class="reports">{reports.into_iter().map(task_report).collect_view()}</div>
                }
            })}
        </section>
    }
}
