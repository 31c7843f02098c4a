//! The fusion variants (docs/design.md §1.6): what distinguishes the paper's fusion from the
//! ones that start as the task's own LoRA, by name (`--fusion NAME`), as plain serialisable data
//! kept in `fusion_manifest.json`. The layer that reads them is [`super::module`].

use serde::{Deserialize, Serialize};

/// Rows per group of the authors'-code ablation ([`FusionOptions::across_batch`]): the batch
/// size the fusion trains with by default.
pub const AUTHORS_BATCH: usize = 16;

/// How the fusion mixes the task vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mixer {
    /// Multi-head self-attention over the K task vectors, then their mean (the paper's).
    Attention,
    /// A learned weight per source, no softmax (ScaLearn, Frohmann et al. 2023, arXiv 2310.01217):
    /// `a = Σ_s w_s · u_s`, the weights starting at `1/K`.
    Scalar,
}

/// The shape of a fusion variant (docs/design.md §1.3 and §1.6). [`FusionOptions::paper`] is the
/// paper's fusion; the others start from the task's own LoRA and move away only as far as
/// training pulls them. Kept in `fusion_manifest.json`, so a saved fusion is rebuilt as trained;
/// absent fields take the paper's values, so older files load as the paper's fusion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FusionOptions {
    /// Residual on the own adapter: `logits = own head(own adapter vector) + classifier(z)`,
    /// with the own stage-1 head frozen inside the layer and the classifier starting at zero, so
    /// the untrained fusion predicts exactly what the task's LoRA predicts.
    pub residual: bool,
    /// How the task vectors are mixed.
    pub mixer: Mixer,
    /// AdapterFusion's initialisation (Pfeiffer et al. 2021, arXiv 2005.00247, §3.2): the value
    /// and output projections start as the identity with zero bias.
    pub value_identity: bool,
    /// Weight of AdapterFusion's pull toward that identity, `λ · (‖I − V‖² + ‖I − O‖²)` added to
    /// the loss (they use 0.01; 0 = off).
    pub value_penalty: f64,
    /// AdapterFusion's query residual: each position's input is added back to its attention output.
    pub query_residual: bool,
    /// Softmax temperature of the attention scores (1 = none; above 1 spreads the attention).
    pub attention_temperature: f64,
    /// Leave the own adapter out of the mix: with `residual`, it then enters only through its
    /// logits, and the mix carries the other tasks' adapters (and the base branch).
    pub exclude_own: bool,
    /// The authors' code (`Bert/combine_k_9.py`): `nn.MultiheadAttention` fed `[batch, K, d]`
    /// without `batch_first`, so it attends across the examples of a batch, once per adapter,
    /// and a prediction depends on its batch companions. A bench-only ablation.
    pub across_batch: bool,
}

impl Default for FusionOptions {
    fn default() -> Self {
        Self::paper()
    }
}

impl FusionOptions {
    /// The paper's fusion (docs/design.md §1.3).
    pub const fn paper() -> Self {
        Self {
            residual: false,
            mixer: Mixer::Attention,
            value_identity: false,
            value_penalty: 0.0,
            query_residual: false,
            attention_temperature: 1.0,
            exclude_own: false,
            across_batch: false,
        }
    }

    /// The named variants, as `--fusion` takes them.
    pub const NAMES: [&'static str; 6] = [
        "paper",
        "residual",
        "residual-others",
        "adapterfusion",
        "scalar",
        "authors-code",
    ];

    /// The variant called `name` (one of [`Self::NAMES`]).
    pub fn named(name: &str) -> Option<Self> {
        let residual = Self {
            residual: true,
            ..Self::paper()
        };
        Some(match name {
            "paper" => Self::paper(),
            "residual" => residual,
            "residual-others" => Self {
                exclude_own: true,
                ..residual
            },
            "adapterfusion" => Self {
                value_identity: true,
                value_penalty: 0.01,
                query_residual: true,
                ..residual
            },
            "scalar" => Self {
                mixer: Mixer::Scalar,
                ..residual
            },
            "authors-code" => Self {
                across_batch: true,
                ..Self::paper()
            },
            _ => return None,
        })
    }

    /// The name of these options if they are one of [`Self::NAMES`], else `"custom"`.
    pub fn name(&self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|n| Self::named(n).as_ref() == Some(self))
            .copied()
            .unwrap_or("custom")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_round_trip_and_older_options_default_to_the_paper() {
        for n in FusionOptions::NAMES {
            assert_eq!(FusionOptions::named(n).unwrap().name(), n);
        }
        assert!(FusionOptions::named("nope").is_none());
        let old: FusionOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(old, FusionOptions::paper());
    }
}
