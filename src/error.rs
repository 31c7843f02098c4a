//! The crate's error type: every fallible engine call returns [`Result`].
//!
//! Errors carry a message meant for the person using the page or the CLI. A cancelled training run
//! is not an error: the driver reports it as [`crate::train::Outcome::Cancelled`].

/// An error from the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Model files (weights, config, tokenizer) are missing or malformed.
    #[error("model: {0}")]
    Model(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An adapter file (PEFT safetensors or config) is missing or malformed.
    #[error("adapter: {0}")]
    Adapter(String),
    /// An uploaded dataset is unusable.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Training could not run (bad settings, empty task...).
    #[error("training: {0}")]
    Train(String),
    /// A fused model file is missing or malformed.
    #[error("fusion: {0}")]
    Fusion(String),
    /// A zip or workspace bundle is unusable.
    #[error("bundle: {0}")]
    Bundle(String),
    /// A request the workspace cannot carry out (unknown task, duplicate name, ...).
    #[error("{0}")]
    Invalid(String),
    /// Reading a tensor back from the device failed.
    #[error("device: {0}")]
    Device(String),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
