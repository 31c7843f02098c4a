//! LoRA hyper-parameters and which linears they target, in PEFT's vocabulary.
//!
//! Target names follow PEFT's matching rule: a target `t` selects the module at path `p` when
//! `p == t` or `p` ends with `"." + t`. In a BERT layer the linears are at
//! `attention.self.{query,key,value}`, `attention.output.dense`, `intermediate.dense` and
//! `output.dense`, so (as in PEFT) `output.dense` selects both `attention.output.dense` and the FFN's
//! `output.dense`, and `dense` selects all three dense layers. Regex targets, DoRA, per-module rank
//! or alpha patterns and LoRA biases are not supported and are rejected with an error.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::limits::MAX_LORA_RANK;

/// The six linears of a BERT layer that LoRA can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Site {
    /// `attention.self.query`
    Query,
    /// `attention.self.key`
    Key,
    /// `attention.self.value`
    Value,
    /// `attention.output.dense`
    AttentionOutput,
    /// `intermediate.dense`
    Intermediate,
    /// `output.dense` (the FFN's second linear)
    Output,
}

impl Site {
    /// All sites in layer order.
    pub const ALL: [Site; 6] = [
        Site::Query,
        Site::Key,
        Site::Value,
        Site::AttentionOutput,
        Site::Intermediate,
        Site::Output,
    ];

    /// Module path inside `encoder.layer.{i}` (PEFT/HF naming).
    pub fn path(self) -> &'static str {
        match self {
            Site::Query => "attention.self.query",
            Site::Key => "attention.self.key",
            Site::Value => "attention.self.value",
            Site::AttentionOutput => "attention.output.dense",
            Site::Intermediate => "intermediate.dense",
            Site::Output => "output.dense",
        }
    }

    /// `(d_in, d_out)` of this linear for hidden size `d` and FFN size `ffn`.
    pub fn dims(self, d: usize, ffn: usize) -> (usize, usize) {
        match self {
            Site::Intermediate => (d, ffn),
            Site::Output => (ffn, d),
            _ => (d, d),
        }
    }
}

/// LoRA settings of one adapter. Defaults are the paper's: r = 4, alpha = 32, dropout 0.1, q/k/v.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank of the update, `r` (default 4).
    pub r: usize,
    /// `lora_alpha`; the update is scaled by `alpha / r` (default 32).
    pub alpha: f64,
    /// Dropout on the adapter's input during training (default 0.1).
    pub dropout: f64,
    /// PEFT target names (default `query, key, value`).
    pub target_modules: Vec<String>,
    /// rsLoRA scaling `alpha / sqrt(r)` instead of `alpha / r` (default false).
    pub use_rslora: bool,
    /// `base_model_name_or_path` written to `adapter_config.json`.
    pub base_model_name_or_path: String,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 4,
            alpha: 32.0,
            dropout: 0.1,
            target_modules: vec!["query".into(), "key".into(), "value".into()],
            use_rslora: false,
            base_model_name_or_path: "sentence-transformers/all-MiniLM-L6-v2".into(),
        }
    }
}

impl LoraConfig {
    /// The factor applied to `B A x`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// The sites selected by `target_modules`, with PEFT's suffix rule.
    pub fn sites(&self) -> Result<Vec<Site>> {
        let mut out = Vec::new();
        for t in &self.target_modules {
            let t = t.trim();
            let hits: Vec<Site> = Site::ALL
                .into_iter()
                .filter(|s| {
                    let p = s.path();
                    p == t || p.ends_with(&format!(".{t}"))
                })
                .collect();
            if hits.is_empty() {
                return Err(Error::Adapter(format!(
                    "target module {t:?} matches no linear of a BERT layer (valid: query, key, value, \
                     attention.output.dense, intermediate.dense, output.dense)"
                )));
            }
            out.extend(hits);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Checks the settings; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 || self.r > MAX_LORA_RANK {
            return Err(Error::Adapter(format!(
                "r must be in 1..={MAX_LORA_RANK}, got {}",
                self.r
            )));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(Error::Adapter(format!(
                "lora_alpha must be positive, got {}",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Adapter(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.target_modules.is_empty() {
            return Err(Error::Adapter("target_modules is empty".into()));
        }
        self.sites().map(|_| ())
    }

    /// PEFT's `adapter_config.json` for this adapter (keys as PEFT 0.21 writes them).
    pub fn to_peft_json(&self) -> String {
        let v = json!({
            "alpha_pattern": {},
            "auto_mapping": {"base_model_class": "BertModel", "parent_library": "transformers.models.bert.modeling_bert"},
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": "none",
            "exclude_modules": null,
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "layer_replication": null,
            "layers_pattern": null,
            "layers_to_transform": null,
            "loftq_config": {},
            "lora_alpha": self.alpha,
            "lora_bias": false,
            "lora_dropout": self.dropout,
            "megatron_config": null,
            "megatron_core": "megatron.core",
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": self.r,
            "rank_pattern": {},
            "revision": null,
            "target_modules": self.target_modules,
            "task_type": null,
            "use_dora": false,
            "use_rslora": self.use_rslora,
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// Reads PEFT's `adapter_config.json`, rejecting features this crate does not implement.
    pub fn from_peft_json(bytes: &[u8]) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Adapter(format!("adapter_config.json is not valid JSON: {e}")))?;
        let m = v
            .as_object()
            .ok_or_else(|| Error::Adapter("adapter_config.json is not a JSON object".into()))?;
        let peft_type = m.get("peft_type").and_then(Value::as_str).unwrap_or("");
        if peft_type != "LORA" {
            return Err(Error::Adapter(format!(
                "adapter_config.json has peft_type {peft_type:?}; only \"LORA\" is supported"
            )));
        }
        let r =
            m.get("r").and_then(Value::as_u64).ok_or_else(|| {
                Error::Adapter("adapter_config.json lacks an integer \"r\"".into())
            })? as usize;
        let alpha = m.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0);
        let dropout = m.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
        let target_modules = match m.get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str().map(str::to_owned).ok_or_else(|| {
                        Error::Adapter("target_modules holds a non-string entry".into())
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            Some(Value::String(s)) => {
                return Err(Error::Adapter(format!(
                    "target_modules is a regular expression ({s:?}); only a list of names is supported"
                )));
            }
            _ => {
                return Err(Error::Adapter(
                    "adapter_config.json lacks target_modules".into(),
                ));
            }
        };
        reject_if(
            m,
            "use_dora",
            |v| v.as_bool() == Some(true),
            "DoRA adapters",
        )?;
        reject_if(
            m,
            "bias",
            |v| v.as_str().is_some_and(|s| s != "none"),
            "LoRA biases",
        )?;
        reject_if(m, "lora_bias", |v| v.as_bool() == Some(true), "LoRA biases")?;
        reject_if(m, "rank_pattern", non_empty, "per-module rank_pattern")?;
        reject_if(m, "alpha_pattern", non_empty, "per-module alpha_pattern")?;
        reject_if(
            m,
            "layers_to_transform",
            |v| !v.is_null(),
            "layers_to_transform",
        )?;
        reject_if(
            m,
            "fan_in_fan_out",
            |v| v.as_bool() == Some(true),
            "fan_in_fan_out",
        )?;
        let cfg = LoraConfig {
            r,
            alpha,
            dropout,
            target_modules,
            use_rslora: m
                .get("use_rslora")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            base_model_name_or_path: m
                .get("base_model_name_or_path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        };
        cfg.validate().map_err(|e| match e {
            Error::Adapter(m) => Error::Adapter(format!("adapter_config.json: {m}")),
            e => e,
        })?;
        Ok(cfg)
    }
}

fn non_empty(v: &Value) -> bool {
    v.as_object().is_some_and(|o| !o.is_empty())
}

fn reject_if(
    m: &Map<String, Value>,
    key: &str,
    bad: impl Fn(&Value) -> bool,
    what: &str,
) -> Result<()> {
    match m.get(key) {
        Some(v) if bad(v) => Err(Error::Adapter(format!(
            "adapter_config.json uses {what} ({key} = {v}), which lorafuse does not support"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_suffix_rule() {
        let mut c = LoraConfig::default();
        assert_eq!(
            c.sites().unwrap(),
            vec![Site::Query, Site::Key, Site::Value]
        );
        c.target_modules = vec!["output.dense".into()];
        assert_eq!(
            c.sites().unwrap(),
            vec![Site::AttentionOutput, Site::Output]
        );
        c.target_modules = vec!["dense".into()];
        assert_eq!(
            c.sites().unwrap(),
            vec![Site::AttentionOutput, Site::Intermediate, Site::Output]
        );
        c.target_modules = vec!["attention.output.dense".into()];
        assert_eq!(c.sites().unwrap(), vec![Site::AttentionOutput]);
        c.target_modules = vec!["qery".into()];
        assert!(c.sites().is_err());
    }

    #[test]
    fn json_round_trip_and_rejections() {
        let c = LoraConfig {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            ..Default::default()
        };
        let back = LoraConfig::from_peft_json(c.to_peft_json().as_bytes()).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.scaling(), 2.0);
        let dora = c
            .to_peft_json()
            .replace("\"use_dora\": false", "\"use_dora\": true");
        assert!(
            LoraConfig::from_peft_json(dora.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("DoRA")
        );
        assert!(LoraConfig::from_peft_json(b"[1,2]").is_err());
        assert!(LoraConfig::from_peft_json(b"{\"peft_type\":\"IA3\"}").is_err());
        assert!(LoraConfig::from_peft_json(b"not json").is_err());
    }
}
