//! The session's tasks: names, uploads (parsed, with rejected rows kept for the view) and the view
//! the UI renders.

use super::{Host, Session, Task};
use crate::data::{self, LabelVocab, ParseOptions};
use crate::error::{Error, Result};
use crate::experiment::Labelled;
use crate::infer::Answerer;
use crate::worker::protocol::{DataRole, Event, TaskView, WorkspaceView};
use crate::workspace::bundle::{AnswerChoice, TaskState};
use crate::workspace::task_files;

/// Rows shown in a task's preview.
pub const PREVIEW_ROWS: usize = 5;
pub use crate::limits::{MAX_TASK_NAME, MAX_TASKS};

impl Session {
    pub(super) fn index(&self, task: &str) -> Result<usize> {
        self.tasks
            .iter()
            .position(|t| t.state.name == task)
            .ok_or_else(|| Error::Invalid(format!("no task named {task:?}")))
    }

    pub(super) fn check_new_name(&self, name: &str) -> Result<String> {
        let name = name.trim();
        let bad = |m: String| Err(Error::Invalid(m));
        if name.is_empty() {
            return bad("a task needs a name".into());
        }
        if name.chars().count() > MAX_TASK_NAME {
            return bad(format!("task names are at most {MAX_TASK_NAME} characters"));
        }
        if name.chars().any(char::is_control) {
            return bad("task names cannot contain control characters".into());
        }
        if self.tasks.iter().any(|t| t.state.name == name) {
            return bad(format!("there is already a task named {name:?}"));
        }
        if self.tasks.len() >= MAX_TASKS {
            return bad(format!("a workspace holds at most {MAX_TASKS} tasks"));
        }
        Ok(name.to_string())
    }

    /// Parses an upload into task `task`'s training or test rows. A file that cannot be used
    /// leaves the task's data as it was (its columns are shown so the user can pick others).
    pub(super) fn upload<H: Host>(
        &mut self,
        task: &str,
        role: DataRole,
        file_name: String,
        bytes: &[u8],
        opts: ParseOptions,
        host: &H,
    ) -> Result<()> {
        let i = self.index(task)?;
        let opts = ParseOptions {
            text_column: non_empty(opts.text_column, "text"),
            label_column: non_empty(opts.label_column, "label"),
            ..opts
        };
        let mut last = -1.0;
        let mut progress = |fraction: f64| {
            // Only large files report; a step of 5 % keeps the messages few.
            if bytes.len() >= data::PROGRESS_EVERY && fraction - last >= 0.05 {
                last = fraction;
                host.emit(Event::Reading {
                    task: task.to_string(),
                    file_name: file_name.clone(),
                    fraction,
                });
            }
        };
        let parsed = match data::parse_with_progress(bytes, &file_name, &opts, &mut progress) {
            Ok(p) => p,
            Err(e) => {
                if let data::DataError::MissingColumn { available, .. } = &e {
                    let t = &mut self.tasks[i];
                    t.columns = available.clone();
                    t.file_name = Some(file_name.clone());
                    t.read_as = None;
                    host.emit(Event::Workspace(self.view()));
                }
                return Err(Error::Invalid(format!("{file_name}: {e}")));
            }
        };
        let classes = LabelVocab::from_examples(&parsed.examples).len();
        if classes > crate::limits::MAX_CLASSES {
            let e = data::DataError::TooManyClasses {
                classes,
                max: crate::limits::MAX_CLASSES,
            };
            return Err(Error::Invalid(format!("{file_name}: {e}")));
        }
        let t = &mut self.tasks[i];
        t.rejected = parsed.rejected;
        t.columns = parsed.columns;
        t.file_name = Some(file_name);
        t.read_as = Some(parsed.reading.describe());
        match role {
            DataRole::Train => t.state.examples = parsed.examples,
            DataRole::Test => t.state.test_examples = parsed.examples,
        }
        let classes = LabelVocab::from_examples(&t.state.examples).len();
        if role == DataRole::Train && classes < 2 {
            host.emit(Event::Notice(format!(
                "task {task:?}: the data has {classes} class; training needs at least 2"
            )));
        }
        Ok(())
    }

    /// What the UI shows.
    pub fn view(&self) -> WorkspaceView {
        let fused = self.fusion.as_ref().map(|f| f.manifest.tasks.as_slice());
        let adapters = self
            .fusion
            .as_ref()
            .map_or(&[][..], |f| f.manifest.adapters.as_slice());
        let tasks = self
            .tasks
            .iter()
            .map(|t| {
                let mut v = t.view();
                let ft = fused.and_then(|ts| ts.iter().find(|f| f.task == t.state.name));
                if let Some(ft) = ft {
                    let answer = self.answerer(t);
                    v.uses_hybrid = answer == Answerer::Hybrid;
                    v.answered_by = Some(answer);
                    let choice = t.state.settings.answer;
                    v.fusion_note = Some(match choice {
                        AnswerChoice::Automatic => {
                            format!("Automatic: {}", ft.describe_gate(adapters))
                        }
                        forced => {
                            let wanted = forced.resolve(ft.answerer());
                            let missing = match wanted == answer {
                                true => String::new(),
                                false => format!(
                                    ", which this fusion has no head for: answers with the {}",
                                    answer.words()
                                ),
                            };
                            let gate = ft.describe_gate(adapters);
                            let evidence = gate.split_once(": ").map_or("", |(_, e)| e);
                            format!(
                                "Set to always answer with the {}{missing} (the check: {evidence})",
                                wanted.words()
                            )
                        }
                    });
                }
                v
            })
            .collect();
        WorkspaceView {
            tasks,
            fused: self.fusion.is_some(),
            fused_tasks: self
                .fusion
                .as_ref()
                .map(|f| f.manifest.tasks.iter().map(|t| t.task.clone()).collect())
                .unwrap_or_default(),
            fused_shared: self.fusion.as_ref().is_some_and(|f| f.manifest.shared),
        }
    }
}

impl Task {
    /// The task's training and held-out rows under its held-out policy (docs/design.md §4),
    /// labelled with a trained head's classes `labels` (rows with other labels left out).
    pub(super) fn rows(&self, labels: &[String]) -> (Labelled, Labelled) {
        let s = &self.state;
        let h = &s.settings.holdout;
        let (train, held_out) = h.split(&s.examples, &s.test_examples, s.settings.train.seed);
        let vocab = LabelVocab::from_names(labels.to_vec());
        (
            Labelled::known(&train, &vocab).0,
            Labelled::known(&held_out, &vocab).0,
        )
    }

    pub(super) fn new(name: String) -> Self {
        Self {
            state: TaskState {
                name,
                ..TaskState::default()
            },
            trained: None,
            rejected: Vec::new(),
            columns: Vec::new(),
            file_name: None,
            read_as: None,
            curve: Vec::new(),
        }
    }

    fn view(&self) -> TaskView {
        let s = &self.state;
        let vocab = LabelVocab::from_examples(&s.examples);
        let counts = data::class_counts(&s.examples, &vocab);
        TaskView {
            name: s.name.clone(),
            examples: s.examples.len(),
            test_examples: s.test_examples.len(),
            class_counts: vocab.names().iter().cloned().zip(counts).collect(),
            preview: s
                .examples
                .iter()
                .take(PREVIEW_ROWS)
                .map(|e| (e.text.clone(), e.label.clone()))
                .collect(),
            rejected: self.rejected.clone(),
            columns: self.columns.clone(),
            file_name: self.file_name.clone(),
            read_as: self.read_as.clone(),
            settings: s.settings.clone(),
            has_adapter: self.trained.is_some(),
            has_head: self.trained.as_ref().is_some_and(|t| t.head.is_some()),
            labels: self
                .trained
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
            curve: self.curve.clone(),
            adapter_sha256: self.trained.as_ref().map(|t| t.sha256.clone()),
            uses_hybrid: false,
            answered_by: None,
            fusion_note: None,
            start_note: s
                .adapter
                .as_ref()
                .and_then(task_files::peek_meta)
                .and_then(|m| m.start)
                .map(|c| c.describe()),
            partial: self.trained.as_ref().and_then(|t| {
                let done = t.history.iter().filter(|p| p.loss.is_finite()).count();
                (done > 0 && done < t.epochs_planned).then(|| {
                    format!(
                        "Trained {done} of {} epochs: the run was stopped, or the page closed, \
                         before it finished. This is the adapter of the completed epochs; train \
                         again for a full run.",
                        t.epochs_planned
                    )
                })
            }),
        }
    }
}

fn non_empty(s: String, default: &str) -> String {
    if s.trim().is_empty() {
        default.to_string()
    } else {
        s.trim().to_string()
    }
}

/// A file-name-safe form of a task name.
pub fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "task".into() } else { s }
}
