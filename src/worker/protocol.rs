//! The messages between the page (UI thread) and the engine worker, as plain serde data.
//!
//! The UI sends [`Request`]s and receives [`Event`]s; neither side sees the other's types beyond
//! these. Byte payloads (uploads, zips) are `serde_bytes`, so in the browser they cross
//! `postMessage` as `Uint8Array`s rather than arrays of numbers.

use serde::{Deserialize, Serialize};

use crate::data::RejectedRow;
use crate::infer::types::{Answerer, MultiTaskOutput};
pub use crate::train::calibration::{Bin, Calibration};
pub use crate::train::metrics::ClassScores;
use crate::workspace::bundle::TaskSettings;

/// Which backend the worker should try first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BackendChoice {
    /// WebGPU when the browser gives an adapter and a device, the CPU backend otherwise.
    #[default]
    Auto,
    /// The CPU backend (WebAssembly) only.
    Cpu,
    /// WebGPU only; failing to get it is an error.
    WebGpu,
}

/// Which base model the worker loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ModelSource {
    /// all-MiniLM-L6-v2 from the page's own `models/` folder (kept in Cache Storage).
    #[default]
    Default,
    /// The encoder the user installed with [`Request::InstallModel`] (kept in Cache Storage).
    Own,
}

/// One file of a model the user brings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedFile {
    /// Its path in the model folder: `config.json`, `model.safetensors`, `tokenizer.json`,
    /// `modules.json` or `1_Pooling/config.json`.
    pub name: String,
    /// Its bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Which part of an upload a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataRole {
    /// Training examples (a part is held out for evaluation unless a test file is given).
    Train,
    /// Test examples used by the evaluation report instead of the held-out part.
    Test,
}

/// What the UI asks of the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Load the model from the page's `models/` folder and restore `bundle` (the saved workspace),
    /// if given.
    Init {
        /// Backend preference.
        backend: BackendChoice,
        /// The workspace saved by a previous visit.
        #[serde(with = "serde_bytes")]
        bundle: Option<Vec<u8>>,
        /// Which base model (absent in older messages: the default).
        #[serde(default)]
        model: ModelSource,
    },
    /// Check a BERT-family encoder the user picked (it must load and embed) and keep it in the
    /// browser as the [`ModelSource::Own`] model; answered by [`Event::ModelInstalled`]. The
    /// running engine is not changed: the page restarts the worker on the new model.
    InstallModel {
        /// What to call it (the folder's name).
        name: String,
        /// Its files.
        files: Vec<NamedFile>,
    },
    /// Create an empty task.
    AddTask {
        /// Its name (unique, not empty).
        name: String,
    },
    /// Delete a task (and the fusion, which was trained over it).
    RemoveTask {
        /// Task name.
        task: String,
    },
    /// Parse an uploaded data file into a task.
    Upload {
        /// Task name.
        task: String,
        /// Train or test data.
        role: DataRole,
        /// File name (used to detect CSV/TSV/JSONL).
        file_name: String,
        /// File content.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Column/key holding the text (default `text`).
        text_column: String,
        /// Column/key holding the label (default `label`).
        label_column: String,
        /// The CSV delimiter, or `None` to detect it.
        #[serde(default)]
        delimiter: Option<char>,
        /// Whether the first row is a header (absent: yes).
        #[serde(default = "yes")]
        header: bool,
    },
    /// Change a task's settings.
    Settings {
        /// Task name.
        task: String,
        /// New settings.
        settings: TaskSettings,
    },
    /// Train a task's adapter and head (stage 1).
    Train {
        /// Task name.
        task: String,
    },
    /// Train the fusion over every task's adapter (stage 2).
    TrainFusion {
        /// One fusion shared by all tasks (per-task heads) instead of one per task (the default).
        #[serde(default)]
        shared: bool,
        /// Decide each task's fusion epoch and gate by cross-validation over this many folds of
        /// its training rows (docs/design.md §1.6; trains that many more adapters per task); 0
        /// (and absent): on the held-out rows.
        #[serde(default)]
        gate_folds: usize,
    },
    /// Stop the running training, keeping what it has trained.
    Cancel,
    /// Predict every task for one text, or for several in one batch (at most
    /// [`crate::limits::MAX_PREDICT_TEXTS`]).
    Predict {
        /// Caller's id, echoed in the answer (answers to stale ids can be dropped).
        id: u64,
        /// The texts.
        texts: Vec<String>,
    },
    /// Evaluate frozen probe, LoRA and hybrid on every task's held-out data.
    Evaluate,
    /// Build one task's adapter zip.
    ExportTask {
        /// Task name.
        task: String,
    },
    /// Build the whole workspace as one zip.
    ExportWorkspace,
    /// Load a zip: a workspace bundle (replaces the workspace) or one adapter (becomes a task).
    Import {
        /// File name.
        file_name: String,
        /// Zip content.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// For tests of the fallback: destroy the WebGPU device, as a driver reset or a crashed GPU
    /// process would (no effect on the CPU backend). The worker reports [`Event::DeviceLost`].
    LoseDevice,
    /// Check the running backend against the CPU backend: the sentence embedding of `text` on
    /// both, and one LoRA training step on the running backend.
    BackendCheck {
        /// A short sentence.
        text: String,
    },
}

/// A training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Job {
    /// Stage 1 of one task.
    Task(String),
    /// Stage 2 (all tasks); the string is the task whose fusion is training now.
    Fusion(String),
}

/// A point of a training curve (also kept in the adapter's `lorafuse_task.json`).
pub use crate::workspace::task_files::EpochRecord as EpochPoint;

/// What the UI shows of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskView {
    /// Name.
    pub name: String,
    /// Training examples.
    pub examples: usize,
    /// Uploaded test examples.
    pub test_examples: usize,
    /// `(label, count)` over the training examples, labels sorted.
    pub class_counts: Vec<(String, usize)>,
    /// The first rows of the training data.
    pub preview: Vec<(String, String)>,
    /// Rows of the last upload that were left out.
    pub rejected: Vec<RejectedRow>,
    /// Columns seen in the last upload.
    pub columns: Vec<String>,
    /// Name of the last uploaded file.
    pub file_name: Option<String>,
    /// How the last upload was read, in words (format, delimiter, encoding, header).
    pub read_as: Option<String>,
    /// Set when the adapter comes from a run that did not finish (stopped, or the page closed):
    /// how many of its epochs completed, in words.
    pub partial: Option<String>,
    /// Where the trained adapter started and why, in words (none before training, or for an
    /// adapter whose files do not say).
    #[serde(default)]
    pub start_note: Option<String>,
    /// Settings.
    pub settings: TaskSettings,
    /// Whether an adapter is trained or loaded.
    pub has_adapter: bool,
    /// Whether it has a classifier head (a PEFT adapter alone has none).
    pub has_head: bool,
    /// Label names of the trained head.
    pub labels: Vec<String>,
    /// Training curve of the last run.
    pub curve: Vec<EpochPoint>,
    /// sha256 of the adapter weights.
    pub adapter_sha256: Option<String>,
    /// Once fused: whether live predictions answer with the hybrid.
    #[serde(default)]
    pub uses_hybrid: bool,
    /// Once fused: the model live predictions answer with (absent before fusion).
    #[serde(default)]
    pub answered_by: Option<Answerer>,
    /// Once fused: which model answers and why, with every candidate's score, in words.
    #[serde(default)]
    pub fusion_note: Option<String>,
}

/// What the UI shows of the workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorkspaceView {
    /// Tasks in order.
    pub tasks: Vec<TaskView>,
    /// Whether the fusion is trained (and matches the current adapters).
    pub fused: bool,
    /// Tasks covered by the fusion, in order.
    pub fused_tasks: Vec<String>,
    /// Whether the fusion is one module shared by all tasks (per-task heads).
    pub fused_shared: bool,
}

/// One method's result on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// `frozen`, `lora`, `source` (the other task's adapter with a fresh head) or `hybrid`.
    pub method: String,
    /// Fraction correct.
    pub accuracy: f64,
    /// 95 % Wilson interval of the accuracy.
    pub accuracy_interval: (f64, f64),
    /// Macro-averaged F1.
    pub macro_f1: f64,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Precision, recall, F1 and support per class, in label order.
    pub per_class: Vec<ClassScores>,
    /// The temperature live predictions use for this method.
    pub temperature: f64,
    /// Calibration of the raw probabilities (temperature 1).
    pub raw: Calibration,
    /// Calibration after temperature scaling, measured out of fold (each half of the rows scaled
    /// with the temperature fitted on the other half).
    pub calibrated: Calibration,
    /// The reliability diagram's bins of those out-of-fold scaled probabilities.
    pub reliability: Vec<Bin>,
}

/// One task's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Task name.
    pub task: String,
    /// Labels in class order.
    pub labels: Vec<String>,
    /// Examples evaluated.
    pub n: usize,
    /// Where they came from.
    pub source: String,
    /// Results, frozen → lora → source → hybrid (those scored).
    pub results: Vec<MethodResult>,
    /// What the numbers say, in words: the hybrid against LoRA on the same rows (exact McNemar
    /// test), and a note when the intervals are wide.
    pub findings: Vec<String>,
}

/// How far the model files have been read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelProgress {
    /// File being read (empty before the first).
    pub file: String,
    /// Bytes of it read so far.
    pub loaded: u64,
    /// Its size, when known.
    pub total: Option<u64>,
    /// Whether the bytes come from the browser's cache.
    pub cached: bool,
}

/// A training job's progress after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// Which job.
    pub job: Job,
    /// Step done.
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch loss.
    pub loss: f32,
    /// Examples per second.
    pub examples_per_sec: f64,
    /// Seconds left at the current speed.
    pub eta_sec: f64,
}

/// The engine the worker runs, once it is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineReady {
    /// Backend in words, e.g. `WebGPU (…)` or `CPU (WebAssembly)`.
    pub backend: String,
    /// Why WebGPU is not used, when it is not.
    pub fallback_reason: Option<String>,
    /// Model name.
    pub model: String,
    /// Size of the model's weights file in bytes (absent in older messages: 0).
    #[serde(default)]
    pub model_bytes: u64,
    /// Whether this is the user's own encoder ([`ModelSource::Own`]).
    #[serde(default)]
    pub own_model: bool,
    /// Seconds from the start of loading.
    pub load_sec: f64,
    /// Where those seconds went, in order (the worker's steps; the page adds its own before them).
    #[serde(default)]
    pub phases: Vec<LoadPhase>,
}

/// One step of getting the engine ready and how long it took: the breakdown the page shows on its
/// "Model ready" line and `scripts/bench-web` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadPhase {
    /// What happened, in words (`model files`, `workspace restore`, …).
    pub name: String,
    /// Seconds it took.
    pub sec: f64,
}

/// What the worker tells the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The worker's code is loaded and listens; requests sent before this are queued by the page.
    Started,
    /// Model download progress.
    ModelProgress(ModelProgress),
    /// The model is loaded and the workspace restored.
    Ready(EngineReady),
    /// The encoder of [`Request::InstallModel`] loaded, and is kept in this browser.
    ModelInstalled {
        /// Its name.
        name: String,
        /// Size of its weights file in bytes.
        bytes: u64,
    },
    /// The workspace changed.
    Workspace(WorkspaceView),
    /// The workspace as one zip, to be saved for the next visit.
    Persist {
        /// Bundle bytes.
        #[serde(with = "serde_bytes")]
        bundle: Vec<u8>,
    },
    /// Training progress.
    Progress(JobProgress),
    /// A training job ended.
    JobDone {
        /// Which job.
        job: Job,
        /// Whether it was cancelled (what was trained is kept).
        cancelled: bool,
        /// Seconds it took.
        seconds: f64,
    },
    /// Answer to [`Request::Predict`].
    Predictions {
        /// The request's id.
        id: u64,
        /// Predictions, in the order of the request's texts.
        output: MultiTaskOutput,
        /// Milliseconds the prediction took in the worker.
        ms: f64,
    },
    /// Answer to [`Request::Evaluate`].
    Report(Vec<TaskReport>),
    /// A file for the user to save.
    File {
        /// Suggested name.
        name: String,
        /// Content.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Something went wrong; nothing was lost.
    Error {
        /// What was being done.
        context: String,
        /// What went wrong.
        message: String,
    },
    /// Answer to [`Request::BackendCheck`].
    BackendCheck {
        /// Largest absolute difference between the two backends' sentence embeddings.
        max_abs_diff: f32,
        /// Loss of the one training step on the running backend.
        step_loss: f32,
        /// Milliseconds of the embedding on the running backend.
        embed_ms: f64,
        /// Milliseconds of the training step.
        step_ms: f64,
    },
    /// An informational note (e.g. the fusion was dropped because an adapter changed).
    Notice(String),
    /// The workspace changed and is being packed for saving; an [`Event::Persist`] or an
    /// [`Event::SaveFailed`] follows. The page warns before it is closed until the save is done.
    Saving,
    /// Packing the workspace after [`Event::Saving`] failed: no [`Event::Persist`] comes; the
    /// work is still in the session (the next change saves again).
    SaveFailed {
        /// Why.
        message: String,
    },
    /// The WebGPU device was lost (destroyed, a driver reset, a crashed GPU process): the page
    /// restarts the engine on the CPU backend with the saved workspace.
    DeviceLost {
        /// Why, as the browser says.
        reason: String,
    },
    /// How far the worker has read a large upload.
    Reading {
        /// The task it is for.
        task: String,
        /// The file.
        file_name: String,
        /// Fraction read, 0 to 1.
        fraction: f64,
    },
}

fn yes() -> bool {
    true
}
