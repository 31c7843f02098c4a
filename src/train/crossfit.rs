//! Cross-fitted training vectors for stage 2 (stacking).
//!
//! A task's own adapter was trained on the very rows the fusion then trains on, so on those rows its
//! vector is better than it will ever be on new text, and the fusion learns to trust it alone (the
//! attention collapses onto the own adapter; docs/results.md). Cross-fitting replaces, in the
//! fusion's training cache, the own-adapter vector of each row by the vector of an adapter trained
//! on the *other* folds of the task's data (k folds, stratified by class; 5 by default), as in
//! stacked generalisation. The other tasks' adapters never saw the task's rows and are left as
//! they are; at prediction time the full adapter is used. Costs k more stage-1 runs per task on
//! (k − 1)/k of its rows (about k − 1 times stage 1) and one more encoder pass over its training
//! texts. A residual fusion applies the full adapter's head to these out-of-fold vectors (the fold
//! adapters start from the same seed, so their spaces are close; not identical).

use burn::tensor::{Device, Tensor, TensorData};

use super::schedule::TrainConfig;
use super::stage1::{LoraTrainer, TaskModel};
use super::stage2::FusionCache;
use super::{Observer, Outcome};
use crate::error::{Error, Result};
use crate::host;
use crate::infer::pooled_vectors;
use crate::lora::LoraConfig;
use crate::model::{Encoder, TextTokenizer};

/// Default number of folds.
pub const DEFAULT_FOLDS: usize = 5;

/// Fold (0..k) of each row: each class's rows go round the folds in row order, so every fold
/// holds every class that has at least k rows.
pub fn folds(labels: &[usize], k: usize) -> Vec<usize> {
    let k = k.max(2);
    let mut seen = std::collections::HashMap::new();
    labels
        .iter()
        .map(|&l| {
            let c = seen.entry(l).or_insert(0usize);
            *c += 1;
            (*c - 1) % k
        })
        .collect()
}

/// `cache` (the fusion's training cache of task `own`'s `texts`) with the own-adapter slot
/// replaced by cross-fitted vectors: rows of fold `f` (of `k`) get the vector of an adapter
/// trained on the other folds with `lora` and `cfg`.
#[allow(clippy::too_many_arguments)]
pub async fn crossfit_cache(
    encoder: &Encoder,
    tokenizer: &TextTokenizer,
    texts: &[String],
    labels: &[usize],
    classes: usize,
    own: usize,
    lora: &LoraConfig,
    cfg: &TrainConfig,
    cache: &FusionCache,
    k_folds: usize,
    device: &Device,
) -> Result<FusionCache> {
    let n = texts.len();
    let [rows, k, d] = cache.adapters.dims();
    if rows != n || own >= k || labels.len() != n {
        return Err(Error::Fusion(
            "cross-fitting: the cache does not match the texts".into(),
        ));
    }
    let fold = folds(labels, k_folds);
    let mut own_rows = vec![0f32; n * d];
    for f in 0..k_folds.max(2) {
        let fit: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
        let out: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
        if out.is_empty() {
            continue;
        }
        let model = train_fold(
            encoder,
            tokenizer,
            texts,
            labels,
            classes,
            lora,
            cfg,
            &fit,
            device,
            &mut (),
        )
        .await?
        .0;
        let out_texts: Vec<&str> = out.iter().map(|&i| texts[i].as_str()).collect();
        let v = host::floats(
            pooled_vectors(encoder, tokenizer, Some(&model.adapter), &out_texts, device).await?,
        )
        .await?;
        for (j, &i) in out.iter().enumerate() {
            own_rows[i * d..(i + 1) * d].copy_from_slice(&v[j * d..(j + 1) * d]);
        }
    }
    let own_t = Tensor::<2>::from_data(TensorData::new(own_rows, [n, d]), device);
    cache.with_adapter(own, own_t)
}

/// A task model (adapter and head) trained with `lora` and `cfg` on the rows `fit` of `texts`,
/// through the driver with `observer` (a stopped run returns what it trained, and `Cancelled`).
#[allow(clippy::too_many_arguments)]
pub async fn train_fold<O: Observer<LoraTrainer>>(
    encoder: &Encoder,
    tokenizer: &TextTokenizer,
    texts: &[String],
    labels: &[usize],
    classes: usize,
    lora: &LoraConfig,
    cfg: &TrainConfig,
    fit: &[usize],
    device: &Device,
    observer: &mut O,
) -> Result<(TaskModel, Outcome)> {
    let fit_texts: Vec<String> = fit.iter().map(|&i| texts[i].clone()).collect();
    let fit_labels: Vec<usize> = fit.iter().map(|&i| labels[i]).collect();
    let mut tr = LoraTrainer::new(
        encoder,
        tokenizer,
        &fit_texts,
        &fit_labels,
        classes,
        lora,
        cfg,
        device,
    )?;
    let outcome = super::drive(&mut tr, observer).await?;
    Ok((tr.finish(), outcome))
}

#[cfg(test)]
mod tests {
    use super::folds;

    #[test]
    fn folds_alternate_within_each_class() {
        assert_eq!(folds(&[0, 0, 1, 0, 1, 1], 2), [0, 1, 0, 0, 1, 0]);
        assert_eq!(folds(&[0, 0, 0, 1, 0, 0, 0], 5), [0, 1, 2, 0, 3, 4, 0]);
    }
}
