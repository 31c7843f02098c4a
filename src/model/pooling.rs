//! Sentence pooling over the last hidden states, as sentence-transformers configures it:
//! `1_Pooling/config.json` picks the mode (masked mean, the [CLS] token, or masked max) and
//! `modules.json` lists a `Normalize` module when embeddings are L2-normalised.
//!
//! A model folder without those files (the default all-MiniLM-L6-v2 as `scripts/setup` installs
//! it) pools with the mean and normalises, which is what that model's own files say.
//! Normalisation only applies to sentence embeddings ([`crate::engine::Engine::embed`]); task
//! heads and the fusion always read the pooled vector before it.
//!
//! Left out: the other sentence-transformers modes (weighted mean, last token, sqrt-length mean,
//! several modes concatenated): such a model is refused with the mode named.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which vector stands for the sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolingMode {
    /// Mean of the token states whose mask is 1 ([CLS] and [SEP] included; default).
    #[default]
    Mean,
    /// The first token's state ([CLS]).
    Cls,
    /// Element-wise max over the token states whose mask is 1.
    Max,
}

/// Pooling of a sentence encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pooling {
    /// The pooling mode (default mean).
    pub mode: PoolingMode,
    /// Whether sentence embeddings are L2-normalised (default true).
    pub normalize: bool,
}

impl Default for Pooling {
    fn default() -> Self {
        Self {
            mode: PoolingMode::Mean,
            normalize: true,
        }
    }
}

/// sentence-transformers' `1_Pooling/config.json` (the fields read).
#[derive(Deserialize)]
struct StPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// One entry of sentence-transformers' `modules.json`.
#[derive(Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    kind: String,
}

impl Pooling {
    /// Reads sentence-transformers' `modules.json` and `1_Pooling/config.json`, either of which
    /// may be absent: no pooling config means mean pooling; no `modules.json` means normalised
    /// (see the module comment).
    pub fn from_sentence_transformers(
        modules_json: Option<&[u8]>,
        pooling_json: Option<&[u8]>,
    ) -> Result<Self> {
        let mut pooling = Pooling::default();
        if let Some(bytes) = modules_json {
            let modules: Vec<StModule> = serde_json::from_slice(bytes)
                .map_err(|e| Error::Model(format!("modules.json: {e}")))?;
            pooling.normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        }
        if let Some(bytes) = pooling_json {
            let p: StPooling = serde_json::from_slice(bytes)
                .map_err(|e| Error::Model(format!("1_Pooling/config.json: {e}")))?;
            let unsupported = [
                (p.pooling_mode_mean_sqrt_len_tokens, "mean_sqrt_len_tokens"),
                (p.pooling_mode_weightedmean_tokens, "weightedmean_tokens"),
                (p.pooling_mode_lasttoken, "lasttoken"),
            ];
            if let Some((_, name)) = unsupported.iter().find(|(on, _)| *on) {
                return Err(Error::Model(format!(
                    "1_Pooling/config.json: pooling mode {name} is not supported (only mean, cls \
                     or max)"
                )));
            }
            pooling.mode = match (
                p.pooling_mode_mean_tokens,
                p.pooling_mode_cls_token,
                p.pooling_mode_max_tokens,
            ) {
                (true, false, false) => PoolingMode::Mean,
                (false, true, false) => PoolingMode::Cls,
                (false, false, true) => PoolingMode::Max,
                (false, false, false) => {
                    return Err(Error::Model(
                        "1_Pooling/config.json: no pooling mode is switched on".into(),
                    ));
                }
                _ => {
                    return Err(Error::Model(
                        "1_Pooling/config.json: several pooling modes at once (concatenated) are \
                         not supported"
                            .into(),
                    ));
                }
            };
        }
        Ok(pooling)
    }

    /// The sentence vectors of a batch.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, d]`
    /// - mask: `[batch, seq]` with 1.0 for tokens and 0.0 for padding
    /// - output: `[batch, d]`
    pub fn pool(&self, hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        match self.mode {
            PoolingMode::Mean => mean_pool(hidden, mask),
            PoolingMode::Cls => cls_pool(hidden),
            PoolingMode::Max => max_pool(hidden, mask),
        }
    }
}

/// Masked mean over tokens (sentence-transformers' default).
///
/// # Shapes
/// - hidden: `[batch, seq, d]`
/// - mask: `[batch, seq]` with 1.0 for tokens and 0.0 for padding
/// - output: `[batch, d]`
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let m = mask.unsqueeze_dim::<3>(2); // [b, t, 1]
    let summed = (hidden * m.clone()).sum_dim(1).squeeze_dim::<2>(1); // [b, d]
    let counts = m.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9); // [b, 1]
    summed / counts
}

/// The first token's state.
///
/// # Shapes
/// - hidden: `[batch, seq, d]` → `[batch, d]`
pub fn cls_pool(hidden: Tensor<3>) -> Tensor<2> {
    let [b, _, d] = hidden.dims();
    hidden.slice([0..b, 0..1, 0..d]).reshape([b, d])
}

/// Masked element-wise max over tokens: padding is set to -1e9 first, as sentence-transformers does.
///
/// # Shapes
/// - hidden: `[batch, seq, d]`
/// - mask: `[batch, seq]` with 1.0 for tokens and 0.0 for padding
/// - output: `[batch, d]`
pub fn max_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let m = mask.unsqueeze_dim::<3>(2); // [b, t, 1]
    let masked = hidden * m.clone() + (m - 1.0).mul_scalar(1e9);
    masked.max_dim(1).squeeze_dim::<2>(1)
}

/// Row-wise L2 normalisation (`torch.nn.functional.normalize`, eps 1e-12).
///
/// # Shapes
/// - x: `[batch, d]` → `[batch, d]`
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn device() -> Device {
        Device::default()
    }

    /// Batch of 2, 3 positions, d = 2; the second row has one padding position.
    fn batch() -> (Tensor<3>, Tensor<2>) {
        let h = vec![
            1.0, -1.0, 3.0, 2.0, -5.0, 0.5, /* row 2 */ 4.0, 4.0, -2.0, 6.0, 100.0, 100.0,
        ];
        let m = vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        (
            Tensor::from_data(TensorData::new(h, [2, 3, 2]), &device()),
            Tensor::from_data(TensorData::new(m, [2, 3]), &device()),
        )
    }

    fn rows(t: Tensor<2>) -> Vec<f32> {
        crate::host::block_on(crate::host::floats(t)).unwrap()
    }

    #[test]
    fn the_three_modes_by_hand() {
        let (h, m) = batch();
        let mean = rows(mean_pool(h.clone(), m.clone()));
        assert_eq!(mean, vec![-1.0 / 3.0, 0.5, 1.0, 5.0]);
        assert_eq!(rows(cls_pool(h.clone())), vec![1.0, -1.0, 4.0, 4.0]);
        // the padded 100s never win
        assert_eq!(rows(max_pool(h, m)), vec![3.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn sentence_transformers_files_pick_the_mode() {
        let st = |cls: bool, mean: bool, max: bool| {
            format!(
                r#"{{"word_embedding_dimension": 384, "pooling_mode_cls_token": {cls},
                    "pooling_mode_mean_tokens": {mean}, "pooling_mode_max_tokens": {max}}}"#
            )
        };
        let modules = br#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#;
        let no_norm = br#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"}]"#;
        let p = Pooling::from_sentence_transformers(None, None).unwrap();
        assert_eq!(p, Pooling::default());
        let p = Pooling::from_sentence_transformers(
            Some(modules),
            Some(st(true, false, false).as_bytes()),
        )
        .unwrap();
        assert_eq!((p.mode, p.normalize), (PoolingMode::Cls, true));
        let p = Pooling::from_sentence_transformers(
            Some(no_norm),
            Some(st(false, false, true).as_bytes()),
        )
        .unwrap();
        assert_eq!((p.mode, p.normalize), (PoolingMode::Max, false));
        for bad in [st(true, true, false), st(false, false, false)] {
            assert!(Pooling::from_sentence_transformers(None, Some(bad.as_bytes())).is_err());
        }
        let e =
            Pooling::from_sentence_transformers(None, Some(br#"{"pooling_mode_lasttoken": true}"#))
                .unwrap_err();
        assert!(e.to_string().contains("lasttoken"), "{e}");
    }
}
