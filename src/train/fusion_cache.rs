//! The fusion's cache (docs/design.md §1.3.2): the K + 1 pooled vectors of every text (the frozen
//! base's and each adapter's), computed once so the fusion's epochs read them instead of running
//! the encoder. Left out: anything that trains; stage 2 is in [`super::stage2`].

use crate::error::{Error, Result};
use crate::infer::{EVAL_BATCH, SortedBatches};
use crate::lora::LoraAdapter;
use crate::model::{Encoder, TextTokenizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The K+1 pooled vectors of a set of texts.
#[derive(Debug, Clone)]
pub struct FusionCache {
    /// `[n, d]` frozen-base vectors.
    pub base: Tensor<2>,
    /// `[n, K, d]` adapter vectors, adapters in fusion order.
    pub adapters: Tensor<3>,
}

impl FusionCache {
    /// Runs the K+1 encoder passes over `texts` (base, then each adapter).
    pub async fn build<S: AsRef<str>>(
        encoder: &Encoder,
        tokenizer: &TextTokenizer,
        adapters: &[&LoraAdapter],
        texts: &[S],
        device: &Device,
    ) -> Result<Self> {
        if adapters.is_empty() {
            return Err(Error::Fusion("fusion needs at least one adapter".into()));
        }
        let batches = SortedBatches::new(tokenizer, texts, EVAL_BATCH)?;
        // The base's pass and every adapter's, at once where there are threads.
        let passes: Vec<Option<&LoraAdapter>> = std::iter::once(None)
            .chain(adapters.iter().map(|&a| Some(a)))
            .collect();
        let mut pooled = batches.pooled_each(encoder, &passes, device).await?;
        let base = pooled.remove(0);
        let per = pooled
            .into_iter()
            .map(|v| v.unsqueeze_dim::<3>(1))
            .collect();
        Ok(Self {
            base,
            adapters: Tensor::cat(per, 1),
        })
    }

    /// The cache with adapter slot `slot`'s vectors replaced by `vectors`.
    ///
    /// # Shapes
    /// - vectors: `[n, d]`, the cache's rows and width
    pub fn with_adapter(&self, slot: usize, vectors: Tensor<2>) -> Result<Self> {
        let [n, k, d] = self.adapters.dims();
        if slot >= k || vectors.dims() != [n, d] {
            return Err(Error::Fusion(format!(
                "adapter slot {slot} of {k}, vectors {:?} for a cache of {n} x {d}",
                vectors.dims()
            )));
        }
        let mut parts = Vec::with_capacity(3);
        if slot > 0 {
            parts.push(self.adapters.clone().slice([0..n, 0..slot, 0..d]));
        }
        parts.push(vectors.unsqueeze_dim(1));
        if slot + 1 < k {
            parts.push(self.adapters.clone().slice([0..n, slot + 1..k, 0..d]));
        }
        Ok(Self {
            base: self.base.clone(),
            adapters: Tensor::cat(parts, 1),
        })
    }

    /// Adapter slot `slot`'s vectors (`None` past the last slot).
    ///
    /// # Shapes
    /// - output: `[n, d]`
    pub fn adapter(&self, slot: usize) -> Option<Tensor<2>> {
        let [n, k, d] = self.adapters.dims();
        (slot < k).then(|| {
            self.adapters
                .clone()
                .slice([0..n, slot..slot + 1, 0..d])
                .reshape([n, d])
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.base.dims()[0]
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of several caches (over the same adapters, in the same order), one after another.
    pub fn concat(caches: &[FusionCache]) -> Result<Self> {
        if caches.is_empty() {
            return Err(Error::Fusion("nothing to join".into()));
        }
        let k = caches[0].adapters.dims()[1];
        if caches.iter().any(|c| c.adapters.dims()[1] != k) {
            return Err(Error::Fusion(
                "caches over different adapter sets cannot be joined".into(),
            ));
        }
        Ok(Self {
            base: Tensor::cat(caches.iter().map(|c| c.base.clone()).collect(), 0),
            adapters: Tensor::cat(caches.iter().map(|c| c.adapters.clone()).collect(), 0),
        })
    }

    /// Rows `idx` of the cache.
    pub fn select(&self, idx: &[usize], device: &Device) -> (Tensor<2>, Tensor<3>) {
        let n = idx.len();
        let i = Tensor::<1, Int>::from_data(
            TensorData::new(idx.iter().map(|&x| x as i64).collect::<Vec<_>>(), [n]),
            device,
        );
        (
            self.base.clone().select(0, i.clone()),
            self.adapters.clone().select(0, i),
        )
    }
}
