//! The gate's relatedness check (docs/design.md §1.6). Knowledge sharing can only pay where
//! another task's adapter knows something about this task that its own adapter does not. So
//! before the hybrid may answer, each other fused adapter gets a fresh linear head (the frozen
//! probe's trainer, [`train_probe`]) on its vectors of the rows the own LoRA trained on, and so
//! does the frozen base (recorded beside it); all are scored on the rows the gate checks: each
//! held-out half, or each fold's left-out rows. The hybrid may answer only where the best of the
//! adapters' heads leads the own LoRA there by [`SOURCE_LEAD_ROWS`] rows or more
//! ([`SourceCheck`], [`GateCheck::sources_related`]).
//!
//! What it leaves out: combinations of sources (the gate checks the fusion itself).

use burn::tensor::Device;

use super::{HeldOut, Pooled};
use crate::error::{Error, Result};
use crate::experiment::compare::{probability_rows, train_probe};
use crate::experiment::target::FusionTarget;
use crate::fusion::files::{AnswerHeads, SourceCheck, better};
#[cfg(doc)]
use crate::fusion::files::{GateCheck, SOURCE_LEAD_ROWS};
use crate::infer::Answerer;
use crate::train::TrainConfig;
use crate::train::calibration::choose_temperature;
use crate::train::stage2::FusionCache;

/// Rows a fresh head fits on, with their classes, and the rows it is scored on (in the order
/// the gate pools them).
struct Part<'a> {
    fit: &'a FusionCache,
    fit_y: &'a [usize],
    outs: Vec<&'a HeldOut>,
}

/// The fresh heads of the relatedness check, pooled over the gate's rows.
struct Probes {
    /// The frozen base's.
    frozen: Pooled,
    /// Every adapter's but the own one's: `(adapter slot, probability rows)`.
    sources: Vec<(usize, Pooled)>,
}

/// The fresh heads on the base's and every adapter but `own`'s vectors, fitted and scored part
/// by part and pooled in part order. They train with the frozen probe's settings derived from
/// `cfg`.
async fn source_probes(
    parts: &[Part<'_>],
    own: usize,
    classes: usize,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<Probes> {
    // One head per part on `vectors(fit)`, scored on `vectors(out)`.
    let probe = async |vectors: &dyn Fn(&FusionCache) -> Option<burn::tensor::Tensor<2>>| {
        let missing = || Error::Fusion("an adapter slot is missing from the gate's rows".into());
        let mut pooled = Pooled::default();
        for p in parts {
            let x = vectors(p.fit).ok_or_else(missing)?;
            let head = train_probe(x, p.fit_y, classes, cfg, device).await?;
            for out in &p.outs {
                let v = vectors(&out.cache).ok_or_else(missing)?;
                pooled.add(probability_rows(head.forward(v, false)).await?, &out.labels);
            }
        }
        Ok::<_, Error>(pooled)
    };
    let frozen = probe(&|c| Some(c.base.clone())).await?;
    let k = parts.first().map_or(0, |p| p.fit.adapters.dims()[1]);
    let mut sources = Vec::with_capacity(k.saturating_sub(1));
    for slot in (0..k).filter(|&s| s != own) {
        sources.push((slot, probe(&|c| c.adapter(slot)).await?));
    }
    Ok(Probes { frozen, sources })
}

/// The relatedness check of `target` (own adapter slot `own`) on the gate's rows: each fold's
/// left-out rows with cross-validation (`cross_validated`), else each of the held-out `halves`
/// (fitted on all training rows). With it, the frozen base's head's and the best source's head's
/// probabilities on those rows, pooled as the gate pools them.
pub(in crate::experiment) async fn relatedness(
    target: &FusionTarget,
    own: usize,
    halves: Option<&[HeldOut]>,
    cross_validated: bool,
) -> Result<(SourceCheck, Vec<(Answerer, Pooled)>)> {
    let parts: Vec<Part> = match (cross_validated, target.cv.as_deref(), halves) {
        (true, Some(cv), _) => cv
            .iter()
            .map(|f| Part {
                fit: &f.fit,
                fit_y: &f.fit_y,
                outs: vec![&f.out],
            })
            .collect(),
        (false, _, Some(halves)) => vec![Part {
            fit: &target.cache,
            fit_y: &target.y,
            outs: halves.iter().collect(),
        }],
        _ => Vec::new(),
    };
    let device = target.cache.base.device();
    let classes = target.labels.len();
    let probes = source_probes(&parts, own, classes, &target.cfg, &device).await?;
    let check = best_source(&probes);
    let best = check.best;
    let mut pooled = vec![(Answerer::Frozen, probes.frozen)];
    pooled.extend(
        probes
            .sources
            .into_iter()
            .filter(|(slot, _)| Some(*slot) == best)
            .map(|(_, p)| (Answerer::Source, p)),
    );
    Ok((check, pooled))
}

/// The best of the sources' heads (accuracy, then log-loss; the first on ties) beside the
/// frozen base's: what the gate checks, with each one's temperature chosen on the same rows.
fn best_source(probes: &Probes) -> SourceCheck {
    let mut best: Option<(usize, (f64, f64), &Pooled)> = None;
    for (slot, p) in &probes.sources {
        let s = p.score();
        if best.is_none_or(|(_, b, _)| better(s, b)) {
            best = Some((*slot, s, p));
        }
    }
    let temperature = |p: &Pooled| choose_temperature(&p.probs, &p.labels);
    let (frozen_accuracy, frozen_nll) = probes.frozen.score();
    SourceCheck {
        sources: probes.sources.len(),
        best: best.map(|(slot, _, _)| slot),
        accuracy: best.map_or(0.0, |(_, (a, _), _)| a),
        nll: best.map_or(0.0, |(_, (_, l), _)| l),
        temperature: best.map_or(1.0, |(_, _, p)| temperature(p)),
        frozen_accuracy,
        frozen_nll,
        frozen_temperature: temperature(&probes.frozen),
    }
}

/// The fresh heads the task may answer with, fitted on all of `target`'s training rows with the
/// frozen probe's settings: on the base's vectors, and on those of the gate's best other adapter
/// (`check.best`).
pub(in crate::experiment) async fn answer_heads(
    target: &FusionTarget,
    check: &SourceCheck,
) -> Result<AnswerHeads> {
    let device = target.cache.base.device();
    let classes = target.labels.len();
    let fit = |x| train_probe(x, &target.y, classes, &target.cfg, &device);
    let frozen = fit(target.cache.base.clone()).await?;
    let source = match check.best.and_then(|b| target.cache.adapter(b)) {
        Some(x) => Some(fit(x).await?),
        None => None,
    };
    Ok(AnswerHeads {
        frozen: Some(frozen),
        source,
        out_of_fold: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::block_on;
    use burn::tensor::{Tensor, TensorData};

    /// Rows of class `y[i]` where adapter slot 1 points along its class and slots 0 and 2 are
    /// noise that says nothing about it.
    fn cache(y: &[usize], device: &Device) -> FusionCache {
        let (n, d) = (y.len(), 4);
        let mut v = Vec::with_capacity(n * 3 * d);
        for (i, &c) in y.iter().enumerate() {
            let noise = |j: usize| ((i * 7 + j * 3) % 5) as f32 / 5.0 - 0.4;
            for slot in 0..3 {
                for j in 0..d {
                    v.push(match slot {
                        1 => (j == c) as u8 as f32 * 2.0 - 1.0,
                        _ => noise(j + slot),
                    });
                }
            }
        }
        FusionCache {
            base: Tensor::zeros([n, d], device),
            adapters: Tensor::from_data(TensorData::new(v, [n, 3, d]), device),
        }
    }

    #[test]
    fn the_source_that_separates_the_classes_is_the_best_and_the_own_slot_is_skipped() {
        let device = Device::flex();
        let y: Vec<usize> = (0..24).map(|i| i % 2).collect();
        let fit = cache(&y, &device);
        let out_y = vec![0, 1, 1, 0, 1, 0];
        let out = HeldOut {
            cache: cache(&out_y, &device),
            labels: out_y.clone(),
        };
        let parts = [Part {
            fit: &fit,
            fit_y: &y,
            outs: vec![&out, &out],
        }];
        let cfg = TrainConfig::default();
        let probes = block_on(source_probes(&parts, 0, 2, &cfg, &device)).unwrap();
        // Slot 0 is the own adapter: only slots 1 and 2 are sources.
        let slots: Vec<usize> = probes.sources.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots, [1, 2]);
        // Each head pooled over both outs, in order.
        let both = [out_y.clone(), out_y].concat();
        assert_eq!(probes.sources[0].1.labels, both);
        assert_eq!(probes.frozen.labels, both);
        let check = best_source(&probes);
        assert_eq!(check.sources, 2);
        assert_eq!(check.best, Some(1));
        assert_eq!(check.accuracy, 1.0);
        // The base's vectors are all zero: its head can only guess one class.
        assert_eq!(check.frozen_accuracy, 0.5);
        // No sources: nothing to share.
        let none = best_source(&Probes {
            frozen: probes.frozen,
            sources: Vec::new(),
        });
        assert_eq!((none.sources, none.best, none.accuracy), (0, None, 0.0));
    }
}
