//! The page's engine session, driven natively with the same messages the browser sends: tasks,
//! uploads (good and bad), stage 1 with cancellation, fusion, live prediction, evaluation, adapter
//! export in PEFT's format, and the workspace restored from the bundle the page saves.

mod common;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lorafuse::host::block_on;
use lorafuse::infer::{Answerer, MultiTaskOutput};
use lorafuse::train::Objective;
use lorafuse::worker::protocol::{DataRole, Event, Request, TaskReport, WorkspaceView};
use lorafuse::worker::session::{Host, Session};
use lorafuse::workspace::bundle::AnswerChoice;
use lorafuse::workspace::zipfile;

/// Training seeds burn's global RNG: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Records events; can raise the cancel flag after a number of pauses.
#[derive(Default)]
struct Recorder {
    events: RefCell<Vec<Event>>,
    pauses: Cell<usize>,
    cancel_after: Cell<Option<usize>>,
    cancel: RefCell<Option<Arc<AtomicBool>>>,
}

impl Host for Recorder {
    fn emit(&self, event: Event) {
        self.events.borrow_mut().push(event);
    }
    async fn pause(&self) {
        self.pauses.set(self.pauses.get() + 1);
        if let Some(n) = self.cancel_after.get()
            && self.pauses.get() >= n
            && let Some(c) = self.cancel.borrow().as_ref()
        {
            c.store(true, Ordering::Relaxed);
            self.cancel_after.set(None);
        }
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.borrow_mut())
    }
}

fn errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error { context, message } => Some(format!("{context}: {message}")),
            _ => None,
        })
        .collect()
}

fn last_view(events: &[Event]) -> WorkspaceView {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Workspace(v) => Some(v.clone()),
            _ => None,
        })
        .expect("a workspace view")
}

fn last_bundle(events: &[Event]) -> Option<Vec<u8>> {
    events.iter().rev().find_map(|e| match e {
        Event::Persist { bundle } => Some(bundle.clone()),
        _ => None,
    })
}

/// Runs a request and returns its events, failing on an error event.
fn ok(s: &mut Session, h: &Recorder, req: Request) -> Vec<Event> {
    block_on(s.handle(req, h));
    let ev = h.take();
    let errs = errors(&ev);
    assert!(errs.is_empty(), "unexpected errors: {errs:?}");
    ev
}

/// Runs a request that must fail; returns the error message.
/// The predictions of one text (request id `id`).
fn predict(s: &mut Session, h: &Recorder, id: u64, text: &str) -> MultiTaskOutput {
    let req = Request::Predict {
        id,
        texts: vec![text.into()],
    };
    predictions(&ok(s, h, req))
}

fn fails(s: &mut Session, h: &Recorder, req: Request) -> String {
    block_on(s.handle(req, h));
    let ev = h.take();
    let errs = errors(&ev);
    assert_eq!(errs.len(), 1, "expected one error, got {ev:?}");
    assert!(last_bundle(&ev).is_none(), "a failed request must not save");
    errs[0].clone()
}

/// The report a session's `Evaluate` answered with.
fn evaluate(s: &mut Session, h: &Recorder) -> Vec<TaskReport> {
    ok(s, h, Request::Evaluate)
        .into_iter()
        .find_map(|e| match e {
            Event::Report(r) => Some(r),
            _ => None,
        })
        .expect("a report")
}

/// A fused task's report scored on its gate's evidence: `rows` training rows cross-validated over
/// `folds` folds, every candidate scored on all of them.
fn assert_scored_on_the_gate_rows(r: &TaskReport, rows: usize, folds: usize) {
    assert_eq!(r.n, rows, "{}", r.source);
    let said = format!("cross-validated over {folds} folds");
    assert!(r.source.contains(&said), "{}", r.source);
    let methods: Vec<&str> = r.results.iter().map(|m| m.method.as_str()).collect();
    assert_eq!(methods, ["frozen", "lora", "source", "hybrid"]);
    for m in &r.results {
        assert_eq!(m.confusion.iter().flatten().sum::<usize>(), rows);
    }
}

fn upload(task: &str, file: &str) -> Request {
    Request::Upload {
        task: task.into(),
        role: DataRole::Train,
        file_name: file.into(),
        bytes: common::read(&common::fixture(&format!("data/{file}"))),
        text_column: String::new(),
        label_column: String::new(),
        delimiter: None,
        header: true,
    }
}

fn with_epochs(view: &WorkspaceView, task: &str, epochs: usize) -> Request {
    let mut settings = view
        .tasks
        .iter()
        .find(|t| t.name == task)
        .unwrap()
        .settings
        .clone();
    settings.train.epochs = epochs;
    // Exactly `epochs` epochs of classification (no step minimum, no contrastive stage): the
    // checkpoint and partial-adapter steps count whole epochs.
    settings.train.min_steps = 0;
    settings.train.objective = Objective::Classify;
    // The held-out share is a setting; 20 % keeps this test's counts (40 rows: 32 train, 8 held
    // out), also under the 200 rows below which a task holds none out by default.
    settings.holdout.fraction = 0.2;
    settings.holdout.train_all_below = 0;
    Request::Settings {
        task: task.into(),
        settings,
    }
}

#[test]
fn the_page_workflow_runs_end_to_end_on_the_session() {
    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let h = Recorder::default();
    let mut s = Session::new(common::engine());
    *h.cancel.borrow_mut() = Some(s.cancel_flag());

    // Tasks: names are checked.
    ok(
        &mut s,
        &h,
        Request::AddTask {
            name: "sentiment".into(),
        },
    );
    ok(
        &mut s,
        &h,
        Request::AddTask {
            name: " subjectivity ".into(),
        },
    );
    assert!(
        fails(
            &mut s,
            &h,
            Request::AddTask {
                name: "sentiment".into()
            }
        )
        .contains("already")
    );
    assert!(fails(&mut s, &h, Request::AddTask { name: "  ".into() }).contains("name"));

    // Uploads: good files, then a bad one that must not replace the good data.
    ok(&mut s, &h, upload("sentiment", "e2e_sentiment.csv"));
    let ev = ok(&mut s, &h, upload("subjectivity", "e2e_subjectivity.csv"));
    let v = last_view(&ev);
    assert_eq!(v.tasks[1].name, "subjectivity");
    assert_eq!(v.tasks[0].examples, 40);
    assert_eq!(v.tasks[0].class_counts.len(), 2);
    let msg = fails(
        &mut s,
        &h,
        Request::Upload {
            task: "sentiment".into(),
            role: DataRole::Train,
            file_name: "x.csv".into(),
            bytes: b"text,label\n\xc3\x28garbage,x\n".to_vec(),
            text_column: String::new(),
            label_column: String::new(),
            delimiter: None,
            header: true,
        },
    );
    assert!(msg.contains("UTF-8"), "{msg}");
    // Other column names: the error names them and the view lists them; picking them works.
    ok(
        &mut s,
        &h,
        Request::AddTask {
            name: "columns".into(),
        },
    );
    let csv = b"sentence,category\nfine work,positive\nbad work,negative\n".to_vec();
    let up = |t: &str, l: &str| Request::Upload {
        task: "columns".into(),
        role: DataRole::Train,
        file_name: "c.csv".into(),
        bytes: csv.clone(),
        text_column: t.into(),
        label_column: l.into(),
        delimiter: None,
        header: true,
    };
    block_on(s.handle(up("", ""), &h));
    let ev = h.take();
    assert!(errors(&ev)[0].contains("`sentence`"), "{:?}", errors(&ev));
    let v = last_view(&ev);
    let c = v.tasks.iter().find(|t| t.name == "columns").unwrap();
    assert_eq!(c.columns, ["sentence", "category"]);
    assert_eq!(c.examples, 0);
    let v = last_view(&ok(&mut s, &h, up("sentence", "category")));
    assert_eq!(
        v.tasks
            .iter()
            .find(|t| t.name == "columns")
            .unwrap()
            .examples,
        2
    );
    ok(
        &mut s,
        &h,
        Request::RemoveTask {
            task: "columns".into(),
        },
    );
    ok(
        &mut s,
        &h,
        Request::AddTask {
            name: "broken".into(),
        },
    );
    let ev = ok(&mut s, &h, upload("broken", "e2e_malformed.csv"));
    let v = last_view(&ev);
    assert_eq!(v.tasks[0].examples, 40, "the failed upload lost data");
    let broken = v.tasks.iter().find(|t| t.name == "broken").unwrap();
    assert!(broken.rejected.len() >= 3, "{:?}", broken.rejected);
    assert!(broken.rejected.iter().all(|r| r.line >= 2));
    ok(
        &mut s,
        &h,
        Request::RemoveTask {
            task: "broken".into(),
        },
    );

    // Nothing to predict or fuse yet: clear errors.
    assert!(
        fails(
            &mut s,
            &h,
            Request::Predict {
                id: 1,
                texts: vec!["hi".into()],
            }
        )
        .contains("no task")
    );
    let fuse = Request::TrainFusion {
        shared: false,
        gate_folds: 0,
    };
    assert!(fails(&mut s, &h, fuse).contains("no adapter"));
    // Bad settings are refused.
    let mut bad = v.tasks[0].settings.clone();
    bad.train.epochs = 0;
    assert!(
        fails(
            &mut s,
            &h,
            Request::Settings {
                task: "sentiment".into(),
                settings: bad
            }
        )
        .contains("epochs")
    );

    // Stage 1, with a cancellation first: what was trained is kept.
    let v = last_view(&ok(&mut s, &h, with_epochs(&v, "sentiment", 2)));
    let v = last_view(&ok(&mut s, &h, with_epochs(&v, "subjectivity", 2)));
    assert_eq!(v.tasks[0].settings.train.epochs, 2);
    h.pauses.set(0);
    h.cancel_after.set(Some(3));
    let ev = ok(
        &mut s,
        &h,
        Request::Train {
            task: "sentiment".into(),
        },
    );
    let steps = ev
        .iter()
        .filter(|e| matches!(e, Event::Progress(_)))
        .count();
    assert_eq!(steps, 2, "cancelled before the third step");
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::JobDone {
            cancelled: true,
            ..
        }
    )));
    assert!(
        last_view(&ev).tasks[0].has_head,
        "the cancelled run's adapter is kept"
    );

    for task in ["sentiment", "subjectivity"] {
        let ev = ok(&mut s, &h, Request::Train { task: task.into() });
        let total = ev
            .iter()
            .find_map(|e| match e {
                Event::Progress(p) => Some(p.total_steps),
                _ => None,
            })
            .unwrap();
        // 40 examples, 20 % held out -> 32, batch 16 -> 2 steps per epoch, 2 epochs.
        assert_eq!(total, 4);
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::JobDone {
                cancelled: false,
                ..
            }
        )));
        let v = last_view(&ev);
        let t = v.tasks.iter().find(|t| t.name == task).unwrap();
        assert!(t.has_head && t.has_adapter);
        assert_eq!(t.curve.len(), 2, "one point per epoch");
        assert!(t.curve.iter().all(|p| p.val_accuracy.is_some()));
        assert!(last_bundle(&ev).is_some(), "training saves the workspace");
        assert!(t.partial.is_none(), "{:?}", t.partial);
        // After the first epoch the workspace was saved with that epoch's adapter (a checkpoint):
        // a page reloaded then restores it, saying the run did not finish.
        let done = ev
            .iter()
            .position(|e| matches!(e, Event::JobDone { .. }))
            .unwrap();
        let checkpoint = ev[..done]
            .iter()
            .find_map(|e| match e {
                Event::Persist { bundle } => Some(bundle.clone()),
                _ => None,
            })
            .expect("a checkpoint saved during training");
        let hr = Recorder::default();
        let mut restored = Session::new(common::engine());
        let rv = last_view(&ok(
            &mut restored,
            &hr,
            Request::Init {
                backend: Default::default(),
                bundle: Some(checkpoint),
                model: Default::default(),
            },
        ));
        let rt = rv.tasks.iter().find(|t| t.name == task).unwrap();
        assert!(rt.has_head && rt.examples == 40);
        assert_eq!(rt.curve.len(), 1);
        let partial = rt.partial.as_deref().unwrap_or_default();
        assert!(partial.starts_with("Trained 1 of 2 epochs"), "{partial}");
    }

    // Fusion, each task's epoch and gate decided by 2-fold cross-validation over its 32
    // training rows (2 more adapters per task).
    let fuse = Request::TrainFusion {
        shared: false,
        gate_folds: 2,
    };
    let ev = ok(&mut s, &h, fuse);
    let v = last_view(&ev);
    assert!(v.fused);
    assert_eq!(v.fused_tasks, ["sentiment", "subjectivity"]);
    // Each trained adapter says where it started: the first had no other adapter to start from;
    // the second was checked against the first's.
    let start = |i: usize| v.tasks[i].start_note.clone().unwrap_or_default();
    assert_eq!(
        start(0),
        "Started from a fresh adapter: no other task's adapter to start from"
    );
    assert!(start(1).starts_with("Started from "), "{}", start(1));
    assert!(
        start(1).contains("cross-validated over 3 folds"),
        "{}",
        start(1)
    );
    for t in &v.tasks {
        let note = t.fusion_note.as_deref().unwrap_or_default();
        assert!(
            note.contains("on its 32 training examples, cross-validated over 2 folds"),
            "{note}"
        );
        // The relatedness check names the other task's adapter, its only source.
        let other = v.fused_tasks.iter().find(|n| **n != t.name).unwrap();
        assert!(
            note.contains(&format!("other task's adapter with a fresh head ({other})")),
            "{note}"
        );
    }

    // Live prediction: every task, hybrid and attention, K + 1 = 3 encoder passes.
    let ev = ok(
        &mut s,
        &h,
        Request::Predict {
            id: 7,
            texts: vec!["a wonderful, moving film".into()],
        },
    );
    let (id, out) = ev
        .iter()
        .find_map(|e| match e {
            Event::Predictions { id, output, .. } => Some((*id, output.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(id, 7);
    assert_eq!(out.encoder_passes_per_text, 3.0);
    let row = &out.predictions[0];
    assert_eq!(row.len(), 2);
    for tp in row {
        let a = tp.attention.as_ref().expect("attention");
        assert_eq!(a.len(), 2);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(tp.hybrid.is_some());
        // The answer is the model the task's view names, and its prediction is present.
        let view = v.tasks.iter().find(|t| t.name == tp.task).unwrap();
        assert_eq!(tp.answered_by, view.answered_by, "{}", tp.task);
        let by = tp.answerer();
        assert_eq!(Some(by), tp.answered_by);
        assert_eq!(
            tp.probe.is_some(),
            matches!(by, Answerer::Frozen | Answerer::Source)
        );
    }
    // Forcing each model: the answer follows, the card says so, and a fresh head answers with
    // its own prediction.
    let first = v.fused_tasks[0].clone();
    for (choice, want) in [
        (AnswerChoice::Frozen, Answerer::Frozen),
        (AnswerChoice::Source, Answerer::Source),
        (AnswerChoice::Lora, Answerer::Lora),
        (AnswerChoice::Hybrid, Answerer::Hybrid),
    ] {
        let mut settings = v
            .tasks
            .iter()
            .find(|t| t.name == first)
            .unwrap()
            .settings
            .clone();
        settings.answer = choice;
        let ev = ok(
            &mut s,
            &h,
            Request::Settings {
                task: first.clone(),
                settings,
            },
        );
        let tv = last_view(&ev)
            .tasks
            .into_iter()
            .find(|t| t.name == first)
            .unwrap();
        assert_eq!(tv.answered_by, Some(want));
        let note = tv.fusion_note.unwrap_or_default();
        assert!(
            note.starts_with(&format!("Set to always answer with the {}", want.words())),
            "{note}"
        );
        let out = predict(&mut s, &h, 9, "a wonderful, moving film");
        let tp = out.predictions[0].iter().find(|p| p.task == first).unwrap();
        assert_eq!(tp.answerer(), want);
        if matches!(want, Answerer::Frozen | Answerer::Source) {
            assert_eq!(tp.answer(), tp.probe.as_ref().unwrap());
        }
    }

    // Several texts in one request ("one text per line"): one row per text, in order, each the
    // same as that text predicted alone (batching and padding change nothing).
    let texts = [
        "the plot is thin and the acting is wooden",
        "a wonderful, moving film",
    ];
    let ev = ok(
        &mut s,
        &h,
        Request::Predict {
            id: 8,
            texts: texts.iter().map(|t| t.to_string()).collect(),
        },
    );
    let batch = predictions(&ev);
    assert_eq!(batch.predictions.len(), 2);
    for (tp, alone) in batch.predictions[1].iter().zip(row) {
        assert_eq!(tp.task, alone.task);
        for (a, b) in tp
            .single
            .probabilities
            .iter()
            .zip(&alone.single.probabilities)
        {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let (hb, ha) = (tp.hybrid.as_ref().unwrap(), alone.hybrid.as_ref().unwrap());
        for (a, b) in hb.probabilities.iter().zip(&ha.probabilities) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
    // Too many texts, or none: refused with the reason, nothing run.
    let many = vec!["a text".to_string(); lorafuse::limits::MAX_PREDICT_TEXTS + 1];
    assert!(fails(&mut s, &h, Request::Predict { id: 9, texts: many }).contains("limit of 256"));
    assert!(
        fails(
            &mut s,
            &h,
            Request::Predict {
                id: 9,
                texts: vec![]
            }
        )
        .contains("type some text")
    );

    // Evaluation: every candidate per task on the rows the gate checked: its 32 training rows,
    // each scored by the fold models that did not train on it.
    let report = evaluate(&mut s, &h);
    assert_eq!(report.len(), 2);
    for r in &report {
        assert_scored_on_the_gate_rows(r, 32, 2);
        for m in &r.results {
            let (lo, hi) = m.accuracy_interval;
            assert!(
                lo <= m.accuracy && m.accuracy <= hi && hi - lo > 0.05,
                "32 rows: a wide interval"
            );
            assert_eq!(m.per_class.iter().map(|c| c.support).sum::<usize>(), 32);
            assert!(m.temperature > 0.0);
            assert!((0.0..=1.0).contains(&m.raw.ece) && (0.0..=1.0).contains(&m.calibrated.ece));
        }
        // The hybrid against LoRA on the same rows in words, and the intervals called wide.
        assert!(
            r.findings[0].starts_with("hybrid ")
                && r.findings[0].contains("on the same 32 examples"),
            "{:?}",
            r.findings
        );
        assert!(
            r.findings[0].contains("exact McNemar test"),
            "{:?}",
            r.findings
        );
        assert!(
            r.findings
                .iter()
                .any(|f| f.contains("more labelled examples or a test file")),
            "{:?}",
            r.findings
        );
    }
    // The temperatures fitted on the held-out rows travel with the files and are used live.
    let trained: Vec<f64> = report.iter().map(|r| r.results[1].temperature).collect();
    assert!(trained.iter().all(|&t| t > 0.0 && t.is_finite()));

    // The adapter download is PEFT's format.
    let ev = ok(
        &mut s,
        &h,
        Request::ExportTask {
            task: "sentiment".into(),
        },
    );
    let zip = ev
        .iter()
        .find_map(|e| match e {
            Event::File { name, bytes } => Some((name.clone(), bytes.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(zip.0, "sentiment-adapter.zip");
    let files = zipfile::read(&zip.1).unwrap();
    let st = safetensors::SafeTensors::deserialize(&files["adapter_model.safetensors"]).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    assert_eq!(names.len(), 6 * 3 * 2);
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("base_model.model.encoder.layer.")
                && (n.ends_with(".lora_A.weight") || n.ends_with(".lora_B.weight")))
    );
    let cfg: serde_json::Value = serde_json::from_slice(&files["adapter_config.json"]).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");

    // A reload: a new session restores the saved bundle and predicts the same.
    let bundle = last_bundle(&h.take()).or_else(|| {
        block_on(s.handle(Request::ExportWorkspace, &h));
        h.take().into_iter().find_map(|e| match e {
            Event::File { bytes, .. } => Some(bytes),
            _ => None,
        })
    });
    let bundle = bundle.unwrap();
    let h2 = Recorder::default();
    let mut s2 = Session::new(common::engine());
    let ev = ok(
        &mut s2,
        &h2,
        Request::Init {
            backend: Default::default(),
            bundle: Some(bundle),
            model: Default::default(),
        },
    );
    let v2 = last_view(&ev);
    assert!(v2.fused);
    assert_eq!(v2.tasks.len(), 2);
    assert!(v2.tasks.iter().all(|t| t.has_head && t.examples == 40));
    assert!(
        v2.tasks.iter().all(|t| t.curve.len() == 2),
        "the curves come back"
    );
    let ev = ok(
        &mut s2,
        &h2,
        Request::Predict {
            id: 1,
            texts: vec!["a wonderful, moving film".into()],
        },
    );
    let out2 = predictions(&ev);
    // Same labels; probabilities equal up to float rounding (loaded weights may be laid out
    // differently in memory than trained ones, so the kernels sum in another order).
    for (a, b) in out.predictions[0].iter().zip(&out2.predictions[0]) {
        assert_eq!(a.task, b.task);
        assert_eq!(a.single.label, b.single.label);
        let pairs = [
            (&a.single.probabilities, &b.single.probabilities),
            (
                &a.hybrid.as_ref().unwrap().probabilities,
                &b.hybrid.as_ref().unwrap().probabilities,
            ),
            (a.attention.as_ref().unwrap(), b.attention.as_ref().unwrap()),
        ];
        for (x, y) in pairs {
            for (p, q) in x.iter().zip(y) {
                assert!(
                    (p - q).abs() < 1e-5,
                    "restored predictions differ: {x:?} vs {y:?}"
                );
            }
        }
    }

    // The shared option: one fusion for both tasks, a head per task; it survives a reload too.
    let fuse = Request::TrainFusion {
        shared: true,
        gate_folds: 0,
    };
    let ev = ok(&mut s2, &h2, fuse);
    let v = last_view(&ev);
    assert!(v.fused && v.fused_shared);
    assert_eq!(v.fused_tasks, ["sentiment", "subjectivity"]);
    let shared_bundle = last_bundle(&ev).expect("the shared fusion is saved");
    let out3 = predict(&mut s2, &h2, 2, "a wonderful, moving film");
    assert_eq!(out3.encoder_passes_per_text, 3.0);
    for tp in &out3.predictions[0] {
        let a = tp.attention.as_ref().expect("attention");
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        let h = tp.hybrid.as_ref().expect("hybrid");
        assert!((h.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // Shared weights: both tasks' attention over the adapters is the same for the same text.
    let (a0, a1) = (
        out3.predictions[0][0].attention.as_ref().unwrap(),
        out3.predictions[0][1].attention.as_ref().unwrap(),
    );
    assert_eq!(a0, a1);
    let h4 = Recorder::default();
    let mut s4 = Session::new(common::engine());
    let ev = ok(
        &mut s4,
        &h4,
        Request::Init {
            backend: Default::default(),
            bundle: Some(shared_bundle),
            model: Default::default(),
        },
    );
    assert!(
        last_view(&ev).fused_shared,
        "a reload keeps the shared fusion"
    );

    // Importing: the adapter zip becomes a task of an empty session; garbage changes nothing.
    let h3 = Recorder::default();
    let mut s3 = Session::new(common::engine());
    let ev = ok(
        &mut s3,
        &h3,
        Request::Import {
            file_name: zip.0.clone(),
            bytes: zip.1.clone(),
        },
    );
    let v3 = last_view(&ev);
    assert_eq!(v3.tasks.len(), 1);
    assert_eq!(v3.tasks[0].name, "sentiment");
    assert!(v3.tasks[0].has_head);
    let msg = fails(
        &mut s3,
        &h3,
        Request::Import {
            file_name: "x.zip".into(),
            bytes: b"PK nope".to_vec(),
        },
    );
    assert!(!msg.is_empty());
    let mut wrong = files.clone();
    wrong.remove("adapter_model.safetensors");
    wrong.insert("notes.txt".into(), b"hi".to_vec());
    let msg = fails(
        &mut s3,
        &h3,
        Request::Import {
            file_name: "w.zip".into(),
            bytes: zipfile::write(&wrong).unwrap(),
        },
    );
    assert!(msg.contains("neither"), "{msg}");
    // An adapter trained on another base model is refused, naming it.
    let mut other = files.clone();
    let mut meta: serde_json::Value = serde_json::from_slice(&other["lorafuse_task.json"]).unwrap();
    meta["base_model"] = "other-encoder".into();
    meta["base_model_sha256"] = "f".repeat(64).into();
    other.insert(
        "lorafuse_task.json".into(),
        serde_json::to_vec(&meta).unwrap(),
    );
    let msg = fails(
        &mut s3,
        &h3,
        Request::Import {
            file_name: "other.zip".into(),
            bytes: zipfile::write(&other).unwrap(),
        },
    );
    assert!(
        msg.contains("trained on the base model \"other-encoder\""),
        "{msg}"
    );
    block_on(s3.handle(Request::ExportWorkspace, &h3));
    assert!(h3.take().iter().any(|e| matches!(e, Event::File { .. })));
}

/// The check compares two different backends: a session on ndarray against the flex CPU engine
/// (in the browser: WebGPU against the CPU backend).
#[test]
#[cfg_attr(
    not(all(feature = "flex", feature = "ndarray")),
    ignore = "needs both the flex and ndarray backends compiled in"
)]
fn the_backend_check_compares_two_backends_and_trains_a_step() {
    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = Session::new(common::engine_on("ndarray"));
    let cpu = common::engine_on("flex");
    match block_on(s.backend_check(&cpu, "A short sentence.")).unwrap() {
        Event::BackendCheck {
            max_abs_diff,
            step_loss,
            ..
        } => {
            // Different kernels: close, but not bit-identical.
            assert!(max_abs_diff < 1e-5, "{max_abs_diff}");
            assert!(step_loss.is_finite() && step_loss > 0.0);
        }
        other => panic!("{other:?}"),
    }
}

/// The page and the CLI run the same experiment: for the same upload, settings and seed, the
/// session's report and `lorafuse train --compare-frozen` give identical metrics on identical
/// held-out rows (the shared split policy, stage 1 through the driver, the same probe).
#[test]
fn the_session_and_the_cli_give_identical_metrics() {
    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let file = common::fixture("data/e2e_sentiment.csv");
    let h = Recorder::default();
    let mut s = Session::new(common::engine());
    ok(&mut s, &h, Request::AddTask { name: "t".into() });
    let v = last_view(&ok(&mut s, &h, upload("t", "e2e_sentiment.csv")));
    let mut settings = v.tasks[0].settings.clone();
    settings.train.epochs = 2;
    settings.holdout.fraction = 0.25;
    settings.holdout.train_all_below = 0;
    ok(
        &mut s,
        &h,
        Request::Settings {
            task: "t".into(),
            settings,
        },
    );
    ok(&mut s, &h, Request::Train { task: "t".into() });
    let report = evaluate(&mut s, &h);
    let page = &report[0];
    assert_eq!(page.n, 10, "25 % of 40 rows held out");

    let out = std::env::temp_dir().join(format!("lorafuse-agree-{}", std::process::id()));
    let (ok_cli, stdout, stderr) = common::lorafuse(&[
        "train",
        "--task",
        "t",
        "--data",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--holdout",
        "0.25",
        "--train-all-below",
        "0",
        "--seed",
        "1",
        "--compare-frozen",
    ]);
    assert!(ok_cli, "{stderr}");
    let cli: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for m in &page.results {
        if m.method == "hybrid" {
            continue;
        }
        let c = &cli[&m.method];
        assert_eq!(c["n"].as_u64(), Some(page.n as u64), "{}", m.method);
        assert_eq!(
            c["accuracy"].as_f64(),
            Some(m.accuracy),
            "{} accuracy",
            m.method
        );
        assert_eq!(
            c["macro_f1"].as_f64(),
            Some(m.macro_f1),
            "{} macro-F1",
            m.method
        );
    }
    let lora = page.results.iter().find(|m| m.method == "lora").unwrap();
    let cm: Vec<Vec<usize>> = serde_json::from_value(cli["confusion_matrix"].clone()).unwrap();
    assert_eq!(cm, lora.confusion, "same predictions on the same rows");
    let _ = std::fs::remove_dir_all(&out);
}

/// A task of 150 classes (the size of public intent data sets) trains, predicts and reports.
/// A task under 200 examples holds none out (docs/design.md §4): it trains on every example,
/// the fusion always cross-validates it, and the report scores every candidate of its answer on
/// those examples out of fold, with the numbers the gate chose on.
#[test]
fn a_small_task_trains_on_every_row_and_is_reported_out_of_fold() {
    let h = Recorder::default();
    let mut s = Session::new(common::engine());
    for (task, file) in [("a", "e2e_sentiment.csv"), ("b", "e2e_subjectivity.csv")] {
        ok(&mut s, &h, Request::AddTask { name: task.into() });
        let v = last_view(&ok(&mut s, &h, upload(task, file)));
        let Request::Settings { mut settings, .. } = with_epochs(&v, task, 1) else {
            unreachable!()
        };
        settings.holdout = Default::default();
        let req = Request::Settings {
            task: task.into(),
            settings,
        };
        ok(&mut s, &h, req);
        let ev = ok(&mut s, &h, Request::Train { task: task.into() });
        let total = ev.iter().find_map(|e| match e {
            Event::Progress(p) => Some(p.total_steps),
            _ => None,
        });
        assert_eq!(total, Some(3), "all 40 rows train: 3 steps of 16");
    }
    // No cross-validation asked for: a task with no held-out rows gets it anyway.
    let req = Request::TrainFusion {
        shared: false,
        gate_folds: 0,
    };
    let v = last_view(&ok(&mut s, &h, req));
    let report = evaluate(&mut s, &h);
    assert_eq!(report.len(), 2);
    for r in &report {
        assert_scored_on_the_gate_rows(r, 40, 3);
        // The report's numbers are the ones the task's card gives for the gate.
        let note = v.tasks.iter().find(|t| t.name == r.task).unwrap();
        let note = note.fusion_note.as_deref().unwrap();
        assert!(
            note.contains("its 40 training examples, cross-validated over 3 folds"),
            "{note}"
        );
        for (m, words) in [("lora", "its own LoRA"), ("hybrid", "the hybrid")] {
            let a = r.results.iter().find(|x| x.method == m).unwrap().accuracy;
            let said = format!("{words} {:.1} %", 100.0 * a);
            assert!(note.contains(&said), "{said:?} not in {note}");
        }
    }
}

#[test]
fn a_150_class_task_trains_predicts_and_reports() {
    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let h = Recorder::default();
    let mut s = Session::new(common::engine());
    ok(
        &mut s,
        &h,
        Request::AddTask {
            name: "intents".into(),
        },
    );
    let topics = [
        "the weather",
        "my bank balance",
        "a taxi",
        "the next train",
        "a pizza",
        "my alarm",
        "the lights",
        "a song",
        "the news",
        "my calendar",
        "a recipe",
        "the score",
        "a hotel",
        "my flight",
        "the thermostat",
    ];
    let verbs = [
        "check",
        "book",
        "cancel",
        "change",
        "explain",
        "find",
        "remind me about",
        "report a problem with",
        "rate",
        "share",
    ];
    let mut csv = String::from("text,label\n");
    for (v, verb) in verbs.iter().enumerate() {
        for (t, topic) in topics.iter().enumerate() {
            for phrasing in [
                "please {} {}",
                "can you {} {} for me",
                "I want to {} {} now",
            ] {
                let text = phrasing.replacen("{}", verb, 1).replacen("{}", topic, 1);
                csv.push_str(&format!("{text},intent_{v:02}_{t:02}\n"));
            }
        }
    }
    ok(&mut s, &h, upload_bytes("intents", csv.into_bytes()));
    let view = s.view();
    assert_eq!(view.tasks[0].class_counts.len(), 150);
    let mut settings = view.tasks[0].settings.clone();
    settings.train.epochs = 1;
    // One epoch of classification: 150 classes of 2 training rows each would otherwise train
    // the contrastive objective on 4,000 pairs; this test is about the width of the output.
    settings.train.min_steps = 0;
    settings.train.objective = Objective::Classify;
    settings.holdout.fraction = 1.0 / 3.0;
    settings.holdout.train_all_below = 0;
    ok(
        &mut s,
        &h,
        Request::Settings {
            task: "intents".into(),
            settings,
        },
    );
    let ev = ok(
        &mut s,
        &h,
        Request::Train {
            task: "intents".into(),
        },
    );
    let t = &last_view(&ev).tasks[0];
    assert!(
        t.has_head && t.labels.len() == 150,
        "{} labels",
        t.labels.len()
    );
    let ev = ok(
        &mut s,
        &h,
        Request::Predict {
            id: 1,
            texts: vec!["please book a taxi".into()],
        },
    );
    let out = predictions(&ev);
    let p = &out.predictions[0][0].single;
    assert_eq!(p.probabilities.len(), 150);
    assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    let report = evaluate(&mut s, &h);
    let r = &report[0];
    assert_eq!(r.labels.len(), 150);
    for m in &r.results {
        assert_eq!(m.confusion.len(), 150);
        assert!(m.confusion.iter().all(|row| row.len() == 150));
        assert_eq!(m.per_class.len(), 150);
        assert_eq!(
            m.confusion.iter().flatten().sum::<usize>(),
            r.n,
            "every held-out example is counted once"
        );
    }
    println!(
        "150 classes: {} held-out examples, accuracy {}",
        r.n,
        r.results
            .iter()
            .map(|m| format!("{} {:.1} %", m.method, 100.0 * m.accuracy))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The first multi-task prediction among `events`.
fn predictions(events: &[Event]) -> MultiTaskOutput {
    events
        .iter()
        .find_map(|e| match e {
            Event::Predictions { output, .. } => Some(output.clone()),
            _ => None,
        })
        .expect("predictions")
}

fn upload_bytes(task: &str, bytes: Vec<u8>) -> Request {
    Request::Upload {
        task: task.into(),
        role: DataRole::Train,
        file_name: "data.csv".into(),
        bytes,
        text_column: String::new(),
        label_column: String::new(),
        delimiter: None,
        header: true,
    }
}
