//! The whole BERT encoder: embeddings and the stack of layers, loaded from `config.json` +
//! `model.safetensors`. The pooler (`pooler.dense`) is not loaded: sentence vectors are pooled as
//! the model's sentence-transformers files say ([`Pooling`], mean by default).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::BertConfig;
use super::embeddings::Embeddings;
use super::layer::BertLayer;
use super::pooling::Pooling;
use super::weights::Weights;
use crate::error::Result;
use crate::lora::LoraAdapter;

static ROWS_ENCODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sequences run through [`Encoder::forward`] since the process started (counts encoder passes).
pub fn rows_encoded() -> usize {
    ROWS_ENCODED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Token ids of a padded batch, in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderInput {
    /// `[batch * seq]` token ids, row-major.
    pub ids: Vec<i64>,
    /// `[batch * seq]` token type ids.
    pub type_ids: Vec<i64>,
    /// `[batch * seq]` attention mask (1 = token, 0 = padding).
    pub mask: Vec<u8>,
    /// Number of sequences.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
}

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForwardMode {
    /// The encoder's own dropout (embeddings, attention, hidden) is active.
    pub train: bool,
    /// The adapter's `alpha / r`.
    pub lora_scaling: f64,
    /// The adapter's input dropout probability (0 in inference).
    pub lora_dropout: f64,
}

impl ForwardMode {
    /// Inference (no dropout).
    pub fn eval(adapter: Option<&LoraAdapter>) -> Self {
        Self {
            train: false,
            lora_scaling: adapter.map_or(0.0, |a| a.scaling),
            lora_dropout: 0.0,
        }
    }

    /// Training: the adapter's dropout on, the encoder's own dropout when `encoder_dropout`.
    pub fn train(adapter: Option<&LoraAdapter>, encoder_dropout: bool) -> Self {
        Self {
            train: encoder_dropout,
            lora_scaling: adapter.map_or(0.0, |a| a.scaling),
            lora_dropout: adapter.map_or(0.0, |a| a.dropout),
        }
    }
}

/// A BERT encoder. Its weights are frozen: training only ever updates adapters and heads.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Embedding block.
    pub embeddings: Embeddings,
    /// Transformer layers.
    pub layers: Vec<BertLayer>,
    /// Architecture.
    #[module(skip)]
    pub config: BertConfig,
    /// How token states become a sentence vector.
    #[module(skip)]
    pub pooling: Pooling,
}

impl Encoder {
    /// Loads an encoder from the bytes of `config.json` and `model.safetensors` (F32, F16 or BF16),
    /// pooling with the mean; [`Encoder::with_pooling`] sets another.
    pub fn load(config_json: &[u8], safetensors: &[u8], device: &Device) -> Result<Self> {
        let config = BertConfig::from_json_bytes(config_json)?;
        let w = Weights::parse(safetensors)?;
        let embeddings = Embeddings::load(&w, &config, device)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::load(&w, &config, i, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            config,
            pooling: Pooling::default(),
        }
        .no_grad())
    }

    /// The same encoder pooling with `pooling`.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// Uploads a host batch: `(ids, type_ids, mask as float)`.
    pub fn tensors(
        input: &EncoderInput,
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>) {
        let shape = [input.batch, input.seq];
        let ids = Tensor::<2, Int>::from_data(TensorData::new(input.ids.clone(), shape), device);
        let types =
            Tensor::<2, Int>::from_data(TensorData::new(input.type_ids.clone(), shape), device);
        let mask: Vec<f32> = input.mask.iter().map(|&m| m as f32).collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, shape), device);
        (ids, types, mask)
    }

    /// Hidden states after the embeddings and after every layer (`1 + layers` tensors).
    ///
    /// # Shapes
    /// - each output: `[batch, seq, d]`
    pub fn hidden_states(
        &self,
        input: &EncoderInput,
        adapter: Option<&LoraAdapter>,
        mode: &ForwardMode,
        device: &Device,
    ) -> (Vec<Tensor<3>>, Tensor<2>) {
        let mut all = Vec::with_capacity(self.layers.len() + 1);
        let (last, mask) = self.run(input, adapter, mode, device, Some(&mut all));
        all.push(last);
        (all, mask)
    }

    /// Last hidden state and the float mask.
    ///
    /// # Shapes
    /// - output: `([batch, seq, d], [batch, seq])`
    pub fn forward(
        &self,
        input: &EncoderInput,
        adapter: Option<&LoraAdapter>,
        mode: &ForwardMode,
        device: &Device,
    ) -> (Tensor<3>, Tensor<2>) {
        self.run(input, adapter, mode, device, None)
    }

    /// The forward pass; `earlier`, when given, receives the embedding output and every layer's
    /// output but the last.
    fn run(
        &self,
        input: &EncoderInput,
        adapter: Option<&LoraAdapter>,
        mode: &ForwardMode,
        device: &Device,
        mut earlier: Option<&mut Vec<Tensor<3>>>,
    ) -> (Tensor<3>, Tensor<2>) {
        ROWS_ENCODED.fetch_add(input.batch, std::sync::atomic::Ordering::Relaxed);
        let (ids, types, mask) = Self::tensors(input, device);
        let [b, t] = mask.dims();
        // 0 where mask = 1, -1e9 where mask = 0 (HF uses the dtype's minimum; the softmax is the same).
        let bias = (mask.clone() - 1.0).mul_scalar(1e9).reshape([b, 1, 1, t]);
        let mut x = self.embeddings.forward(ids, types, mode);
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(v) = earlier.as_deref_mut() {
                v.push(x.clone());
            }
            x = layer.forward(x, bias.clone(), adapter.and_then(|a| a.layers.get(i)), mode);
        }
        (x, mask)
    }

    /// Pooled (not normalised) sentence vectors: [`Encoder::pooling`] of the last hidden states.
    ///
    /// # Shapes
    /// - output: `[batch, d]`
    pub fn pooled(
        &self,
        input: &EncoderInput,
        adapter: Option<&LoraAdapter>,
        mode: &ForwardMode,
        device: &Device,
    ) -> Tensor<2> {
        let (h, mask) = self.forward(input, adapter, mode, device);
        self.pooling.pool(h, mask)
    }
}
