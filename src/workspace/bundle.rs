//! The whole workspace as one zip (docs/design.md §3 "Workspace bundle"): every task with its data,
//! settings and (when trained) adapter folder, plus the fused model, and a manifest.
//!
//! ```text
//! manifest.json                  format, task names and settings, what each task has
//! tasks/{i}/train.jsonl          the task's examples, {"text", "label"} per line
//! tasks/{i}/test.jsonl           its uploaded test examples, if any
//! tasks/{i}/adapter/…            its adapter folder (see task_files), if trained
//! fusion/…                       fusion_manifest.json + fusion.safetensors, if trained
//! ```
//!
//! Tensors are not touched here: adapter and fusion folders travel as bytes and are checked by the
//! engine when loaded. An upload can also be a single task's adapter zip (ours or PEFT's):
//! [`classify`] tells which.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{task_files, zipfile};
use crate::data::holdout::HoldoutPolicy;
use crate::data::{self, Example, Format, ParseOptions};
use crate::error::{Error, Result};
use crate::infer::Answerer;
use crate::limits::{MAX_TASK_NAME, MAX_TASKS};
use crate::lora::LoraConfig;
use crate::train::TrainConfig;

/// Format tag of `manifest.json`.
pub const BUNDLE_FORMAT: &str = "lorafuse-workspace/1";

/// A task's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskSettings {
    /// LoRA settings.
    pub lora: LoraConfig,
    /// Training settings.
    pub train: TrainConfig,
    /// How much of the uploaded rows is held out when no test file is given (absent in older
    /// bundles: the default, 10 %).
    #[serde(default)]
    pub holdout: HoldoutPolicy,
    /// Which prediction the task answers with once fused (absent in older bundles: automatic).
    #[serde(default)]
    pub answer: AnswerChoice,
    /// Where the task's adapter starts (absent in older bundles: automatic).
    #[serde(default)]
    pub start: StartFrom,
}

impl TaskSettings {
    /// Checks every setting; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        self.train.validate()?;
        self.holdout.validate()
    }
}

/// Where a task's adapter starts when it trains (docs/design.md §1.2, "Transfer").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// Another task's adapter where the task's rows say it reads them better than the base
    /// model does; a fresh adapter otherwise.
    #[default]
    Automatic,
    /// A fresh adapter (LoRA's init).
    Fresh,
    /// The named task's adapter (sequential transfer).
    Task(String),
}

/// Which prediction a fused task answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerChoice {
    /// The fusion's gate decides: of the own LoRA, the hybrid and the fresh heads, the one that
    /// scored best on rows that did not choose it (docs/design.md §1.6).
    #[default]
    Automatic,
    /// Always the hybrid.
    Hybrid,
    /// Always the task's own LoRA.
    Lora,
    /// Always the frozen model with a fresh head.
    Frozen,
    /// Always the best other task's adapter with a fresh head.
    Source,
}

impl AnswerChoice {
    /// Every choice, in the order the page lists them.
    pub const ALL: [AnswerChoice; 5] = [
        Self::Automatic,
        Self::Lora,
        Self::Hybrid,
        Self::Frozen,
        Self::Source,
    ];

    /// The model to answer with, given the gate's choice.
    pub fn resolve(self, gate: Answerer) -> Answerer {
        match self {
            Self::Automatic => gate,
            Self::Hybrid => Answerer::Hybrid,
            Self::Lora => Answerer::Lora,
            Self::Frozen => Answerer::Frozen,
            Self::Source => Answerer::Source,
        }
    }

    /// Its value in the page's select and in files.
    pub fn key(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Hybrid => "hybrid",
            Self::Lora => "lora",
            Self::Frozen => "frozen",
            Self::Source => "source",
        }
    }

    /// The choice whose [`Self::key`] is `key` (automatic for anything else).
    pub fn from_key(key: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.key() == key)
            .unwrap_or_default()
    }
}

/// One task of a workspace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskState {
    /// Task name (unique in the workspace).
    pub name: String,
    /// Training examples.
    pub examples: Vec<Example>,
    /// Uploaded test examples (may be empty).
    pub test_examples: Vec<Example>,
    /// Settings.
    pub settings: TaskSettings,
    /// The adapter folder's files, when trained.
    pub adapter: Option<BTreeMap<String, Vec<u8>>>,
}

/// Tasks, data, adapters and fusion: everything a session needs to be restored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Workspace {
    /// Tasks in order (the fusion order).
    pub tasks: Vec<TaskState>,
    /// The fused model's files, when trained.
    pub fusion: Option<BTreeMap<String, Vec<u8>>>,
}

#[derive(Serialize, Deserialize)]
struct ManifestTask {
    name: String,
    settings: TaskSettings,
    examples: usize,
    test_examples: usize,
    has_adapter: bool,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    tasks: Vec<ManifestTask>,
    has_fusion: bool,
}

fn jsonl(examples: &[Example]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in examples {
        if let Ok(line) = serde_json::to_vec(&serde_json::json!({"text": e.text, "label": e.label}))
        {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out
}

fn read_jsonl(bytes: &[u8], what: &str) -> Result<Vec<Example>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let opts = ParseOptions {
        format: Some(Format::Jsonl),
        ..Default::default()
    };
    let parsed =
        data::parse(bytes, what, &opts).map_err(|e| Error::Bundle(format!("{what}: {e}")))?;
    if let Some(r) = parsed.rejected.first() {
        return Err(Error::Bundle(format!(
            "{what}, line {}: {}",
            r.line, r.reason
        )));
    }
    Ok(parsed.examples)
}

impl Workspace {
    /// The bundle's files (path → bytes).
    pub fn to_files(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        let manifest = Manifest {
            format: BUNDLE_FORMAT.into(),
            tasks: self
                .tasks
                .iter()
                .map(|t| ManifestTask {
                    name: t.name.clone(),
                    settings: t.settings.clone(),
                    examples: t.examples.len(),
                    test_examples: t.test_examples.len(),
                    has_adapter: t.adapter.is_some(),
                })
                .collect(),
            has_fusion: self.fusion.is_some(),
        };
        files.insert(
            "manifest.json".to_string(),
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Bundle(e.to_string()))?,
        );
        for (i, t) in self.tasks.iter().enumerate() {
            files.insert(format!("tasks/{i}/train.jsonl"), jsonl(&t.examples));
            files.insert(format!("tasks/{i}/test.jsonl"), jsonl(&t.test_examples));
            for (name, bytes) in t.adapter.iter().flatten() {
                files.insert(format!("tasks/{i}/adapter/{name}"), bytes.clone());
            }
        }
        for (name, bytes) in self.fusion.iter().flatten() {
            files.insert(format!("fusion/{name}"), bytes.clone());
        }
        Ok(files)
    }

    /// The bundle as a zip.
    pub fn to_zip(&self) -> Result<Vec<u8>> {
        zipfile::write(&self.to_files()?)
    }

    /// Rebuilds a workspace from a bundle's files.
    pub fn from_files(files: &BTreeMap<String, Vec<u8>>) -> Result<Self> {
        let manifest = files
            .get("manifest.json")
            .ok_or_else(|| Error::Bundle("not a workspace bundle: no manifest.json".into()))?;
        let manifest: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| Error::Bundle(format!("manifest.json: {e}")))?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(Error::Bundle(format!(
                "manifest.json has format {:?}, expected {BUNDLE_FORMAT:?}",
                manifest.format
            )));
        }
        if manifest.tasks.len() > MAX_TASKS {
            return Err(Error::Bundle(format!(
                "manifest.json lists {} tasks, more than the limit of {MAX_TASKS}",
                manifest.tasks.len()
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for mt in &manifest.tasks {
            let n = mt.name.trim();
            if n.is_empty() || n.chars().count() > MAX_TASK_NAME || n.chars().any(char::is_control)
            {
                return Err(Error::Bundle(format!(
                    "manifest.json has an unusable task name {:?} (1..={MAX_TASK_NAME} characters, no control characters)",
                    mt.name.chars().take(80).collect::<String>()
                )));
            }
            if !names.insert(n) {
                return Err(Error::Bundle(format!(
                    "manifest.json lists the task {n:?} twice"
                )));
            }
            mt.settings.validate().map_err(|e| {
                Error::Bundle(format!(
                    "manifest.json: task {n:?} has unusable settings: {e}"
                ))
            })?;
        }
        let mut tasks = Vec::new();
        for (i, mt) in manifest.tasks.into_iter().enumerate() {
            let get = |n: &str| {
                files
                    .get(&format!("tasks/{i}/{n}"))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            };
            let examples = read_jsonl(get("train.jsonl"), &format!("tasks/{i}/train.jsonl"))?;
            let test_examples = read_jsonl(get("test.jsonl"), &format!("tasks/{i}/test.jsonl"))?;
            let prefix = format!("tasks/{i}/adapter/");
            let adapter: BTreeMap<String, Vec<u8>> = files
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|n| (n.to_string(), v.clone())))
                .collect();
            if mt.has_adapter && !adapter.contains_key(task_files::ADAPTER_WEIGHTS) {
                return Err(Error::Bundle(format!(
                    "task {:?} should have an adapter, but {prefix}{} is missing",
                    mt.name,
                    task_files::ADAPTER_WEIGHTS
                )));
            }
            tasks.push(TaskState {
                name: mt.name,
                examples,
                test_examples,
                settings: mt.settings,
                adapter: (!adapter.is_empty()).then_some(adapter),
            });
        }
        let fusion: BTreeMap<String, Vec<u8>> = files
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("fusion/")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        Ok(Self {
            tasks,
            fusion: (manifest.has_fusion && !fusion.is_empty()).then_some(fusion),
        })
    }
}

/// What an uploaded zip holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Upload {
    /// A whole workspace bundle.
    Workspace(Workspace),
    /// One task's adapter folder (ours, or PEFT's two files).
    Task(BTreeMap<String, Vec<u8>>),
}

/// Reads an uploaded zip and tells what it is; anything else is an error saying what was expected.
pub fn classify(zip_bytes: &[u8]) -> Result<Upload> {
    let files = zipfile::read(zip_bytes)?;
    if files.contains_key("manifest.json") {
        return Ok(Upload::Workspace(Workspace::from_files(&files)?));
    }
    if files.contains_key(task_files::ADAPTER_CONFIG)
        && files.contains_key(task_files::ADAPTER_WEIGHTS)
    {
        return Ok(Upload::Task(files));
    }
    Err(Error::Bundle(format!(
        "the zip is neither a lorafuse workspace (manifest.json) nor an adapter ({} + {}); it holds: {}",
        task_files::ADAPTER_CONFIG,
        task_files::ADAPTER_WEIGHTS,
        files.keys().take(8).cloned().collect::<Vec<_>>().join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: &str, l: &str) -> Example {
        Example {
            text: t.into(),
            label: l.into(),
        }
    }

    #[test]
    fn workspace_round_trips_through_a_zip() {
        let ws = Workspace {
            tasks: vec![
                TaskState {
                    name: "sentiment / reviews".into(),
                    examples: vec![ex("good, \"really\"\nnice", "pos"), ex("bad", "neg")],
                    test_examples: vec![ex("fine", "pos")],
                    settings: TaskSettings::default(),
                    adapter: Some(
                        [
                            (task_files::ADAPTER_CONFIG.to_string(), b"{}".to_vec()),
                            (task_files::ADAPTER_WEIGHTS.to_string(), vec![1, 2, 3]),
                        ]
                        .into(),
                    ),
                },
                TaskState {
                    name: "topic".into(),
                    examples: vec![ex("a", "x"), ex("b", "y")],
                    ..Default::default()
                },
            ],
            fusion: Some([("fusion_manifest.json".to_string(), b"{}".to_vec())].into()),
        };
        let zip = ws.to_zip().unwrap();
        match classify(&zip).unwrap() {
            Upload::Workspace(back) => assert_eq!(back, ws),
            other => panic!("expected a workspace, got {other:?}"),
        }
    }

    #[test]
    fn adapter_zips_and_junk_are_told_apart() {
        let files: BTreeMap<String, Vec<u8>> = [
            (task_files::ADAPTER_CONFIG.to_string(), b"{}".to_vec()),
            (task_files::ADAPTER_WEIGHTS.to_string(), vec![0]),
        ]
        .into();
        assert!(matches!(
            classify(&zipfile::write(&files).unwrap()).unwrap(),
            Upload::Task(_)
        ));
        let junk: BTreeMap<String, Vec<u8>> = [("readme.txt".to_string(), b"hi".to_vec())].into();
        assert!(
            classify(&zipfile::write(&junk).unwrap())
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
        let bad_manifest: BTreeMap<String, Vec<u8>> = [(
            "manifest.json".to_string(),
            b"{\"format\":\"other\",\"tasks\":[],\"has_fusion\":false}".to_vec(),
        )]
        .into();
        assert!(classify(&zipfile::write(&bad_manifest).unwrap()).is_err());
        assert!(classify(b"not a zip").is_err());
    }
}
