//! A fused model on disk: `fusion.safetensors` (every task's fusion layer, PyTorch layout:
//! linear weights `[out, in]`) and `fusion_manifest.json` (tasks in order, label names, `d`,
//! heads, and which adapters — by the sha256 of their `adapter_model.safetensors` — in which order),
//! so the fused model can be rebuilt exactly from files next to the task adapter folders.
//! The safetensors file is read and written through [`crate::tensorfile`].

use std::collections::{BTreeMap, HashMap};

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::module::{AttentionFusion, FusionConfig, FusionOptions};
use crate::error::{Error, Result};
use crate::host;
use crate::infer::Answerer;
use crate::limits::{MAX_FUSION_HEADS, MAX_TASKS, check_labels};
use crate::model::ClassifierHead;
use crate::model::weights::torch_linear_weight;
use crate::tensorfile::{self, TensorFile};

pub use super::gate_check::{
    CLEAR_LEAD_SHARE, GateCheck, OutOfFold, SOURCE_LEAD_ROWS, SourceCheck, better, clear_lead,
};

/// Manifest file name.
pub const MANIFEST: &str = "fusion_manifest.json";
/// Weights file name.
pub const WEIGHTS: &str = "fusion.safetensors";
/// Format tag.
pub const FUSION_FORMAT: &str = "lorafuse-fusion/1";

/// One fused adapter, in fusion order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusedAdapter {
    /// Task whose adapter this is.
    pub task: String,
    /// sha256 of its `adapter_model.safetensors`.
    pub adapter_sha256: String,
}

/// One target task's fusion layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusedTask {
    /// Task name.
    pub task: String,
    /// Label names in class order.
    pub labels: Vec<String>,
    /// Temperature of this task's hybrid probabilities, fitted on its held-out rows after the
    /// fusion trained; absent in older files: 1 (none).
    #[serde(default = "one")]
    pub temperature: f64,
    /// Temperature of the own LoRA's probabilities chosen on the cross-validated gate's
    /// out-of-fold rows (every training row), used instead of the one in the adapter's
    /// `lorafuse_task.json` (which a task that holds no rows out fits on none). Absent in older
    /// files and without cross-validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_temperature: Option<f64>,
    /// Position of the task's own adapter in the fusion (set for the variants that use it: their
    /// layer holds a copy of the task's stage-1 head). Absent in older files.
    #[serde(default)]
    pub own: Option<usize>,
    /// Whether the task predicts with the hybrid (`true`) or with its own LoRA (`false`: the
    /// hybrid did not beat it on the held-out rows, see `gate`). Absent in older files: `true`.
    #[serde(default = "yes")]
    pub use_hybrid: bool,
    /// The held-out check behind `use_hybrid` (none without held-out rows).
    #[serde(default)]
    pub gate: Option<GateCheck>,
    /// The model the gate chose ([`GateCheck::answer`]); `use_hybrid` is whether it is the
    /// hybrid. Absent in older files: `use_hybrid` alone decides.
    #[serde(default)]
    pub answer: Option<Answerer>,
    /// The fresh heads stored for this task (`frozen`: on the base's vectors, `source`: on the
    /// vectors of the gate's best other adapter, `gate.source.best`), in `fusion.safetensors` as
    /// `task.{i}.frozen_head` / `task.{i}.source_head`. Absent in older files: none.
    #[serde(default)]
    pub heads: Vec<Answerer>,
    /// Classes of the rows of the gate's evidence ([`OutOfFold`]); absent in older files and
    /// without a gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_fold_labels: Vec<usize>,
    /// The candidates whose probabilities on those rows are stored, in `fusion.safetensors` as
    /// `task.{i}.out_of_fold.{candidate}` (`[rows, classes]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_fold: Vec<Answerer>,
}

/// A fused task's fresh heads, beside its fusion layer: the candidates of its answer that are
/// neither its own LoRA nor the hybrid (docs/design.md §1.6), and the evidence the answer was
/// chosen on.
#[derive(Debug, Clone, Default)]
pub struct AnswerHeads {
    /// A linear head on the frozen base's vectors.
    pub frozen: Option<ClassifierHead>,
    /// A linear head on the vectors of the gate's best other adapter.
    pub source: Option<ClassifierHead>,
    /// Every candidate's probabilities of the rows the gate checked (with the gate).
    pub out_of_fold: Option<OutOfFold>,
}

impl AnswerHeads {
    /// The head of `answerer`, if it is a fresh head and stored.
    pub fn get(&self, answerer: Answerer) -> Option<&ClassifierHead> {
        match answerer {
            Answerer::Frozen => self.frozen.as_ref(),
            Answerer::Source => self.source.as_ref(),
            Answerer::Lora | Answerer::Hybrid => None,
        }
    }

    /// Which heads are present, as [`FusedTask::heads`] lists them.
    pub fn kinds(&self) -> Vec<Answerer> {
        [Answerer::Frozen, Answerer::Source]
            .into_iter()
            .filter(|&a| self.get(a).is_some())
            .collect()
    }
}

/// The tensor-name stem of a fresh head of task `i`.
fn head_stem(i: usize, a: Answerer) -> String {
    format!("task.{i}.{}_head", a.key())
}

/// The tensor name of candidate `a`'s out-of-fold probabilities of task `i`.
fn out_of_fold_name(i: usize, a: Answerer) -> String {
    format!("task.{i}.out_of_fold.{}", a.key())
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// What `fusion_manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionManifest {
    /// Always [`FUSION_FORMAT`].
    pub format: String,
    /// sha256 of the base model's weights.
    pub base_model_sha256: String,
    /// Name of the base model (absent in older files: empty).
    #[serde(default)]
    pub base_model: String,
    /// Width of the pooled vectors.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// The K adapters, in the order the fusion layers expect them.
    pub adapters: Vec<FusedAdapter>,
    /// One fusion layer per target task, in this order in `fusion.safetensors` (`task.{i}.…`).
    pub tasks: Vec<FusedTask>,
    /// Whether the layers were trained as one shared fusion (docs/design.md §1.3's option): then they
    /// are equal but for their classifiers. Absent in older files: `false`.
    #[serde(default)]
    pub shared: bool,
    /// The variant's shape. Absent in older files: the paper's fusion.
    #[serde(default)]
    pub options: FusionOptions,
}

impl FusionManifest {
    /// Checks everything the layers will be built from against the running model's width
    /// `d_model` and the fixed limits of [`crate::limits`], before anything is allocated. The
    /// error is one sentence naming `fusion_manifest.json` and the field.
    pub fn check(&self, d_model: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Fusion(format!("{MANIFEST}: {m}")));
        if self.format != FUSION_FORMAT {
            return bad(format!(
                "format is {:?}, expected {FUSION_FORMAT:?}",
                self.format
            ));
        }
        if self.d_model != d_model {
            return bad(format!(
                "d_model is {}, but the running model's vectors have {d_model} dimensions",
                self.d_model
            ));
        }
        if self.heads == 0 || self.heads > MAX_FUSION_HEADS || d_model % self.heads != 0 {
            return bad(format!(
                "heads is {}; it must be in 1..={MAX_FUSION_HEADS} and divide d_model {d_model}",
                self.heads
            ));
        }
        let k = self.adapters.len();
        if k == 0 || k > MAX_TASKS {
            return bad(format!(
                "it lists {k} adapters; a fusion has 1..={MAX_TASKS}"
            ));
        }
        if self.tasks.is_empty() || self.tasks.len() > MAX_TASKS {
            return bad(format!(
                "it lists {} tasks; a fusion has 1..={MAX_TASKS}",
                self.tasks.len()
            ));
        }
        let o = &self.options;
        if !(o.attention_temperature.is_finite() && o.attention_temperature > 0.0) {
            return bad(format!(
                "options.attention_temperature is {}; it must be positive",
                o.attention_temperature
            ));
        }
        if !(o.value_penalty.is_finite() && o.value_penalty >= 0.0) {
            return bad(format!(
                "options.value_penalty is {}; it must be >= 0",
                o.value_penalty
            ));
        }
        for t in &self.tasks {
            if let Err(m) = check_labels(&t.labels) {
                return bad(format!("task {:?}: {m}", t.task));
            }
            if !(t.temperature.is_finite() && t.temperature > 0.0) {
                return bad(format!(
                    "task {:?} has temperature {}; it must be positive",
                    t.task, t.temperature
                ));
            }
            if t.heads.contains(&Answerer::Source) {
                match t.gate.and_then(|g| g.source).and_then(|s| s.best) {
                    Some(b) if b < k => {}
                    _ => {
                        return bad(format!(
                            "task {:?} stores a source head but names no fused adapter it reads",
                            t.task
                        ));
                    }
                }
            }
            match t.own {
                Some(own) if own >= k => {
                    return bad(format!(
                        "task {:?} names adapter {own} as its own, but there are {k}",
                        t.task
                    ));
                }
                None if o.residual || o.exclude_own => {
                    return bad(format!(
                        "task {:?} has no own adapter, which this fusion variant needs",
                        t.task
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn push_linear(out: &mut Vec<(String, Tensor<2>)>, name: &str, l: &Linear) {
    out.push((format!("{name}.weight"), l.weight.val().transpose()));
    if let Some(b) = &l.bias {
        out.push((format!("{name}.bias"), b.val().unsqueeze::<2>()));
    }
}

fn push_norm(out: &mut Vec<(String, Tensor<2>)>, name: &str, l: &LayerNorm) {
    out.push((format!("{name}.weight"), l.gamma.val().unsqueeze::<2>()));
    if let Some(b) = &l.beta {
        out.push((format!("{name}.bias"), b.val().unsqueeze::<2>()));
    }
}

fn named_tensors(f: &AttentionFusion, p: &str) -> Vec<(String, Tensor<2>)> {
    let mut v = Vec::new();
    for (s, n) in f.adapter_norms.iter().enumerate() {
        push_norm(&mut v, &format!("{p}.adapter_norms.{s}"), n);
    }
    push_norm(&mut v, &format!("{p}.base_norm"), &f.base_norm);
    push_linear(&mut v, &format!("{p}.attention.query"), &f.query);
    push_linear(&mut v, &format!("{p}.attention.key"), &f.key);
    push_linear(&mut v, &format!("{p}.attention.value"), &f.value);
    push_linear(&mut v, &format!("{p}.attention.out"), &f.out);
    push_norm(&mut v, &format!("{p}.attention_norm"), &f.attention_norm);
    push_linear(&mut v, &format!("{p}.base_proj"), &f.base_proj);
    push_norm(&mut v, &format!("{p}.fused_norm"), &f.fused_norm);
    push_linear(&mut v, &format!("{p}.classifier"), &f.classifier);
    if let Some(h) = &f.own_head {
        push_linear(&mut v, &format!("{p}.own_head"), h);
    }
    if let Some(m) = &f.mix {
        v.push((format!("{p}.mix"), m.val().unsqueeze::<2>()));
    }
    v
}

/// Serialises fusion layers and fresh heads (one of each per task of `manifest.tasks`; each
/// task's heads as its `heads` lists them) to the two files.
pub async fn to_files(
    manifest: &FusionManifest,
    layers: &[AttentionFusion],
    heads: &[AnswerHeads],
) -> Result<BTreeMap<String, Vec<u8>>> {
    if layers.len() != manifest.tasks.len() || heads.len() != manifest.tasks.len() {
        return Err(Error::Fusion(
            "one fusion layer and one set of heads per task is required".into(),
        ));
    }
    let mut host_tensors = Vec::new();
    for (i, f) in layers.iter().enumerate() {
        let mut named = named_tensors(f, &format!("task.{i}"));
        for &a in &manifest.tasks[i].heads {
            let head = heads[i].get(a).ok_or_else(|| {
                Error::Fusion(format!(
                    "task {i}: the {} head is listed but missing",
                    a.key()
                ))
            })?;
            push_linear(&mut named, &head_stem(i, a), &head.linear);
        }
        for (name, t) in named {
            let dims = t.dims();
            let shape = if dims[0] == 1 {
                vec![dims[1]]
            } else {
                dims.to_vec()
            };
            host_tensors.push((name, shape, host::floats(t).await?));
        }
        let task = &manifest.tasks[i];
        for &a in &task.out_of_fold {
            let rows = heads[i]
                .out_of_fold
                .as_ref()
                .and_then(|o| o.get(a))
                .ok_or_else(|| {
                    Error::Fusion(format!(
                        "task {i}: the {} out-of-fold rows are listed but missing",
                        a.key()
                    ))
                })?;
            let classes = task.labels.len();
            if rows.len() != task.out_of_fold_labels.len()
                || rows.iter().any(|r| r.len() != classes)
            {
                return Err(Error::Fusion(format!(
                    "task {i}: the {} out-of-fold rows do not match its {} labels of {classes} classes",
                    a.key(),
                    task.out_of_fold_labels.len()
                )));
            }
            let flat = rows.iter().flatten().copied().collect();
            host_tensors.push((out_of_fold_name(i, a), vec![rows.len(), classes], flat));
        }
    }
    let weights = tensorfile::write(
        host_tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), &s[..], &v[..])),
        &[("format", "pt")],
        WEIGHTS,
        Error::Fusion,
    )?;
    let manifest = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Fusion(e.to_string()))?;
    Ok(BTreeMap::from([
        (MANIFEST.to_string(), manifest),
        (WEIGHTS.to_string(), weights),
    ]))
}

/// Rebuilds the manifest, the fusion layers and the fresh heads from the two files, for a model
/// whose pooled vectors have `d_model` dimensions. The manifest is checked
/// ([`FusionManifest::check`]) before any layer is built.
pub fn from_files(
    files: &BTreeMap<String, Vec<u8>>,
    d_model: usize,
    device: &Device,
) -> Result<(FusionManifest, Vec<AttentionFusion>, Vec<AnswerHeads>)> {
    let manifest = files
        .get(MANIFEST)
        .ok_or_else(|| Error::Fusion(format!("no {MANIFEST}")))?;
    let manifest: FusionManifest =
        serde_json::from_slice(manifest).map_err(|e| Error::Fusion(format!("{MANIFEST}: {e}")))?;
    manifest.check(d_model)?;
    let weights = files
        .get(WEIGHTS)
        .ok_or_else(|| Error::Fusion(format!("no {WEIGHTS}")))?;
    let file = TensorFile::parse(weights, WEIGHTS, Error::Fusion)?;
    let mut layers = Vec::new();
    let mut all_heads = Vec::new();
    for (i, task) in manifest.tasks.iter().enumerate() {
        let mut heads = AnswerHeads::default();
        for &a in &task.heads {
            let stem = head_stem(i, a);
            let (classes, d) = (task.labels.len(), manifest.d_model);
            let w = file.read_shaped(&format!("{stem}.weight"), &[classes, d])?;
            let b = file.read_shaped(&format!("{stem}.bias"), &[classes])?;
            let head = ClassifierHead::from_torch(w, b, d, classes, 0.0, device);
            match a {
                Answerer::Frozen => heads.frozen = Some(head),
                Answerer::Source => heads.source = Some(head),
                Answerer::Lora | Answerer::Hybrid => {
                    return Err(Error::Fusion(format!(
                        "{MANIFEST}: task {:?} lists {:?} among its fresh heads",
                        task.task,
                        a.key()
                    )));
                }
            }
        }
        if !task.out_of_fold.is_empty() {
            let (rows, classes) = (task.out_of_fold_labels.len(), task.labels.len());
            if task.out_of_fold_labels.iter().any(|&l| l >= classes) {
                return Err(Error::Fusion(format!(
                    "{MANIFEST}: task {:?} has an out-of-fold class beyond its {classes} labels",
                    task.task
                )));
            }
            let mut evidence = OutOfFold {
                labels: task.out_of_fold_labels.clone(),
                probs: Vec::new(),
            };
            for &a in &task.out_of_fold {
                let v = file.read_shaped(&out_of_fold_name(i, a), &[rows, classes])?;
                let probs = v.chunks(classes.max(1)).map(<[f32]>::to_vec).collect();
                evidence.probs.push((a, probs));
            }
            heads.out_of_fold = Some(evidence);
        }
        all_heads.push(heads);
        if task.labels.len() < 2 {
            return Err(Error::Fusion(format!(
                "task {:?} has fewer than 2 labels",
                task.task
            )));
        }
        let k = manifest.adapters.len();
        let cfg = FusionConfig::new(manifest.d_model, k, task.labels.len())
            .with_heads(manifest.heads)
            .with_options(manifest.options);
        let mut f = match task.own {
            Some(own) if own < k => {
                let head = crate::model::ClassifierHead::init(
                    manifest.d_model,
                    task.labels.len(),
                    0.0,
                    0,
                    device,
                );
                cfg.init_for_task(0, own, &head, device)
            }
            Some(own) => {
                return Err(Error::Fusion(format!(
                    "{MANIFEST}: task {:?} names adapter {own} of {k} as its own",
                    task.task
                )));
            }
            None if cfg.needs_own() => {
                return Err(Error::Fusion(format!(
                    "{MANIFEST}: task {:?} has no own adapter, which this fusion variant needs",
                    task.task
                )));
            }
            None => cfg.init(0, device),
        };
        let expected: Vec<(String, Vec<usize>)> = named_tensors(&f, &format!("task.{i}"))
            .into_iter()
            .map(|(n, t)| {
                let d = t.dims();
                (n, if d[0] == 1 { vec![d[1]] } else { d.to_vec() })
            })
            .collect();
        let mut values: HashMap<String, TensorData> = HashMap::new();
        for (name, shape) in expected {
            let v = file.read_shaped(&name, &shape)?;
            let shape2 = if shape.len() == 1 {
                [1, shape[0]]
            } else {
                [shape[0], shape[1]]
            };
            values.insert(name, TensorData::new(v, shape2));
        }
        let p = format!("task.{i}");
        let mut take = |n: String| {
            values
                .remove(&n)
                .ok_or_else(|| Error::Fusion(format!("missing {n}")))
        };
        // A row vector (a bias, a norm's scale, `mix`) as the 1-D tensor it is.
        let vector = |d: TensorData| Tensor::<2>::from_data(d, device).squeeze_dim::<1>(0);
        let mut set_norm = |l: &mut LayerNorm, n: &str| -> Result<()> {
            l.gamma = Param::from_tensor(vector(take(format!("{n}.weight"))?));
            l.beta = Some(Param::from_tensor(vector(take(format!("{n}.bias"))?)));
            Ok(())
        };
        for (s, n) in f.adapter_norms.iter_mut().enumerate() {
            set_norm(n, &format!("{p}.adapter_norms.{s}"))?;
        }
        set_norm(&mut f.base_norm, &format!("{p}.base_norm"))?;
        set_norm(&mut f.attention_norm, &format!("{p}.attention_norm"))?;
        set_norm(&mut f.fused_norm, &format!("{p}.fused_norm"))?;
        let mut take = |n: String| {
            values
                .remove(&n)
                .ok_or_else(|| Error::Fusion(format!("missing {n}")))
        };
        let mut set_linear = |l: &mut Linear, n: &str| -> Result<()> {
            l.weight =
                Param::from_tensor(torch_linear_weight(take(format!("{n}.weight"))?, device));
            l.bias = Some(Param::from_tensor(vector(take(format!("{n}.bias"))?)));
            Ok(())
        };
        set_linear(&mut f.query, &format!("{p}.attention.query"))?;
        set_linear(&mut f.key, &format!("{p}.attention.key"))?;
        set_linear(&mut f.value, &format!("{p}.attention.value"))?;
        set_linear(&mut f.out, &format!("{p}.attention.out"))?;
        set_linear(&mut f.base_proj, &format!("{p}.base_proj"))?;
        set_linear(&mut f.classifier, &format!("{p}.classifier"))?;
        if let Some(h) = f.own_head.as_mut() {
            set_linear(h, &format!("{p}.own_head"))?;
        }
        if f.mix.is_some() {
            f.mix = Some(Param::from_tensor(vector(take(format!("{p}.mix"))?)));
        }
        layers.push(f);
    }
    Ok((manifest, layers, all_heads))
}
