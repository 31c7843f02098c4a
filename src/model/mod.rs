//! The BERT encoder (all-MiniLM-L6-v2 and other BERT-family checkpoints), its tokenizer and
//! pooling — everything from text to a sentence vector.
//!
//! - [`config`]: HF `config.json`;
//! - [`weights`]: safetensors → burn layers (transposing PyTorch `[out, in]` linears);
//! - [`embeddings`], [`attention`], [`layer`], [`encoder`]: the post-LN transformer, with a LoRA
//!   adapter optionally added to each targeted linear;
//! - [`pooling`]: mean, [CLS] or max pooling and normalisation, as sentence-transformers configures it;
//! - [`tokenizer`]: WordPiece via the `tokenizers` crate, truncation and batch padding.
//!
//! Nothing here knows about tasks, training or the UI.

pub mod attention;
pub mod config;
pub mod embeddings;
pub mod encoder;
pub mod head;
pub mod layer;
pub mod pooling;
pub mod tokenizer;
pub mod weights;

pub use config::BertConfig;
pub use encoder::{Encoder, EncoderInput, ForwardMode};
pub use head::ClassifierHead;
pub use pooling::{Pooling, PoolingMode, mean_pool};
pub use tokenizer::TextTokenizer;

use burn::tensor::{Distribution, Tensor};

/// Inverted dropout: zeroes each value with probability `p` and rescales the rest, when `active`.
pub(crate) fn dropout<const D: usize>(x: Tensor<D>, p: f64, active: bool) -> Tensor<D> {
    if !active || p <= 0.0 {
        return x;
    }
    let keep = 1.0 - p;
    let mask = x.random_like(Distribution::Bernoulli(keep));
    (x * mask).mul_scalar(1.0 / keep)
}
