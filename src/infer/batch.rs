//! Batched inference: pooled sentence vectors (for caching and the fusion), class probabilities.
//!
//! Texts are sorted by token length before batching so each batch pads little, and results are
//! returned in the caller's order.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::host;
use crate::lora::LoraAdapter;
use crate::model::tokenizer::Tokens;
use crate::model::{ClassifierHead, Encoder, EncoderInput, ForwardMode, TextTokenizer};

/// Default inference batch size.
pub const EVAL_BATCH: usize = 32;

/// Texts per batch for `n` texts at most `batch` per batch: fewer texts than two full batches
/// make two smaller batches instead of a full one and a remainder, so a lone pass can run both
/// halves at once ([`SortedBatches::pooled_each`]). It depends on `n` only, never on the thread
/// count, so results do not either.
fn batch_size(n: usize, batch: usize) -> usize {
    batch.max(1).min(n.div_ceil(2).max(1))
}

/// Texts tokenised once and grouped into length-sorted padded batches, so several encoder passes
/// (base, each adapter) over the same texts do not tokenise them again.
pub struct SortedBatches {
    /// `(original indices, padded batch)` in length order.
    batches: Vec<(Vec<usize>, EncoderInput)>,
    /// Number of texts.
    len: usize,
}

impl SortedBatches {
    /// Tokenises `texts` and batches them by length, `batch` per batch.
    pub fn new<S: AsRef<str>>(
        tokenizer: &TextTokenizer,
        texts: &[S],
        batch: usize,
    ) -> Result<Self> {
        let tokens = texts
            .iter()
            .map(|t| tokenizer.encode(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| tokens[i].ids.len());
        let batches = order
            .chunks(batch_size(texts.len(), batch))
            .map(|idx| {
                let b: Vec<Tokens> = idx.iter().map(|&i| tokens[i].clone()).collect();
                (idx.to_vec(), tokenizer.pad(&b))
            })
            .collect();
        Ok(Self {
            batches,
            len: texts.len(),
        })
    }

    /// Mean-pooled vectors of the texts through the encoder (with `adapter` if given), in input order.
    ///
    /// # Shapes
    /// - output: `[texts, d]` on `device`
    pub async fn pooled(
        &self,
        encoder: &Encoder,
        adapter: Option<&LoraAdapter>,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let mut v = self.pooled_each(encoder, &[adapter], device).await?;
        Ok(v.remove(0))
    }

    /// [`pooled`](Self::pooled) once per entry of `passes` (`None`: the base encoder). The
    /// passes over a batch run at the same time where the build has threads
    /// ([`crate::parallel::map`]): a short text gains little from a second thread inside one
    /// pass, but the passes of several adapters are independent. A lone pass takes two batches
    /// at a time instead, so it too keeps two threads busy.
    ///
    /// # Shapes
    /// - output: one `[texts, d]` per pass, on `device`
    pub async fn pooled_each(
        &self,
        encoder: &Encoder,
        passes: &[Option<&LoraAdapter>],
        device: &Device,
    ) -> Result<Vec<Tensor<2>>> {
        let d = encoder.config.hidden_size;
        let mut out = vec![vec![0f32; self.len * d]; passes.len()];
        let group = match passes.len() {
            1 => 2,
            _ => 1,
        };
        for batches in self.batches.chunks(group) {
            // (batch, pass) pairs, batch-major.
            let items: Vec<(usize, usize)> = (0..batches.len())
                .flat_map(|b| (0..passes.len()).map(move |p| (b, p)))
                .collect();
            let pooled = crate::parallel::map(&items, |_, &(b, p)| {
                let adapter = passes[p];
                encoder.pooled(&batches[b].1, adapter, &ForwardMode::eval(adapter), device)
            });
            for (&(b, p), t) in items.iter().zip(pooled) {
                let v = host::floats(t).await?;
                for (row, &i) in batches[b].0.iter().enumerate() {
                    out[p][i * d..(i + 1) * d].copy_from_slice(&v[row * d..(row + 1) * d]);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| Tensor::from_data(burn::tensor::TensorData::new(o, [self.len, d]), device))
            .collect())
    }
}

/// Mean-pooled vectors of `texts` through the encoder (with `adapter` if given), in input order.
///
/// # Shapes
/// - output: `[texts, d]` on `device`
pub async fn pooled_vectors<S: AsRef<str>>(
    encoder: &Encoder,
    tokenizer: &TextTokenizer,
    adapter: Option<&LoraAdapter>,
    texts: &[S],
    device: &Device,
) -> Result<Tensor<2>> {
    SortedBatches::new(tokenizer, texts, EVAL_BATCH)?
        .pooled(encoder, adapter, device)
        .await
}

/// Class probabilities of `texts` for a task (adapter + head), in input order.
pub async fn probabilities<S: AsRef<str>>(
    encoder: &Encoder,
    tokenizer: &TextTokenizer,
    adapter: Option<&LoraAdapter>,
    head: &ClassifierHead,
    texts: &[S],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let classes = head.classes();
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let pooled = SortedBatches::new(tokenizer, texts, EVAL_BATCH)?
        .pooled(encoder, adapter, device)
        .await?;
    let p = host::floats(softmax(head.forward(pooled, false), 1)).await?;
    Ok(p.chunks(classes.max(1)).map(<[f32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::batch_size;

    #[test]
    fn few_texts_make_two_batches_many_make_full_ones() {
        assert_eq!(batch_size(0, 32), 1);
        assert_eq!(batch_size(1, 32), 1);
        assert_eq!(batch_size(8, 32), 4);
        assert_eq!(batch_size(9, 32), 5);
        assert_eq!(batch_size(40, 32), 20);
        assert_eq!(batch_size(64, 32), 32);
        assert_eq!(batch_size(500, 32), 32);
        assert_eq!(batch_size(10, 0), 1);
    }
}
