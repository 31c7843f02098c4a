//! WordPiece tokenisation with the `tokenizers` crate, loaded from `tokenizer.json` bytes.
//!
//! `tokenizer.json` of all-MiniLM-L6-v2 carries `truncation: 128` and `padding: Fixed(128)`; the
//! Python wrapper overrides them, so here padding is turned off and truncation set explicitly
//! (default 128 tokens, [CLS]/[SEP] included). Batches are right-padded to their longest sequence.

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::encoder::EncoderInput;
use crate::error::{Error, Result};

/// Default maximum sequence length in tokens.
pub const DEFAULT_MAX_LEN: usize = 128;

/// A tokenizer producing [`EncoderInput`] batches.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    pad_id: i64,
}

/// One tokenised text (no padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Token ids with special tokens.
    pub ids: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
    /// Token strings.
    pub tokens: Vec<String>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes with truncation at `max_len` tokens.
    pub fn from_bytes(bytes: &[u8], max_len: usize) -> Result<Self> {
        #[cfg(target_arch = "wasm32")]
        tokenizers::utils::parallelism::set_parallelism(false);
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len.max(2),
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0) as i64;
        Ok(Self {
            inner,
            max_len,
            pad_id,
        })
    }

    /// Number of token ids the tokenizer can produce (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Maximum sequence length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenises one text with [CLS]/[SEP], truncated.
    pub fn encode(&self, text: &str) -> Result<Tokens> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            tokens: enc.get_tokens().to_vec(),
        })
    }

    /// Tokenises and right-pads a batch to its longest sequence.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<EncoderInput> {
        let encoded = texts
            .iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.pad(&encoded))
    }

    /// Right-pads already tokenised texts into one batch.
    pub fn pad(&self, encoded: &[Tokens]) -> EncoderInput {
        let seq = encoded
            .iter()
            .map(|e| e.ids.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut input = EncoderInput {
            ids: vec![],
            type_ids: vec![],
            mask: vec![],
            batch: encoded.len(),
            seq,
        };
        for e in encoded {
            let n = e.ids.len();
            input.ids.extend(
                e.ids
                    .iter()
                    .map(|&i| i as i64)
                    .chain(std::iter::repeat_n(self.pad_id, seq - n)),
            );
            input.type_ids.extend(
                e.type_ids
                    .iter()
                    .map(|&i| i as i64)
                    .chain(std::iter::repeat_n(0, seq - n)),
            );
            input
                .mask
                .extend(std::iter::repeat_n(1u8, n).chain(std::iter::repeat_n(0, seq - n)));
        }
        input
    }
}
