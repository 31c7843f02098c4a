//! The fixed limits every file and request is checked against before anything is allocated from
//! it. They live in one place so the page, the CLI, the tests and docs/reliability.md (which gives
//! the reason for each number) agree.
//!
//! [`check_labels`] is the one check shared by every file that lists a task's labels.
//!
//! What it leaves out: the other checks, which stay with each format's reader (`data` for
//! uploads, `tensorfile` for safetensors, `workspace::zipfile` for zips, `lora::config` for PEFT's
//! JSON, `fusion::files` for fused models), and limits that depend on the running model (its
//! width, its layers), which those readers take from the engine.

/// Most tasks in a workspace, and so most adapters in a fused model.
pub const MAX_TASKS: usize = 16;

/// Longest task name, in characters.
pub const MAX_TASK_NAME: usize = 64;

/// Most classes in one task. Public intent data sets have about 150 (CLINC150); a head of 1000
/// classes over 384 dimensions is 1.5 MB, so the limit guards memory, not usefulness.
pub const MAX_CLASSES: usize = 1000;

/// Longest class name, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// Largest data upload (CSV, TSV, JSONL), in bytes: 128 MiB. The page refuses a bigger file from
/// its size alone, before reading it.
pub const MAX_DATA_BYTES: usize = 128 << 20;

/// Most texts predicted in one request (the live view's "one text per line"): 256, eight
/// batches of 32, a few seconds on a CPU.
pub const MAX_PREDICT_TEXTS: usize = 256;

/// Largest zip upload (a workspace or an adapter), in bytes: 512 MiB.
pub const MAX_ZIP_BYTES: usize = 512 << 20;

/// Most entries in a zip. A workspace of [`MAX_TASKS`] tasks has about 100.
pub const MAX_ZIP_ENTRIES: usize = 1000;

/// Most bytes a zip may unpack to, all entries together: 768 MiB.
pub const MAX_ZIP_TOTAL_BYTES: u64 = 768 << 20;

/// Highest compression ratio (uncompressed / compressed size) accepted for a zip entry larger
/// than [`RATIO_CHECK_ABOVE`]. Trained weights compress about 1.1:1 and text 3–10:1; a zip bomb's
/// entries reach 1000:1.
pub const MAX_COMPRESSION_RATIO: u64 = 200;

/// Entries at most this large (uncompressed bytes) are not ratio-checked: 1 MiB.
pub const RATIO_CHECK_ABOVE: u64 = 1 << 20;

/// Longest path of a zip entry, in bytes.
pub const MAX_ZIP_PATH: usize = 512;

/// Largest JSON header of a safetensors file, in bytes: 1 MiB (the base model's is 20 KB).
pub const MAX_SAFETENSORS_HEADER: usize = 1 << 20;

/// Largest LoRA rank accepted from an `adapter_config.json` (it must also not exceed the smaller
/// side of the matrices it adapts).
pub const MAX_LORA_RANK: usize = 1024;

/// Most attention heads of a fusion layer.
pub const MAX_FUSION_HEADS: usize = 64;

/// Largest encoder the page accepts from the user, all its files together (wasm32 has 4 GiB of
/// address space, and the weights are held as bytes and as tensors while loading).
pub const MAX_MODEL_BYTES: usize = 512 << 20;

/// Longest name of a user's encoder, in characters.
pub const MAX_MODEL_NAME: usize = 100;

/// Checks a task's label names against [`MAX_CLASSES`] and [`MAX_LABEL_CHARS`] (and that none is
/// listed twice); the error is the end of a sentence that names the task, e.g. "it lists 1000000
/// labels; a task has 2..=1000".
pub fn check_labels(labels: &[String]) -> Result<(), String> {
    let n = labels.len();
    if !(2..=MAX_CLASSES).contains(&n) {
        return Err(format!("it lists {n} labels; a task has 2..={MAX_CLASSES}"));
    }
    if let Some(l) = labels.iter().find(|l| l.chars().count() > MAX_LABEL_CHARS) {
        return Err(format!(
            "a label has {} characters, more than {MAX_LABEL_CHARS}",
            l.chars().count()
        ));
    }
    let distinct: std::collections::BTreeSet<&String> = labels.iter().collect();
    if distinct.len() != n {
        return Err("a label is listed twice".into());
    }
    Ok(())
}

/// Most threads in the page's engine pool (the page offers up to `navigator.hardwareConcurrency`,
/// capped here: each pool thread is a Web Worker with its own stack).
pub const MAX_THREADS: usize = 32;
