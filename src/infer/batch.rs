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
            .chunks(batch.max(1))
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

    /// [`pooled`](Self::pooled) once per entry of `passes` (`None`: the base encoder). Over each
    /// batch the passes run at the same time where the build has threads
    /// ([`crate::parallel::map`]): a short text gains little from a second thread inside one
    /// pass, but the passes of several adapters are independent.
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
        for (idx, input) in &self.batches {
            let pooled = crate::parallel::map(passes, |_, &adapter| {
                encoder.pooled(input, adapter, &ForwardMode::eval(adapter), device)
            });
            for (o, t) in out.iter_mut().zip(pooled) {
                let v = host::floats(t).await?;
                for (row, &i) in idx.iter().enumerate() {
                    o[i * d..(i + 1) * d].copy_from_slice(&v[row * d..(row + 1) * d]);
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
    let mut out = vec![Vec::new(); texts.len()];
    let mode = ForwardMode::eval(adapter);
    for (idx, input) in SortedBatches::new(tokenizer, texts, EVAL_BATCH)?.batches {
        let logits = head.forward(encoder.pooled(&input, adapter, &mode, device), false);
        let p = host::floats(softmax(logits, 1)).await?;
        for (row, &i) in idx.iter().enumerate() {
            out[i] = p[row * classes..(row + 1) * classes].to_vec();
        }
    }
    Ok(out)
}
