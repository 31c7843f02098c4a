//! The fusion job (docs/design.md §1.3): each target task's training rows encoded once by the base
//! and every adapter ([`FusionTarget`], in `target`), the fusion trained per task (the default) or shared by
//! all tasks through the driver, and the manifest that records what was fused. The tasks'
//! per-task runs train side by side ([`train_runs`]). The page, `lorafuse fuse`, `bench` and
//! `bench-transfer` all fuse through [`train_fusion`] / [`train_runs`] / [`train_layer`].

pub use super::target::FusionTarget;

use super::gate::sources::{answer_heads, relatedness};
use super::gate::{CvCurve, HeldOut, SelectOnHeldOut};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fusion::files::{
    AnswerHeads, FUSION_FORMAT, FusedAdapter, FusedTask, FusionManifest, GateCheck, OutOfFold,
};
use crate::fusion::{AttentionFusion, FusionConfig, FusionOptions};
use crate::infer::Answerer;
use crate::model::ClassifierHead;
use crate::train::stage2::{self, FusionCache, FusionTrainer, VectorSource};
use crate::train::together::drive_together;
use crate::train::{Observer, Outcome, TrainConfig, drive};
use burn::tensor::Device;

/// The job name of a shared fusion run (per-task runs are named after their task).
pub const SHARED_JOB: &str = "all tasks (shared)";

/// The fusion's training settings from a task's stage-1 settings (30 epochs at the head's
/// learning rate, [`stage2::default_config`]), with optional overrides.
pub fn fusion_train_config(
    stage1: &TrainConfig,
    epochs: Option<usize>,
    lr: Option<f64>,
) -> TrainConfig {
    let mut cfg = stage2::default_config(stage1);
    if let Some(e) = epochs {
        cfg.epochs = e;
    }
    if let Some(lr) = lr {
        cfg.head_lr = lr;
    }
    cfg
}

/// The shape of the fusion to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusionSpec {
    /// Attention heads (default 4).
    pub heads: usize,
    /// One fusion shared by all tasks with a head per task, instead of one per task (the
    /// paper's variant only: a shared layer has no own adapter).
    pub shared: bool,
    /// The variant ([`FusionOptions::named`]).
    pub options: FusionOptions,
    /// Select the epoch on the held-out rows and let each task predict with its own LoRA when
    /// the hybrid does not beat it there (docs/design.md §1.6). Needs held-out rows and the own
    /// head; without them the last epoch and the hybrid are used.
    pub gate: bool,
    /// Early stopping where an epoch is selected (held-out rows or cross-validation): a run ends
    /// `patience` epochs after its best one without a better one (default
    /// [`Self::DEFAULT_PATIENCE`]); `None` trains every epoch (the paper's procedure).
    pub patience: Option<usize>,
}

impl FusionSpec {
    /// The default variant, chosen on the benchmarks' dev rows (docs/results.md).
    pub const DEFAULT_VARIANT: &'static str = "residual";

    /// Epochs without a better selection score before a run ends (docs/results.md).
    pub const DEFAULT_PATIENCE: usize = 5;
}

impl Default for FusionSpec {
    fn default() -> Self {
        Self {
            // The fusion layer's own default (4, as the authors).
            heads: FusionConfig::new(384, 1, 2).heads,
            shared: false,
            options: FusionOptions::named(Self::DEFAULT_VARIANT).unwrap_or_default(),
            gate: true,
            patience: Some(Self::DEFAULT_PATIENCE),
        }
    }
}

/// What the caller of [`train_fusion`] sees: every step of every run (as an [`Observer`]), and
/// the start of each run.
pub trait FusionObserver: Observer<FusionTrainer> {
    /// A run named `job` (a task's name, or [`SHARED_JOB`]) of `total_steps` starts.
    fn start(&mut self, _job: &str, _total_steps: usize) {}
}

impl FusionObserver for () {}

/// A trained fusion and its manifest.
pub struct FusedModel {
    /// What was fused: adapters in order, the target tasks that got a layer.
    pub manifest: FusionManifest,
    /// One layer per task of `manifest.tasks`.
    pub layers: Vec<AttentionFusion>,
    /// The fresh heads of each task of `manifest.tasks`.
    pub heads: Vec<AnswerHeads>,
}

/// A trained per-task layer with the gate's verdict.
pub struct TrainedLayer {
    /// The layer (of the selected epoch when held-out rows exist).
    pub layer: AttentionFusion,
    /// The layer after the last epoch trained: every epoch (the paper's procedure) unless early
    /// stopping ended the run at `epochs_trained`.
    pub last: AttentionFusion,
    /// Epochs the layer trained.
    pub epochs_trained: usize,
    /// The hybrid against the own LoRA on the held-out rows (none without them or the own head).
    pub gate: Option<GateCheck>,
    /// The fresh heads the task may answer with (with the gate's relatedness check; none
    /// without it), and every candidate's probabilities of the rows the gate checked, from
    /// models that neither trained on them nor chose their epoch on them: with cross-validation
    /// every training row out of fold (the hybrid's at the kept epoch; its temperature is chosen
    /// on them), else each held-out half with the hybrid of the epoch the other half chose.
    pub heads: AnswerHeads,
}

impl TrainedLayer {
    /// The model the task answers with: the gate's choice ([`GateCheck::answer`]); the hybrid
    /// with the gate off or without the gate's rows.
    pub fn answer(&self, gate_on: bool) -> Answerer {
        match (gate_on, &self.gate) {
            (true, Some(g)) => g.answer(),
            _ => Answerer::Hybrid,
        }
    }

    /// Whether the task answers with the hybrid ([`Self::answer`]).
    pub fn use_hybrid(&self, gate_on: bool) -> bool {
        self.answer(gate_on) == Answerer::Hybrid
    }

    /// The temperature chosen on the out-of-fold rows of the cross-validated gate
    /// ([`crate::train::calibration::choose_temperature`]): every training row instead of the
    /// few held-out ones. `None` without cross-validation.
    pub fn out_of_fold_temperature(&self) -> Option<f64> {
        self.out_of_fold_temperature_of(Answerer::Hybrid)
    }

    /// The temperature of `candidate`'s probabilities chosen on the cross-validated gate's
    /// out-of-fold rows; `None` without cross-validation.
    pub fn out_of_fold_temperature_of(&self, candidate: Answerer) -> Option<f64> {
        if self.gate.is_none_or(|g| g.folds == 0) {
            return None;
        }
        let o = self.heads.out_of_fold.as_ref()?;
        let probs = o.get(candidate)?;
        Some(crate::train::calibration::choose_temperature(
            probs, &o.labels,
        ))
    }
}

/// Trains one per-task fusion layer (`config`) on `target`'s cached rows ([`train_runs`] with
/// one run, named after the task).
pub async fn train_layer<O: FusionObserver>(
    target: &FusionTarget,
    config: &FusionConfig,
    patience: Option<usize>,
    device: &Device,
    observer: &mut O,
) -> Result<(TrainedLayer, Outcome)> {
    let runs = [(target, config.clone())];
    let (mut layers, outcome) = train_runs(&runs, patience, device, &target.name, observer).await?;
    let layer = layers
        .pop()
        .ok_or_else(|| Error::Fusion("the fusion run returned no layer".into()))?;
    Ok((layer, outcome))
}

/// Trains per-task fusion layers, one per run (a target and the layer to train for it), all
/// side by side ([`drive_together`]): first the cross-validation folds of every run that has
/// them ([`FusionTarget::cv`]), then every run's layer on all its rows. With held-out rows (or
/// folds), the epoch (0 = untrained, for the residual variants exactly the own LoRA) that scores
/// best there is kept and compared with the own LoRA. With `patience` (0 counts as none), each run
/// (and each run's folds, on their pooled curve) ends `patience` epochs after its best one without
/// a better one, and a run whose epoch cross-validation chose ends at that epoch; without
/// selection rows every epoch trains. `observer` sees the joint progress as the job `job` and is
/// asked whether to stop between rounds; a stopped call returns every layer as trained and
/// selected so far, in run order.
pub async fn train_runs<O: FusionObserver>(
    runs: &[(&FusionTarget, FusionConfig)],
    patience: Option<usize>,
    device: &Device,
    job: &str,
    observer: &mut O,
) -> Result<(Vec<TrainedLayer>, Outcome)> {
    // The own adapter where the variant uses it (the residual variants, the gate).
    fn own<'t>(t: &'t FusionTarget, c: &FusionConfig) -> Option<(usize, &'t ClassifierHead)> {
        match c.needs_own() {
            true => t.own.as_ref().map(|(o, h)| (*o, h)),
            false => None,
        }
    }
    // 0 would stop before the first epoch: taken as no early stopping.
    let patience = patience.filter(|&p| p > 0);
    // Cross-validation curves of the runs that have folds.
    let with_folds: Vec<usize> = (0..runs.len())
        .filter(|&i| {
            let (t, c) = &runs[i];
            own(t, c).is_some() && t.cv.as_ref().is_some_and(|f| !f.is_empty())
        })
        .collect();
    // Every run's layer on all its rows (trained after the folds).
    let fulls = runs
        .iter()
        .map(|(t, c)| {
            let source = VectorSource::Cached(t.cache.clone());
            FusionTrainer::new(source, &t.y, c, own(t, c), &t.cfg, device)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut cvs: Vec<Option<CvCurve>> = runs.iter().map(|_| None).collect();
    if !with_folds.is_empty() {
        let jobs: Vec<_> = with_folds
            .iter()
            .filter_map(|&i| {
                let (t, c) = &runs[i];
                let folds = t.cv.as_deref()?;
                let (o, _) = own(t, c)?;
                Some((folds, o, c, &t.cfg))
            })
            .collect();
        let cv_job = format!("{job} (cross-validated check)");
        match CvCurve::run_all(&jobs, patience, device, &cv_job, observer).await? {
            Some(curves) => {
                for (&i, c) in with_folds.iter().zip(curves) {
                    cvs[i] = Some(c);
                }
            }
            None => {
                // Stopped before any layer trained: every layer as initialised, no gate.
                let layers = fulls
                    .into_iter()
                    .map(|tr| {
                        let layer = tr.finish();
                        TrainedLayer {
                            last: layer.clone(),
                            layer,
                            epochs_trained: 0,
                            gate: None,
                            heads: AnswerHeads::default(),
                        }
                    })
                    .collect();
                return Ok((layers, Outcome::Cancelled));
            }
        }
    }
    // With cross-validation the held-out rows neither select nor gate (they fit nothing here).
    let halves: Vec<Option<Vec<HeldOut>>> = runs
        .iter()
        .zip(&cvs)
        .map(|((t, _), cv)| match cv {
            Some(_) => None,
            None => t.held_out_halves(),
        })
        .collect();
    let mut trainers = Vec::with_capacity(runs.len());
    for ((tr, cv), halves) in fulls.into_iter().zip(&cvs).zip(&halves) {
        let keep = cv.as_ref().map(CvCurve::best_epoch);
        let mut select = SelectOnHeldOut::new(halves.as_deref(), keep, patience);
        select.offer(tr.current(), 0).await?;
        trainers.push((tr, select));
    }
    observer.start(job, trainers.iter().map(|(t, _)| t.total_steps()).sum());
    let outcome = drive_together(&mut trainers, observer).await?;
    let mut layers = Vec::with_capacity(runs.len());
    for (((t, _), cv), (tr, select)) in runs.iter().zip(cvs).zip(trainers) {
        layers.push(verdict(t, tr.finish(), select, cv).await?);
    }
    Ok((layers, outcome))
}

/// A run's layer and gate: the selected epoch's layer (the last epoch's without one), compared
/// with the task's own LoRA out of fold (with cross-validation `cv`) or on the held-out rows,
/// each half by the epoch the other half selected ([`SelectOnHeldOut::gate`]).
async fn verdict(
    target: &FusionTarget,
    last: AttentionFusion,
    select: SelectOnHeldOut<'_>,
    cv: Option<CvCurve>,
) -> Result<TrainedLayer> {
    let epochs_trained = select.seen;
    // Out-of-fold or held-out: (hybrid, own LoRA) on the same rows, and the folds.
    let evidence = match (&select.best, &target.own, cv) {
        (Some((_, epoch, _)), Some(_), Some(mut c)) => {
            let hybrid = std::mem::take(&mut c.epochs[*epoch]);
            Some((hybrid, c.lora, c.folds))
        }
        (Some(_), Some((o, head)), None) => select.gate(*o, head).await?.map(|(h, l)| (h, l, 0)),
        _ => None,
    };
    // The relatedness check on the same rows (docs/design.md §1.6).
    let (source, fresh) = match (&evidence, &target.own) {
        (Some((_, _, folds)), Some((own, _))) => {
            let (check, fresh) = relatedness(target, *own, select.rows, *folds > 0).await?;
            (Some(check), fresh)
        }
        _ => (None, Vec::new()),
    };
    let (layer, epoch) = match select.best {
        Some((_, epoch, layer)) => (layer, epoch),
        None => (last.clone(), epochs_trained),
    };
    let gate = evidence.as_ref().map(|(h, l, folds)| {
        let (hs, ls) = (h.score(), l.score());
        let (only_hybrid, only_lora) = h.discordant(l);
        GateCheck {
            rows: l.rows(),
            hybrid_accuracy: hs.0,
            hybrid_nll: hs.1,
            lora_accuracy: ls.0,
            lora_nll: ls.1,
            epoch,
            folds: *folds,
            only_hybrid,
            only_lora,
            source,
        }
    });
    let mut heads = match &source {
        Some(s) => answer_heads(target, s).await?,
        None => AnswerHeads::default(),
    };
    // Every candidate's rows as the gate scored them are kept (out of fold, or each held-out half
    // with the hybrid of the epoch the other half chose): the report scores every candidate on
    // them, and with cross-validation the kept epoch's choose the hybrid's temperature.
    heads.out_of_fold = match evidence {
        Some((h, l, _)) => {
            let mut probs = vec![(Answerer::Lora, l.probs)];
            probs.extend(fresh.into_iter().map(|(a, p)| (a, p.probs)));
            probs.push((Answerer::Hybrid, h.probs));
            Some(OutOfFold {
                labels: h.labels,
                probs,
            })
        }
        None => None,
    };
    Ok(TrainedLayer {
        layer,
        last,
        epochs_trained,
        gate,
        heads,
    })
}

/// Trains the fusion over `k` adapters for every target: one layer per task, all side by side
/// ([`train_runs`]), or with `spec.shared` one fusion for all (the paper's variant, with the
/// first target's settings) cut into per-task layers.
pub async fn train_layers<O: FusionObserver>(
    engine: &Engine,
    k: usize,
    targets: &[FusionTarget],
    spec: &FusionSpec,
    observer: &mut O,
) -> Result<(Vec<TrainedLayer>, Outcome)> {
    let d = engine.encoder.config.hidden_size;
    let first = targets
        .first()
        .ok_or_else(|| Error::Fusion("the fusion needs at least one target task".into()))?;
    let config = |classes| {
        FusionConfig::new(d, k, classes)
            .with_heads(spec.heads)
            .with_options(spec.options)
    };
    if spec.shared {
        let parts: Vec<(&FusionCache, &[usize], usize)> = targets
            .iter()
            .map(|t| (&t.cache, t.y.as_slice(), t.labels.len()))
            .collect();
        let paper = config(2).with_options(FusionOptions::paper());
        let mut t =
            FusionTrainer::new_shared_from_tasks(&parts, &paper, &first.cfg, &engine.device)?;
        observer.start(SHARED_JOB, t.total_steps());
        let outcome = drive(&mut t, observer).await?;
        let layers = t.finish_shared()?;
        let layers = layers
            .into_iter()
            .map(|layer| TrainedLayer {
                last: layer.clone(),
                layer,
                epochs_trained: first.cfg.epochs,
                gate: None,
                heads: AnswerHeads::default(),
            })
            .collect();
        return Ok((layers, outcome));
    }
    let runs: Vec<(&FusionTarget, FusionConfig)> = targets
        .iter()
        .map(|t| (t, config(t.labels.len())))
        .collect();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let job = names.join(", ");
    train_runs(&runs, spec.patience, &engine.device, &job, observer).await
}

/// Trains the fusion over `adapters` for every target ([`train_layers`]), fits each layer's
/// temperature on its target's held-out rows, and records it in a manifest that lists exactly the
/// tasks that got a layer, with each task's gate.
pub async fn train_fusion<O: FusionObserver>(
    engine: &Engine,
    adapters: &[FusedAdapter],
    targets: &[FusionTarget],
    spec: &FusionSpec,
    observer: &mut O,
) -> Result<(FusedModel, Outcome)> {
    let (trained, outcome) = train_layers(engine, adapters.len(), targets, spec, observer).await?;
    let mut tasks = Vec::with_capacity(trained.len());
    let mut layers = Vec::with_capacity(trained.len());
    let mut heads = Vec::with_capacity(trained.len());
    for (t, tl) in targets.iter().zip(trained) {
        let answer = tl.answer(spec.gate);
        tasks.push(FusedTask {
            task: t.name.clone(),
            labels: t.labels.clone(),
            temperature: match tl.out_of_fold_temperature() {
                Some(t) => t,
                None => t.fit_temperature(&tl.layer).await?,
            },
            lora_temperature: tl.out_of_fold_temperature_of(Answerer::Lora),
            own: tl.layer.own,
            use_hybrid: answer == Answerer::Hybrid,
            gate: tl.gate,
            answer: Some(answer),
            heads: tl.heads.kinds(),
            out_of_fold_labels: tl
                .heads
                .out_of_fold
                .as_ref()
                .map(|o| o.labels.clone())
                .unwrap_or_default(),
            out_of_fold: tl
                .heads
                .out_of_fold
                .as_ref()
                .map(OutOfFold::candidates)
                .unwrap_or_default(),
        });
        layers.push(tl.layer);
        heads.push(tl.heads);
    }
    let options = match spec.shared {
        true => FusionOptions::paper(),
        false => spec.options,
    };
    let manifest = FusionManifest {
        format: FUSION_FORMAT.into(),
        base_model_sha256: engine.model_sha256.clone(),
        base_model: engine.name.clone(),
        d_model: engine.encoder.config.hidden_size,
        heads: spec.heads,
        adapters: adapters.to_vec(),
        tasks,
        shared: spec.shared,
        options,
    };
    Ok((
        FusedModel {
            manifest,
            layers,
            heads,
        },
        outcome,
    ))
}

#[cfg(test)]
mod tests;
