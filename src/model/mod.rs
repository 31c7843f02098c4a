//! The BERT encoder (all-MiniLM-L6-v2 and other BERT-family checkpoints), its tokenizer and
//! pooling — everything from text to a sentence vector.
//!
//! - [`config`]: HF `config.json`;
//! - [`weights`]: safetensors → burn layers (transposing PyTorch `[out, in]` linears);
//! - [`embeddings`], [`attention`], [`layer`], [`encoder`]: the post-LN transformer, with a LoRA
//!   adapter optionally added to each targeted linear;
//! - [`pooling`]: mean, [CLS] or max pooling and normalisation, as sentence-transformers configures it;
//! - [`gelu`]: the exact GELU, vectorised on the CPU backends in inference;
//! - [`dropout`]: inverted dropout, with masks from the device or from a seeded scope;
//! - [`tokenizer`]: WordPiece via the `tokenizers` crate, truncation and batch padding.
//!
//! Nothing here knows about tasks, training or the UI.

pub mod attention;
pub mod config;
pub mod dropout;
pub mod embeddings;
pub mod encoder;
pub mod gelu;
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

pub(crate) use dropout::dropout;
