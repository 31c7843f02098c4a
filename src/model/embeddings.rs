//! BERT input embeddings: word + position + token type, then LayerNorm (and dropout in training).

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::BertConfig;
use super::weights::Weights;
use super::{ForwardMode, dropout};
use crate::error::Result;

/// The embedding block of BERT.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// `[vocab, d]` token embeddings.
    pub word: Embedding,
    /// `[max_positions, d]` absolute position embeddings.
    pub position: Embedding,
    /// `[type_vocab, d]` segment embeddings.
    pub token_type: Embedding,
    /// LayerNorm over the summed embeddings.
    pub norm: LayerNorm,
    /// Dropout probability in training.
    pub dropout: f64,
}

impl Embeddings {
    /// Loads `embeddings.*` from a checkpoint.
    pub fn load(w: &Weights, c: &BertConfig, device: &Device) -> Result<Self> {
        Ok(Self {
            word: w.embedding(
                "embeddings.word_embeddings",
                c.vocab_size,
                c.hidden_size,
                device,
            )?,
            position: w.embedding(
                "embeddings.position_embeddings",
                c.max_position_embeddings,
                c.hidden_size,
                device,
            )?,
            token_type: w.embedding(
                "embeddings.token_type_embeddings",
                c.type_vocab_size,
                c.hidden_size,
                device,
            )?,
            norm: w.layer_norm(
                "embeddings.LayerNorm",
                c.hidden_size,
                c.layer_norm_eps,
                device,
            )?,
            dropout: c.hidden_dropout_prob,
        })
    }

    /// # Shapes
    /// - ids, type_ids: `[batch, seq]`
    /// - output: `[batch, seq, d]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        type_ids: Tensor<2, Int>,
        mode: &ForwardMode,
    ) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        let positions: Vec<i64> = (0..batch).flat_map(|_| 0..seq as i64).collect();
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, seq]), &ids.device());
        let x = self.word.forward(ids)
            + self.position.forward(positions)
            + self.token_type.forward(type_ids);
        dropout(self.norm.forward(x), self.dropout, mode.train)
    }
}
