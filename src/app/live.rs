//! Try it live: predictions of every task as the user types (debounced), single-task and hybrid
//! side by side, with the fusion's attention over the task adapters; with "one text per line",
//! every line is predicted in one batch and shown as one row of a table ([`batch_table`]).
//! `LivePanel` is one view tree with its debounce handler (~100 lines).

use leptos::leptos_dom::helpers::{TimeoutHandle, set_timeout_with_handle};
use leptos::prelude::*;

use super::{Ui, send};
use crate::infer::types::{Answerer, MultiTaskOutput, Prediction, percent, texts_of};
use crate::worker::protocol::Request;

/// Wait after the last keystroke before predicting.
const DEBOUNCE_MS: u64 = 250;

/// Most classes shown per prediction; the rest are summed up in one line (a 150-class task would
/// otherwise fill the screen with near-zero bars).
const TOP_K: usize = 5;

fn bars(labels: Vec<String>, p: Prediction) -> impl IntoView {
    let mut rows: Vec<(String, f32)> = labels.into_iter().zip(p.probabilities).collect();
    let hidden = rows.len().saturating_sub(TOP_K);
    let mut rest = 0.0f32;
    if hidden > 0 {
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rest = rows[TOP_K..].iter().map(|r| r.1).sum();
        rows.truncate(TOP_K);
    }
    let shown = rows
        .into_iter()
        .map(|(l, v)| {
            let pct = (v * 100.0).clamp(0.0, 100.0);
            let top = l == p.label;
            view! {
                <div class=if top { "bar-row top" } else { "bar-row" }>
                    <span class="bar-label">{l.clone()}</span>
                    <span class="bar" role="meter" aria-label=format!("probability of {l}")
                        aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{pct:.0}")>
                        <span class="fill" style=format!("width:{pct:.1}%")></span>
                    </span>
                    <span class="bar-value">{percent(v)}</span>
                </div>
            }
        })
        .collect_view();
    view! {
        {shown}
        {(hidden > 0).then(|| view! {
            <p class="small more-classes" data-testid="more-classes">
                {format!("{hidden} more classes, {} together", percent(rest))}
            </p>
        })}
    }
}

/// Several texts' answers, one row per text and one column per task (the answer's label and
/// probability; the single-text view has the details).
fn batch_table(texts: Vec<String>, out: MultiTaskOutput, ms: f64) -> impl IntoView {
    let n = out.predictions.len();
    let tasks: Vec<String> = out
        .predictions
        .first()
        .map(|r| r.iter().map(|tp| tp.task.clone()).collect())
        .unwrap_or_default();
    view! {
        <p class="hint">{format!("{n} texts · {} tasks · {ms:.0} ms in the engine ({:.1} ms per text) · {:.0} encoder passes per text",
            tasks.len(), ms / n.max(1) as f64, out.encoder_passes_per_text)}</p>
        <table class="live batch" data-testid="batch-results">
            <thead><tr><th>"text"</th>{tasks.into_iter().map(|t| view! { <th>{t}</th> }).collect_view()}</tr></thead>
            <tbody>
            {out.predictions.into_iter().zip(texts).map(|(row, text)| view! {
                <tr data-testid="batch-row">
                    <th scope="row" class="batch-text" title=text.clone()>{text.clone()}</th>
                    {row.iter().map(|tp| {
                        let (label, p) = tp.answer_label();
                        view! { <td><strong>{label.to_owned()}</strong>" "{percent(p)}</td> }
                    }).collect_view()}
                </tr>
            }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
pub fn LivePanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let text = RwSignal::new(String::new());
    let per_line = RwSignal::new(false);
    // The texts of the prediction on show (its answer carries only the predictions).
    let sent: StoredValue<Vec<String>, LocalStorage> = StoredValue::new_local(Vec::new());
    let timer: StoredValue<Option<TimeoutHandle>, LocalStorage> = StoredValue::new_local(None);
    let schedule = move || {
        if let Some(h) = timer.get_value() {
            h.clear();
        }
        let texts = texts_of(&text.get_untracked(), per_line.get_untracked());
        if texts.is_empty() {
            ui.live.set(None);
            return;
        }
        let h = set_timeout_with_handle(
            move || {
                let id = ui.predict_id.get_untracked() + 1;
                ui.predict_id.set(id);
                sent.set_value(texts.clone());
                send(Request::Predict {
                    id,
                    texts: texts.clone(),
                });
            },
            std::time::Duration::from_millis(DEBOUNCE_MS),
        )
        .ok();
        timer.set_value(h);
    };
    let on_input = move |ev: leptos::ev::Event| {
        text.set(event_target_value(&ev));
        schedule();
    };
    let on_per_line = move |ev: leptos::ev::Event| {
        per_line.set(event_target_checked(&ev));
        schedule();
    };
    let labels_of = move |task: &str| {
        ui.ws.with(|w| {
            w.tasks
                .iter()
                .find(|t| t.name == task)
                .map(|t| t.labels.clone())
                .unwrap_or_default()
        })
    };
    let task_names = move || {
        ui.ws.with(|w| {
            w.tasks
                .iter()
                .filter(|t| t.has_head)
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section id="live" class="panel">
            <h2>"Try it live"</h2>
            <label for="live-text">"Text to classify with every task"</label>
            <textarea id="live-text" rows="3" placeholder="Type a sentence…"
                prop:value=move || text.get() on:input=on_input></textarea>
            <label class="inline small">
                <input type="checkbox" id="live-per-line" prop:checked=move || per_line.get() on:change=on_per_line />
                {format!(" One text per line (up to {} lines, predicted together)", crate::limits::MAX_PREDICT_TEXTS)}
            </label>
            // A stable live region (one that is created with its text is often not read out).
            <p class="sr-only" role="status" aria-live="polite" data-testid="live-summary">
                {move || ui.live.with(|l| l.as_ref().map(|(out, _)| match out.predictions.len() {
                    1 => out.predictions[0].iter().map(|tp| tp.summary()).collect::<Vec<_>>().join(". "),
                    n => format!("{n} texts predicted, one row each in the table"),
                }))}
            </p>
            <div data-testid="live-results">
                {move || ui.live.get().map(|(out, ms)| {
                    if out.predictions.len() > 1 {
                        return batch_table(sent.get_value(), out, ms).into_any();
                    }
                    let row = out.predictions.into_iter().next().unwrap_or_default();
                    let names = task_names();
                    view! {
                        <p class="hint">{format!("{} tasks · {:.0} ms in the engine · {:.0} encoder passes per text",
                            row.len(), ms, out.encoder_passes_per_text)}</p>
                        <table class="live">
                            <thead><tr><th>"task"</th><th>"single-task LoRA"</th><th>"hybrid (fusion)"</th><th>"attention over adapters"</th></tr></thead>
                            <tbody>
                            {row.into_iter().map(|tp| {
                                let labels = labels_of(&tp.task);
                                let names = names.clone();
                                view! {
                                    <tr data-testid="prediction" data-task=tp.task.clone()>
                                        <th scope="row">{tp.task.clone()}
                                            {matches!(tp.answerer(), Answerer::Frozen | Answerer::Source).then(|| {
                                                let (label, p) = tp.answer_label();
                                                view! { <div class="answer-by"><strong>{label.to_string()}</strong>
                                                    {format!(" {} ({})", percent(p), tp.answerer().words())}
                                                    <span class="badge" data-testid="answer-badge">" answer"</span></div> }
                                            })}</th>
                                        <td class:answer=tp.answerer() == Answerer::Lora><strong>{tp.single.label.clone()}</strong>
                                            {(tp.answerer() == Answerer::Lora && tp.hybrid.is_some()).then(|| view! { <span class="badge" data-testid="answer-badge">" answer"</span> })}
                                            {bars(labels.clone(), tp.single.clone())}</td>
                                        <td class:answer=tp.uses_hybrid>{match tp.hybrid.clone() {
                                            Some(h) => view! { <strong>{h.label.clone()}</strong>
                                                {tp.uses_hybrid.then(|| view! { <span class="badge" data-testid="answer-badge">" answer"</span> })}
                                                {bars(labels.clone(), h)} }.into_any(),
                                            None => view! { <em>"train the fusion"</em> }.into_any(),
                                        }}</td>
                                        <td>{tp.attention.clone().map(|a| a.into_iter().enumerate().map(|(i, w)| {
                                            let pct = (w * 100.0).clamp(0.0, 100.0);
                                            let src = names.get(i).cloned().unwrap_or_else(|| format!("adapter {i}"));
                                            view! {
                                                <div class="bar-row">
                                                    <span class="bar-label">{src.clone()}</span>
                                                    <span class="bar attention" data-testid="attention-bar" role="meter"
                                                        aria-label=format!("attention on the {src} adapter")
                                                        aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{pct:.0}")>
                                                        <span class="fill" style=format!("width:{pct:.1}%")></span>
                                                    </span>
                                                    <span class="bar-value">{format!("{pct:.1} %")}</span>
                                                </div>
                                            }
                                        }).collect_view())}</td>
                                    </tr>
                                }
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                })}
            </div>
        </section>
    }
}
