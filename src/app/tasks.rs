//! The tasks: create one, upload its examples (file picker or drop), choose columns, see counts,
//! a preview and rejected rows, edit settings, train with progress, loss curve and validation
//! accuracy, cancel, download the adapter.
//!
//! `TaskCard` is long (~280 lines) because it is one Leptos view tree: the card's markup reads top
//! to bottom in the order the user sees it; its handlers are the closures above the tree.

use leptos::prelude::*;
use web_sys::{DragEvent, File, HtmlInputElement};

use super::{Ui, files, send};
use crate::chart;
use crate::train::Objective;
use crate::worker::protocol::{DataRole, Job, JobProgress, Request};
use crate::workspace::bundle::{AnswerChoice, StartFrom, TaskSettings};

/// An example data file in the shared datasets' format, offered as a download.
const EXAMPLE_CSV: &str = include_str!("example_sentiment.csv");

/// LoRA targets offered (PEFT's `target_modules` names; a name matches every linear whose path
/// ends with it, so `output.dense` also matches `attention.output.dense`).
const TARGETS: [&str; 6] = [
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

fn fmt_eta(sec: f64) -> String {
    if !sec.is_finite() {
        return "…".into();
    }
    let s = sec.round() as u64;
    if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A progress bar with step, loss, speed and ETA.
#[component]
pub fn ProgressLine(job: JobProgress) -> impl IntoView {
    let what = match &job.job {
        Job::Task(_) => "Training".to_string(),
        Job::Fusion(t) => format!("Fusion for {t}"),
    };
    view! {
        <div class="progress-line">
            <progress data-testid="progress" aria-label="Training progress"
                max=job.total_steps value=job.step></progress>
            <span>{format!(
                "{what}: step {} / {} · epoch {} · loss {:.4} · {:.1} examples/s · ETA {}",
                job.step, job.total_steps, job.epoch + 1, job.loss, job.examples_per_sec,
                fmt_eta(job.eta_sec)
            )}</span>
        </div>
    }
}

#[component]
pub fn TasksPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let name = RwSignal::new(String::new());
    let add = move || {
        let n = name.get_untracked();
        if n.trim().is_empty() {
            ui.say(true, "Give the task a name first.".into());
            return;
        }
        send(Request::AddTask { name: n });
        name.set(String::new());
    };
    let example = move |_| {
        if let Err(e) = files::download("example-sentiment.csv", EXAMPLE_CSV.as_bytes(), "text/csv")
        {
            ui.say(true, e);
        }
    };
    let names = move || {
        ui.ws
            .with(|w| w.tasks.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
    };
    view! {
        <section id="tasks" class="panel">
            <h2>"Tasks"</h2>
            <p class="hint">"One task per labelled data set (CSV, TSV or JSONL with a text and a label column). Each task gets its own LoRA adapter and classifier head (stage 1). "
                <button class="link" on:click=example>"Download an example file"</button>
                " to try it in a minute."</p>
            <form class="new-task" on:submit=move |ev| { ev.prevent_default(); add(); }>
                <label for="new-task-name">"New task name"</label>
                <input id="new-task-name" type="text" maxlength="64" placeholder="e.g. sentiment"
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))/>
                <button id="add-task" type="submit" disabled=move || !ui.idle()>"Add task"</button>
            </form>
            <For each=names key=|n| n.clone() let:n>
                <TaskCard name=n/>
            </For>
        </section>
    }
}

#[component]
fn TaskCard(name: String) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let key = name.clone();
    let task = Memo::new(move |_| {
        ui.ws
            .with(|w| w.tasks.iter().find(|t| t.name == key).cloned())
    });
    let get = move || task.get().unwrap_or_default();
    let text_col = RwSignal::new("text".to_string());
    let label_col = RwSignal::new("label".to_string());
    // How to read a delimited file: "auto" or the delimiter; whether the first row is data.
    let delimiter = RwSignal::new("auto".to_string());
    let no_header = RwSignal::new(false);
    // The last picked file, kept so a change of columns can re-read it.
    let last_file: StoredValue<Option<(String, Vec<u8>, DataRole)>, LocalStorage> =
        StoredValue::new_local(None);
    let dragging = RwSignal::new(false);

    let n = name.clone();
    let upload_bytes = move |file_name: String, bytes: Vec<u8>, role: DataRole| {
        last_file.set_value(Some((file_name.clone(), bytes.clone(), role)));
        send(Request::Upload {
            task: n.clone(),
            role,
            file_name,
            bytes,
            text_column: text_col.get_untracked(),
            label_column: label_col.get_untracked(),
            delimiter: match delimiter.get_untracked().as_str() {
                "tab" => Some('\t'),
                d => d.chars().next().filter(|_| d.chars().count() == 1),
            },
            header: !no_header.get_untracked(),
        });
    };
    let upload_file = {
        let upload_bytes = upload_bytes.clone();
        move |file: File, role: DataRole| {
            let limit = crate::data::ParseOptions::default().max_bytes as f64;
            if file.size() > limit {
                ui.say(
                    true,
                    format!(
                        "{} is {:.0} MB; uploads are limited to {:.0} MB",
                        file.name(),
                        file.size() / 1e6,
                        limit / 1e6
                    ),
                );
                return;
            }
            let upload_bytes = upload_bytes.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match files::read(&file).await {
                    Ok(b) => upload_bytes(file.name(), b, role),
                    Err(e) => ui.say(true, e),
                }
            });
        }
    };
    let on_pick = {
        let upload_file = upload_file.clone();
        move |role: DataRole| {
            let upload_file = upload_file.clone();
            move |ev: leptos::ev::Event| {
                let input: HtmlInputElement = event_target(&ev);
                if let Some(f) = input.files().and_then(|f| f.get(0)) {
                    upload_file(f, role);
                }
                input.set_value("");
            }
        }
    };
    let on_drop = {
        let upload_file = upload_file.clone();
        move |ev: DragEvent| {
            ev.prevent_default();
            dragging.set(false);
            if let Some(f) = ev
                .data_transfer()
                .and_then(|d| d.files())
                .and_then(|f| f.get(0))
            {
                upload_file(f, DataRole::Train);
            }
        }
    };
    let reupload = {
        let upload_bytes = upload_bytes.clone();
        move || {
            if let Some((f, b, r)) = last_file.get_value() {
                upload_bytes(f, b, r);
            }
        }
    };

    let n = name.clone();
    let set = move |f: &dyn Fn(&mut TaskSettings) -> Result<(), String>| {
        let Some(t) = task.get_untracked() else {
            return;
        };
        let mut s = t.settings.clone();
        match f(&mut s) {
            Ok(()) => send(Request::Settings {
                task: n.clone(),
                settings: s,
            }),
            Err(e) => ui.say(true, e),
        }
    };
    let set_t = set.clone();
    let set_a = set.clone();
    let set_o = set.clone();
    let set_s = set.clone();
    // The other tasks a task may start from.
    let me = name.clone();
    let others = move || {
        ui.ws.with(|w| {
            w.tasks
                .iter()
                .filter(|t| t.name != me && t.has_adapter)
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        })
    };
    let num = move |label: &'static str,
                    field: &'static str,
                    value: Box<dyn Fn(&TaskSettings) -> String + Send + Sync>,
                    apply: fn(&mut TaskSettings, &str) -> Result<(), String>| {
        let set = set.clone();
        let value = std::sync::Arc::new(value);
        view! {
            <label>{label}
                <input type="text" inputmode="decimal" name=field
                    prop:value={ let value = value.clone(); move || value(&get().settings) }
                    on:change=move |ev| { let v = event_target_value(&ev); set(&|s| apply(s, v.trim())) }/>
            </label>
        }
    };
    let my_job = {
        let name = name.clone();
        move || ui.job.get().filter(|j| j.job == Job::Task(name.clone()))
    };
    let running = {
        let my_job = my_job.clone();
        move || my_job().is_some()
    };
    let n_train = name.clone();
    let n_dl = name.clone();
    let n_rm = name.clone();
    let n_chart = name.clone();
    // This card's step losses alone: a step of another task's run does not redraw this chart.
    let steps = Memo::new(move |_| {
        ui.losses
            .with(|l| l.get(&n_chart).cloned().unwrap_or_default())
    });
    let reupload2 = reupload.clone();
    let reupload3 = reupload.clone();
    let reupload4 = reupload.clone();
    let n_reading = name.clone();

    view! {
        <section class="task" data-task=name.clone()
            data-trained=move || get().has_head.to_string()
            aria-label=format!("Task {name}")>
            <header class="task-head">
                <h3>{name.clone()}</h3>
                <span class="badge">{move || {
                    let t = get();
                    if t.has_head { "trained".to_string() }
                    else if t.has_adapter { "adapter without head".into() }
                    else { "not trained".into() }
                }}</span>
                <button class="remove" aria-label=format!("Delete task {name}")
                    disabled=move || !ui.idle()
                    on:click=move |_| send(Request::RemoveTask { task: n_rm.clone() })>"Delete"</button>
            </header>
            <div class="grid">
                <div class="data">
                    <h4>"Data"</h4>
                    <div class=move || if dragging.get() { "drop dragging" } else { "drop" }
                        on:dragover=move |ev: DragEvent| { ev.prevent_default(); dragging.set(true); }
                        on:dragleave=move |_| dragging.set(false)
                        on:drop=on_drop>
                        <label>"Training examples (drop a file here or pick one) "
                            <input type="file" data-testid="train-file" accept=".csv,.tsv,.jsonl,.json,.txt"
                                on:change=on_pick(DataRole::Train)/>
                        </label>
                    </div>
                    <label class="small">{move || {
                        let t = get();
                        let h = t.settings.holdout;
                        match h.fraction_for(t.examples) == 0.0 && h.fraction > 0.0 {
                            true => format!("Test examples (optional; under {} examples none are held out: every one trains, and the checks are cross-validated) ", h.train_all_below),
                            false => format!("Test examples (optional; otherwise {} % are held out) ", (h.fraction * 1000.0).round() / 10.0),
                        }
                    }}
                        <input type="file" data-testid="test-file" accept=".csv,.tsv,.jsonl,.json,.txt"
                            on:change=on_pick(DataRole::Test)/>
                    </label>
                    <div class="columns">
                        <label>"Text column "
                            <select aria-label="Text column"
                                on:change=move |ev| { text_col.set(event_target_value(&ev)); reupload(); }>
                                {move || column_options(get().columns, text_col.get())}
                            </select>
                        </label>
                        <label>"Label column "
                            <select aria-label="Label column"
                                on:change=move |ev| { label_col.set(event_target_value(&ev)); reupload2(); }>
                                {move || column_options(get().columns, label_col.get())}
                            </select>
                        </label>
                        <label>"Delimiter "
                            <select aria-label="Delimiter" data-testid="delimiter"
                                on:change=move |ev| { delimiter.set(event_target_value(&ev)); reupload3(); }>
                                <option value="auto" selected=true>"detect"</option>
                                <option value=",">"comma ,"</option>
                                <option value=";">"semicolon ;"</option>
                                <option value="tab">"tab"</option>
                                <option value="|">"pipe |"</option>
                            </select>
                        </label>
                        <label class="small">
                            <input type="checkbox" data-testid="no-header"
                                prop:checked=move || no_header.get()
                                on:change=move |ev| { no_header.set(event_target_checked(&ev)); reupload4(); }/>
                            " First row is data (no header)"
                        </label>
                    </div>
                    {move || ui.reading.get().filter(|(t, _, _)| *t == n_reading).map(|(_, f, x)| view! {
                        <p class="small" data-testid="reading" role="status">
                            {format!("Reading {f}: {:.0} % ", 100.0 * x)}
                            <progress max="1" value=x></progress>
                        </p>
                    })}
                    {move || get().read_as.map(|r| view! {
                        <p class="small" data-testid="read-as">{format!("Read as {r}")}</p>
                    })}
                    <p>{move || {
                        let t = get();
                        let file = t.file_name.clone().map(|f| format!(" from {f}")).unwrap_or_default();
                        format!("{} training examples{file}; {} test examples", t.examples, t.test_examples)
                    }}</p>
                    <ul data-testid="class-counts" class="counts">
                        {move || get().class_counts.into_iter().map(|(l, c)| view! {
                            <li><span class="label">{l}</span>" "<span class="count">{c}</span></li>
                        }).collect_view()}
                    </ul>
                    <table data-testid="preview" class="preview">
                        <thead><tr><th>"text"</th><th>"label"</th></tr></thead>
                        <tbody>{move || get().preview.into_iter().map(|(t, l)| view! {
                            <tr><td>{t}</td><td>{l}</td></tr>
                        }).collect_view()}</tbody>
                    </table>
                    <Show when=move || !get().rejected.is_empty()>
                        <details open>
                            <summary>{move || {
                                let n = get().rejected.len();
                                if n > 200 { format!("{n} rejected rows (the first 200 shown)") }
                                else { format!("{n} rejected rows") }
                            }}</summary>
                            <ul data-testid="rejected" class="rejected">
                                {move || get().rejected.into_iter().take(200).map(|r| view! {
                                    <li>{format!("line {}: {}", r.line, r.reason)}</li>
                                }).collect_view()}
                            </ul>
                        </details>
                    </Show>
                </div>
                <div class="settings">
                    <h4>"Settings"</h4>
                    {num("Rank r", "r", Box::new(|s| s.lora.r.to_string()),
                        |s, v| { s.lora.r = v.parse().map_err(|_| format!("r must be a whole number, not {v:?}"))?; s.lora.validate().map_err(|e| e.to_string()) })}
                    {num("Alpha", "alpha", Box::new(|s| s.lora.alpha.to_string()),
                        |s, v| { s.lora.alpha = v.parse().map_err(|_| format!("alpha must be a number, not {v:?}"))?; s.lora.validate().map_err(|e| e.to_string()) })}
                    {num("Epochs", "epochs", Box::new(|s| s.train.epochs.to_string()),
                        |s, v| { s.train.epochs = v.parse().map_err(|_| format!("epochs must be a whole number, not {v:?}"))?; s.train.validate().map_err(|e| e.to_string()) })}
                    {num("Adapter learning rate", "lr", Box::new(|s| s.train.lr.to_string()),
                        |s, v| { s.train.lr = v.parse().map_err(|_| format!("the learning rate must be a number, not {v:?}"))?; s.train.validate().map_err(|e| e.to_string()) })}
                    {num("Head learning rate", "head_lr", Box::new(|s| s.train.head_lr.to_string()),
                        |s, v| { s.train.head_lr = v.parse().map_err(|_| format!("the learning rate must be a number, not {v:?}"))?; s.train.validate().map_err(|e| e.to_string()) })}
                    {num("Held out (%)", "holdout", Box::new(|s| format!("{}", (s.holdout.fraction * 1000.0).round() / 10.0)),
                        |s, v| { let p: f64 = v.trim_end_matches('%').trim().parse().map_err(|_| format!("the held-out share must be a number of percent, not {v:?}"))?; s.holdout.fraction = p / 100.0; s.holdout.validate().map_err(|e| e.to_string()) })}
                    {num("Batch size", "batch", Box::new(|s| s.train.batch_size.to_string()),
                        |s, v| { s.train.batch_size = v.parse().map_err(|_| format!("the batch size must be a whole number, not {v:?}"))?; s.train.validate().map_err(|e| e.to_string()) })}
                    {num("Fewest steps", "min_steps", Box::new(|s| s.train.min_steps.to_string()),
                        |s, v| { s.train.min_steps = v.parse().map_err(|_| format!("the fewest steps must be a whole number, not {v:?}"))?; s.train.validate().map_err(|e| e.to_string()) })}
                    <label>"Objective"
                        <select name="objective" title="What the adapter learns: automatic picks contrastive pairs (SetFit's objective) for few examples per class, classification otherwise"
                            on:change=move |ev| {
                                let v = event_target_value(&ev);
                                set_o(&|s| {
                                    s.train.objective = match v.as_str() {
                                        "classify" => Objective::Classify,
                                        "contrastive" => Objective::Contrastive,
                                        _ => Objective::Auto,
                                    };
                                    Ok(())
                                })
                            }>
                            {[(Objective::Auto, "auto", "automatic"), (Objective::Classify, "classify", "classification"),
                              (Objective::Contrastive, "contrastive", "contrastive pairs")].into_iter().map(|(o, value, text)| view! {
                                <option value=value selected=move || get().settings.train.objective == o>{text}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <label>"Start from"
                        <select name="start" title="Where the adapter starts: automatic starts from another task's adapter where, on this task's examples, it reads them clearly better than the base model; otherwise from a fresh adapter"
                            on:change=move |ev| {
                                let v = event_target_value(&ev);
                                set_s(&|s| {
                                    s.start = match v.as_str() {
                                        "automatic" => StartFrom::Automatic,
                                        "fresh" => StartFrom::Fresh,
                                        task => StartFrom::Task(task.trim_start_matches("task:").to_string()),
                                    };
                                    Ok(())
                                })
                            }>
                            <option value="automatic" selected=move || get().settings.start == StartFrom::Automatic>"automatic"</option>
                            <option value="fresh" selected=move || get().settings.start == StartFrom::Fresh>"a fresh adapter"</option>
                            {move || {
                                // The named task stays listed while it is the setting, trained or not.
                                let mut names = others();
                                if let StartFrom::Task(t) = get().settings.start
                                    && !names.contains(&t)
                                {
                                    names.push(t);
                                }
                                names.into_iter().map(|t| {
                                    let chosen = StartFrom::Task(t.clone());
                                    view! {
                                        <option value=format!("task:{t}") selected=move || get().settings.start == chosen>
                                            {format!("{t}'s adapter")}</option>
                                    }
                                }).collect_view()
                            }}
                        </select>
                    </label>
                    <fieldset class="targets">
                        <legend>"LoRA targets"</legend>
                        {TARGETS.into_iter().map(|target| {
                            let set_t = set_t.clone();
                            view! {
                                <label><input type="checkbox" name=format!("target-{target}")
                                    prop:checked=move || get().settings.lora.target_modules.iter().any(|m| m == target)
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        set_t(&|s| {
                                            s.lora.target_modules.retain(|m| m != target);
                                            if on { s.lora.target_modules.push(target.to_string()); }
                                            if s.lora.target_modules.is_empty() {
                                                return Err("keep at least one LoRA target".into());
                                            }
                                            Ok(())
                                        })
                                    }/>" "{target}</label>
                            }
                        }).collect_view()}
                    </fieldset>
                </div>
                <div class="training">
                    <h4>"Training"</h4>
                    <button data-testid="train" disabled=move || !ui.idle() || get().examples == 0
                        on:click=move |_| send(Request::Train { task: n_train.clone() })>
                        {move || if get().has_adapter { "Train again" } else { "Train adapter" }}</button>
                    <Show when=running.clone()>
                        <button data-testid="cancel" on:click=move |_| send(Request::Cancel)>"Cancel"</button>
                    </Show>
                    <button data-testid="download-adapter" disabled=move || !get().has_adapter || !ui.idle()
                        on:click=move |_| send(Request::ExportTask { task: n_dl.clone() })>"Download adapter"</button>
                    {move || my_job().map(|j| view! { <ProgressLine job=j/> })}
                    {move || get().partial.map(|p| view! {
                        <p class="small partial" data-testid="partial" role="status">{p}</p>
                    })}
                    {move || get().start_note.map(|s| view! {
                        <p class="small" data-testid="start-note">{s}</p>
                    })}
                    <div class="chart" data-testid="loss-chart"
                        inner_html=move || {
                            let steps = steps.get();
                            if steps.is_empty() {
                                // After a reload only the per-epoch history is known.
                                let epochs: Vec<(usize, f32)> =
                                    get().curve.iter().map(|p| (p.epoch, p.loss)).collect();
                                chart::loss_svg(&epochs, "mean training loss per epoch")
                            } else {
                                chart::loss_svg(&steps, "training loss per step")
                            }
                        }></div>
                    <table data-testid="epochs" class="epochs">
                        <thead><tr><th>"epoch"</th><th>"mean loss"</th><th>"held-out accuracy"</th></tr></thead>
                        <tbody>{move || get().curve.into_iter().map(|p| view! {
                            <tr><td>{p.epoch}</td><td>{format!("{:.4}", p.loss)}</td>
                                <td>{p.val_accuracy.map(|a| format!("{:.1} %", a * 100.0)).unwrap_or_else(|| "–".into())}</td></tr>
                        }).collect_view()}</tbody>
                    </table>
                    <Show when=move || get().fusion_note.is_some()>
                        <div class="answer" data-testid="answer">
                            <label>"Live answer "
                                <select name="answer" on:change={
                                    let set_a = set_a.clone();
                                    move |ev| {
                                        let v = event_target_value(&ev);
                                        set_a(&|s| {
                                            s.answer = AnswerChoice::from_key(&v);
                                            Ok(())
                                        })
                                    }
                                }>
                                    {AnswerChoice::ALL.into_iter().map(|c| view! {
                                        <option value=c.key() selected=move || get().settings.answer == c>
                                            {match c {
                                                AnswerChoice::Automatic => "automatic (best on unseen rows)",
                                                AnswerChoice::Lora => "this task's LoRA",
                                                AnswerChoice::Hybrid => "the hybrid",
                                                AnswerChoice::Frozen => "frozen model, fresh head",
                                                AnswerChoice::Source => "other task's adapter, fresh head",
                                            }}</option>
                                    }).collect_view()}
                                </select>
                            </label>
                            <p data-testid="fusion-note">{move || get().fusion_note.unwrap_or_default()}</p>
                        </div>
                    </Show>
                </div>
            </div>
        </section>
    }
}

fn column_options(columns: Vec<String>, chosen: String) -> impl IntoView {
    let mut cols = columns;
    if !cols.iter().any(|c| *c == chosen) {
        cols.insert(0, chosen.clone());
    }
    cols.into_iter()
        .map(|c| {
            let selected = c == chosen;
            view! { <option value=c.clone() selected=selected>{c.clone()}</option> }
        })
        .collect_view()
}
