//! The gate's relatedness check (docs/design.md §1.6). Knowledge sharing can only pay where
//! another task's adapter carries signal for this task, so before the hybrid may answer, each
//! other fused adapter gets a fresh linear head (the frozen probe's trainer,
//! [`train_probe`]) on its vectors of the rows the own LoRA trained on, scored on the rows the
//! gate checks: each held-out half, or each fold's left-out rows. The hybrid may answer only
//! where the best of these heads beats the own LoRA there ([`SourceCheck`]).
//!
//! What it leaves out: the base branch (a head on the frozen model is the frozen baseline, not
//! another task's knowledge) and combinations of sources (the gate checks the fusion itself).

use burn::tensor::Device;

use super::{HeldOut, Pooled};
use crate::error::{Error, Result};
use crate::experiment::compare::{probability_rows, train_probe};
use crate::fusion::files::{SourceCheck, better};
use crate::train::TrainConfig;
use crate::train::stage2::FusionCache;

/// Rows a fresh head fits on, with their classes, and the rows it is scored on (in the order
/// the gate pools them).
pub(in crate::experiment) struct Part<'a> {
    pub(in crate::experiment) fit: &'a FusionCache,
    pub(in crate::experiment) fit_y: &'a [usize],
    pub(in crate::experiment) outs: Vec<&'a HeldOut>,
}

/// Every adapter but `own`'s fresh head, fitted and scored part by part and pooled in part
/// order: `(adapter slot, probability rows)`. The heads train with the frozen probe's settings
/// derived from `cfg`.
pub(in crate::experiment) async fn source_probes(
    parts: &[Part<'_>],
    own: usize,
    classes: usize,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<Vec<(usize, Pooled)>> {
    let k = parts.first().map_or(0, |p| p.fit.adapters.dims()[1]);
    let mut probes = Vec::with_capacity(k.saturating_sub(1));
    for slot in (0..k).filter(|&s| s != own) {
        let mut pooled = Pooled::default();
        for p in parts {
            let missing = || Error::Fusion(format!("no adapter slot {slot} in the gate's rows"));
            let x = p.fit.adapter(slot).ok_or_else(missing)?;
            let head = train_probe(x, p.fit_y, classes, cfg, device).await?;
            for out in &p.outs {
                let v = out.cache.adapter(slot).ok_or_else(missing)?;
                pooled.add(probability_rows(head.forward(v, false)).await?, &out.labels);
            }
        }
        probes.push((slot, pooled));
    }
    Ok(probes)
}

/// The best of the sources' heads (accuracy, then log-loss; the first on ties): what the gate
/// holds against the own LoRA.
pub(in crate::experiment) fn best_source(probes: &[(usize, Pooled)]) -> SourceCheck {
    let mut best: Option<(usize, (f64, f64))> = None;
    for (slot, p) in probes {
        let s = p.score();
        if best.is_none_or(|(_, b)| better(s, b)) {
            best = Some((*slot, s));
        }
    }
    SourceCheck {
        sources: probes.len(),
        best: best.map(|(slot, _)| slot),
        accuracy: best.map_or(0.0, |(_, (a, _))| a),
    }
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
        assert_eq!(probes.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        // Each source pooled over both outs, in order.
        assert_eq!(probes[0].1.labels, [out_y.clone(), out_y].concat());
        let check = best_source(&probes);
        assert_eq!(check.sources, 2);
        assert_eq!(check.best, Some(1));
        assert_eq!(check.accuracy, 1.0);
        // No sources: nothing to hold against the own LoRA.
        let none = best_source(&[]);
        assert_eq!((none.sources, none.best, none.accuracy), (0, None, 0.0));
    }
}
