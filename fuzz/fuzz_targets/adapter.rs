//! A PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`) for MiniLM's shapes: the
//! input is split at its first 0xFF byte into the two files. Also any safetensors bytes read in
//! full. Never a panic, never an allocation sized by the file before it is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lorafuse::error::Error;
use lorafuse::lora::peft;
use lorafuse::model::BertConfig;
use lorafuse::tensorfile::TensorFile;

fn minilm() -> BertConfig {
    serde_json::from_str(
        r#"{"hidden_size":384,"num_hidden_layers":6,"num_attention_heads":12,
            "intermediate_size":1536,"max_position_embeddings":512,"vocab_size":30522,
            "type_vocab_size":2,"layer_norm_eps":1e-12,"hidden_act":"gelu"}"#,
    )
    .expect("config")
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(f) = TensorFile::parse(bytes, "x.safetensors", Error::Adapter) {
        for name in f.names() {
            let _ = f.read(name);
        }
    }
    let at = bytes.iter().position(|&b| b == 0xFF).unwrap_or(bytes.len());
    let (config, weights) = (&bytes[..at], bytes.get(at + 1..).unwrap_or_default());
    let device = lorafuse::backend::cpu_device("flex").expect("flex");
    let _ = peft::load(config, weights, &minilm(), &device);
});
