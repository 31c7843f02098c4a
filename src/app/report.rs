//! The evaluation report: per task, accuracy and macro-F1 of the frozen probe, single-task LoRA
//! and the hybrid on held-out data, as numbers and bars, with confusion matrices.

use leptos::prelude::*;

use super::{Ui, send};
use crate::worker::protocol::{MethodResult, Request, TaskReport};

fn confusion(labels: Vec<String>, m: MethodResult) -> impl IntoView {
    let max = m
        .confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    view! {
        <table class="confusion" aria-label=format!("confusion matrix, {}", m.method)>
            <caption>{format!("{} (rows: truth, columns: predicted)", m.method)}</caption>
            <thead><tr><th></th>{labels.iter().map(|l| view! { <th>{l.clone()}</th> }).collect_view()}</tr></thead>
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
    }
}

fn task_report(r: TaskReport) -> impl IntoView {
    let labels = r.labels.clone();
    view! {
        <div class="task-report" data-task=r.task.clone()>
            <h3>{r.task.clone()}</h3>
            <p class="hint">{format!("{} examples: {}", r.n, r.source)}</p>
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
            <div class="matrices">{r.results.iter().cloned().map(|m| confusion(labels.clone(), m)).collect_view()}</div>
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
            <p class="hint">"Frozen probe (a head on the frozen model), single-task LoRA and the hybrid, on each task's held-out examples (or its uploaded test file)."</p>
            <button id="evaluate" on:click=run disabled=move || !ui.idle() || ui.evaluating.get()>
                {move || if ui.evaluating.get() { "Evaluating…" } else { "Evaluate" }}</button>
            {move || ui.report.get().map(|reports| {
                let rows = reports.clone();
                view! {
                    <table data-testid="report" class="report">
                        <thead><tr><th>"task"</th><th>"method"</th><th>"accuracy"</th><th>"macro-F1"</th><th>"n"</th></tr></thead>
                        <tbody>
                        {rows.into_iter().flat_map(|r| {
                            let n = r.n;
                            let task = r.task.clone();
                            r.results.into_iter().map(move |m| view! {
                                <tr><td>{task.clone()}</td><td>{m.method.clone()}</td>
                                    <td>{format!("{:.1} %", m.accuracy * 100.0)}</td>
                                    <td>{format!("{:.3}", m.macro_f1)}</td><td>{n}</td></tr>
                            }).collect::<Vec<_>>()
                        }).collect_view()}
                        </tbody>
                    </table>
                    <div class="reports">{reports.into_iter().map(task_report).collect_view()}</div>
                }
            })}
        </section>
    }
}
