//! PEFT's on-disk adapter weights: `adapter_model.safetensors`.
//!
//! Keys are `base_model.model.encoder.layer.{i}.{site}.lora_{A,B}.weight` with A `[r, in]` and
//! B `[out, r]`, F32, metadata `{"format": "pt"}` — exactly what PEFT's `save_pretrained` writes for
//! a `BertModel`. On reading, the in-memory adapter name (`lora_A.default.weight`) and a `bert.`
//! prefix (adapters saved from `BertFor…` models) are accepted. Any other tensor, a wrong shape, a
//! missing pair or a non-F32 dtype is an error naming the tensor. Reading and writing the file
//! itself goes through [`crate::tensorfile`].

use std::collections::BTreeMap;

use burn::tensor::{Device, TensorData};

use super::adapter::LoraAdapter;
use super::config::{LoraConfig, Site};
use crate::error::{Error, Result};
use crate::host;
use crate::model::BertConfig;
use crate::tensorfile::{self, TensorFile};

/// The weights' file name, in error messages.
const FILE: &str = "adapter_model.safetensors";

/// The safetensors key of one LoRA matrix, as PEFT writes it.
pub fn key(layer: usize, site: Site, which: char) -> String {
    format!(
        "base_model.model.encoder.layer.{layer}.{}.lora_{which}.weight",
        site.path()
    )
}

/// Parses a PEFT key into `(layer, site, 'A' | 'B')`.
fn parse_key(name: &str) -> Option<(usize, Site, char)> {
    let rest = name.strip_prefix("base_model.model.")?;
    let rest = rest.strip_prefix("bert.").unwrap_or(rest);
    let rest = rest.strip_prefix("encoder.layer.")?;
    let (idx, rest) = rest.split_once('.')?;
    let layer: usize = idx.parse().ok()?;
    let rest = rest.strip_suffix(".weight")?;
    let rest = rest.strip_suffix(".default").unwrap_or(rest);
    let (path, which) = if let Some(p) = rest.strip_suffix(".lora_A") {
        (p, 'A')
    } else {
        (rest.strip_suffix(".lora_B")?, 'B')
    };
    let site = Site::ALL.into_iter().find(|s| s.path() == path)?;
    Some((layer, site, which))
}

/// Host copies of an adapter's matrices in PEFT layout, keyed by PEFT name.
pub struct PeftTensors {
    /// name → (shape, values)
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl PeftTensors {
    /// Reads every pair of `adapter` back from the device (async: works on WebGPU).
    pub async fn from_adapter(adapter: &LoraAdapter) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for (i, layer) in adapter.layers.iter().enumerate() {
            for site in Site::ALL {
                if let Some(pair) = layer.get(site) {
                    let a = pair.a.val().transpose(); // [r, in]
                    let b = pair.b.val().transpose(); // [out, r]
                    let (sa, sb) = (a.dims().to_vec(), b.dims().to_vec());
                    tensors.insert(key(i, site, 'A'), (sa, host::floats(a).await?));
                    tensors.insert(key(i, site, 'B'), (sb, host::floats(b).await?));
                }
            }
        }
        Ok(Self { tensors })
    }

    /// Serialises to the bytes of `adapter_model.safetensors`.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        tensorfile::write(
            self.tensors
                .iter()
                .map(|(k, (shape, v))| (k.as_str(), &shape[..], &v[..])),
            &[("format", "pt")],
            FILE,
            Error::Adapter,
        )
    }
}

/// A copy of `adapter` on `device` with fresh parameters (a training run's starting point:
/// sequential transfer), made by writing and reading its PEFT files, so nothing is shared with
/// the original.
pub async fn trainable_copy(
    adapter: &LoraAdapter,
    encoder: &BertConfig,
    device: &Device,
) -> Result<LoraAdapter> {
    let (config, weights) = save(adapter).await?;
    load(config.as_bytes(), &weights, encoder, device)
}

/// Serialises `adapter` to `(adapter_config.json, adapter_model.safetensors)` bytes.
pub async fn save(adapter: &LoraAdapter) -> Result<(String, Vec<u8>)> {
    let weights = PeftTensors::from_adapter(adapter).await?.to_safetensors()?;
    Ok((adapter.config.to_peft_json(), weights))
}

/// Loads a PEFT adapter from its two files' bytes, checking it against the base model's shapes.
pub fn load(
    config_json: &[u8],
    safetensors: &[u8],
    model: &BertConfig,
    device: &Device,
) -> Result<LoraAdapter> {
    let config = LoraConfig::from_peft_json(config_json)?;
    let sites = config.sites()?;
    for &site in &sites {
        let (d_in, d_out) = site.dims(model.hidden_size, model.intermediate_size);
        if config.r > d_in.min(d_out) {
            return Err(Error::Adapter(format!(
                "adapter_config.json: r is {}, more than the {} dimensions of {} in this model",
                config.r,
                d_in.min(d_out),
                site.path()
            )));
        }
    }
    let file = TensorFile::parse(safetensors, FILE, Error::Adapter)?;
    let mut found: BTreeMap<(usize, Site), (Option<TensorData>, Option<TensorData>)> =
        BTreeMap::new();
    for name in file.names() {
        let (layer, site, which) = parse_key(name).ok_or_else(|| {
            Error::Adapter(format!(
                "unexpected tensor {name:?} in {FILE} (not a LoRA A/B of a BERT encoder layer)"
            ))
        })?;
        if layer >= model.num_hidden_layers {
            return Err(Error::Adapter(format!(
                "tensor {name:?} is for layer {layer}, but the model has {} layers",
                model.num_hidden_layers
            )));
        }
        if !sites.contains(&site) {
            return Err(Error::Adapter(format!(
                "tensor {name:?} targets {}, which adapter_config.json's target_modules {:?} does not select",
                site.path(),
                config.target_modules
            )));
        }
        let (d_in, d_out) = site.dims(model.hidden_size, model.intermediate_size);
        let expected = if which == 'A' {
            [config.r, d_in]
        } else {
            [d_out, config.r]
        };
        // Read unchecked, so a wrong shape can name adapter_config.json's r.
        let (values, shape) = file.read(name)?;
        if shape != expected {
            return Err(Error::Adapter(format!(
                "tensor {name:?} has shape {shape:?}, expected {expected:?} (r = {})",
                config.r
            )));
        }
        let data = TensorData::new(values, expected);
        let slot = found.entry((layer, site)).or_default();
        if which == 'A' {
            slot.0 = Some(data)
        } else {
            slot.1 = Some(data)
        }
    }
    let mut pairs = Vec::new();
    for layer in 0..model.num_hidden_layers {
        for &site in &sites {
            match found.remove(&(layer, site)) {
                Some((Some(a), Some(b))) => pairs.push((layer, site, a, b)),
                _ => {
                    return Err(Error::Adapter(format!(
                        "{FILE} lacks {} or {}",
                        key(layer, site, 'A'),
                        key(layer, site, 'B')
                    )));
                }
            }
        }
    }
    Ok(LoraAdapter::from_pairs(
        &config,
        model.num_hidden_layers,
        pairs,
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        for site in Site::ALL {
            for w in ['A', 'B'] {
                assert_eq!(parse_key(&key(3, site, w)), Some((3, site, w)));
            }
        }
        assert_eq!(
            parse_key(
                "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight"
            ),
            Some((0, Site::Query, 'A'))
        );
        assert_eq!(
            parse_key("base_model.model.pooler.dense.lora_A.weight"),
            None
        );
        assert_eq!(
            parse_key("encoder.layer.0.attention.self.query.weight"),
            None
        );
    }
}
