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
use crate::limits::{MAX_FUSION_HEADS, MAX_TASKS, check_labels};
use crate::tensorfile::{self, TensorFile};

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
}

impl FusedTask {
    /// What the gate decided, in words: which prediction the task answers with, and why
    /// (`adapters`: the fused adapters, in fusion order, to name the best source).
    pub fn describe_gate(&self, adapters: &[FusedAdapter]) -> String {
        let Some(g) = &self.gate else {
            return match self.use_hybrid {
                true => "answers with the hybrid (no held-out check was made: a shared fusion, or no held-out rows)".into(),
                false => "answers with its own LoRA".into(),
            };
        };
        let used = match self.use_hybrid {
            true => "the hybrid",
            false => "its own LoRA",
        };
        let rows = match g.folds {
            // Since the twelfth session each half of them is checked with the epoch the other
            // half chose (docs/design.md §1.6); before, half of them checked what the other chose.
            0 => format!(
                "{} held-out examples (none both choosing the epoch and checking it)",
                g.rows
            ),
            k => format!(
                "its {} training examples, cross-validated over {k} folds,",
                g.rows
            ),
        };
        // Older files have no counts (both 0): nothing is said about them.
        let disagreements = match g.only_hybrid + g.only_lora {
            0 => String::new(),
            _ => format!(
                "; {} examples only the hybrid got right, {} only LoRA (exact McNemar p = {:.2})",
                g.only_hybrid,
                g.only_lora,
                g.p_value()
            ),
        };
        let related = match g.source {
            None => String::new(),
            Some(SourceCheck { best: None, .. }) => {
                "; no other task's adapter was fused, so there is nothing to share".into()
            }
            Some(SourceCheck {
                best: Some(b),
                accuracy,
                frozen_accuracy,
                ..
            }) => {
                let name = adapters.get(b).map_or("?", |a| a.task.as_str());
                let verdict = match g.sources_related() {
                    true => "a related task".to_string(),
                    false => format!(
                        "no other task leads its own LoRA by {SOURCE_LEAD_ROWS} examples or more"
                    ),
                };
                format!(
                    "; the best other task's adapter with a fresh head ({name}) scored {:.1} %, \
                     the frozen model with one {:.1} %: {verdict}",
                    100.0 * accuracy,
                    100.0 * frozen_accuracy
                )
            }
        };
        format!(
            "answers with {used}: on {rows} the hybrid (epoch {}) scored {:.1} % \
             (log-loss {:.3}), the task's own LoRA {:.1} % (log-loss {:.3}){disagreements}\
             {related}",
            g.epoch,
            100.0 * g.hybrid_accuracy,
            g.hybrid_nll,
            100.0 * g.lora_accuracy,
            g.lora_nll
        )
    }
}

/// The hybrid against the task's own LoRA on the task's held-out rows, as the gate saw them
/// (docs/design.md §1.6): the hybrid is used only when it beats LoRA there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    /// Held-out rows compared on.
    pub rows: usize,
    /// The selected hybrid's accuracy on them.
    pub hybrid_accuracy: f64,
    /// Its mean negative log-likelihood.
    pub hybrid_nll: f64,
    /// The own LoRA's accuracy on them.
    pub lora_accuracy: f64,
    /// Its mean negative log-likelihood.
    pub lora_nll: f64,
    /// The fusion epoch selected on them (0: the untrained layer).
    pub epoch: usize,
    /// Folds of the cross-validated gate: the rows are the task's training rows, each scored by
    /// models trained on the other folds (0: the rows are held-out rows; absent in older files).
    #[serde(default)]
    pub folds: usize,
    /// Rows only the hybrid got right (0 in older files).
    #[serde(default)]
    pub only_hybrid: usize,
    /// Rows only the own LoRA got right (0 in older files).
    #[serde(default)]
    pub only_lora: usize,
    /// The relatedness check on the same rows: the best fresh head on another task's adapter
    /// (absent in older files, whose decision stands without it).
    #[serde(default)]
    pub source: Option<SourceCheck>,
}

/// Rows by which the best other task's adapter, with a fresh head, must lead the own LoRA on
/// the gate's rows for the hybrid to be considered (docs/design.md §1.6): a lead of one row is
/// what the best of several noisy heads shows by chance.
pub const SOURCE_LEAD_ROWS: usize = 2;

/// The gate's relatedness check (docs/design.md §1.6): each other fused adapter, and the frozen
/// base, with a fresh linear head trained on the rows the own LoRA trained on, scored on the
/// gate's rows. Knowledge sharing can only pay where another task's adapter reads the task
/// better than its own adapter does ([`GateCheck::sources_related`]); the base's head is recorded
/// beside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceCheck {
    /// Other tasks' adapters checked.
    pub sources: usize,
    /// The best one's position among the fused adapters (none without sources).
    pub best: Option<usize>,
    /// Its accuracy on the gate's rows (0 without sources).
    pub accuracy: f64,
    /// The frozen base's fresh head's accuracy on the same rows.
    pub frozen_accuracy: f64,
}

impl GateCheck {
    /// Two-sided exact McNemar p-value of the hybrid against LoRA on the gate's rows (1 when they
    /// disagree on none, or the counts are absent).
    pub fn p_value(&self) -> f64 {
        crate::train::uncertainty::mcnemar_exact(self.only_hybrid, self.only_lora)
    }

    /// Whether the hybrid beats LoRA: strictly more of the compared rows right, where another
    /// task's adapter is related ([`Self::sources_related`]). A tie keeps the task's own LoRA: the
    /// hybrid has to show it classifies better, and an equal count with a lower log-loss let
    /// small, useless fusion moves through (docs/results.md, the CoLA control).
    pub fn hybrid_wins(&self) -> bool {
        self.hybrid_accuracy > self.lora_accuracy + 1e-12 && self.sources_related()
    }

    /// Whether another task's adapter reads the task better than its own LoRA on the gate's rows:
    /// with a fresh head, at least [`SOURCE_LEAD_ROWS`] more of them right ([`SourceCheck`]).
    /// Without sources it is not; files from before the check say nothing and pass.
    pub fn sources_related(&self) -> bool {
        self.source.is_none_or(|s| {
            let lead = (s.accuracy - self.lora_accuracy) * self.rows as f64;
            s.best.is_some() && lead > SOURCE_LEAD_ROWS as f64 - 1e-6
        })
    }
}

/// `a` beats `b`, each (accuracy, NLL): higher accuracy, or equal accuracy and lower NLL.
pub fn better(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 > b.0 + 1e-12 || ((a.0 - b.0).abs() <= 1e-12 && a.1 < b.1 - 1e-9)
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

/// Serialises fusion layers (one per task of `manifest.tasks`) to the two files.
pub async fn to_files(
    manifest: &FusionManifest,
    layers: &[AttentionFusion],
) -> Result<BTreeMap<String, Vec<u8>>> {
    if layers.len() != manifest.tasks.len() {
        return Err(Error::Fusion(
            "one fusion layer per task is required".into(),
        ));
    }
    let mut host_tensors = Vec::new();
    for (i, f) in layers.iter().enumerate() {
        for (name, t) in named_tensors(f, &format!("task.{i}")) {
            let dims = t.dims();
            let shape = if dims[0] == 1 {
                vec![dims[1]]
            } else {
                dims.to_vec()
            };
            host_tensors.push((name, shape, host::floats(t).await?));
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

/// Rebuilds the manifest and the fusion layers from the two files, for a model whose pooled
/// vectors have `d_model` dimensions. The manifest is checked ([`FusionManifest::check`]) before
/// any layer is built.
pub fn from_files(
    files: &BTreeMap<String, Vec<u8>>,
    d_model: usize,
    device: &Device,
) -> Result<(FusionManifest, Vec<AttentionFusion>)> {
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
    for (i, task) in manifest.tasks.iter().enumerate() {
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
        let mut values: HashMap<String, Tensor<2>> = HashMap::new();
        for (name, shape) in expected {
            let v = file.read_shaped(&name, &shape)?;
            let shape2 = if shape.len() == 1 {
                [1, shape[0]]
            } else {
                [shape[0], shape[1]]
            };
            values.insert(name, Tensor::from_data(TensorData::new(v, shape2), device));
        }
        let p = format!("task.{i}");
        let mut take = |n: String| {
            values
                .remove(&n)
                .ok_or_else(|| Error::Fusion(format!("missing {n}")))
        };
        let mut set_norm = |l: &mut LayerNorm, n: &str| -> Result<()> {
            l.gamma = Param::from_tensor(take(format!("{n}.weight"))?.squeeze_dim(0));
            l.beta = Some(Param::from_tensor(
                take(format!("{n}.bias"))?.squeeze_dim(0),
            ));
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
            l.weight = Param::from_tensor(take(format!("{n}.weight"))?.transpose());
            l.bias = Some(Param::from_tensor(
                take(format!("{n}.bias"))?.squeeze_dim(0),
            ));
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
            f.mix = Some(Param::from_tensor(take(format!("{p}.mix"))?.squeeze_dim(0)));
        }
        layers.push(f);
    }
    Ok((manifest, layers))
}
