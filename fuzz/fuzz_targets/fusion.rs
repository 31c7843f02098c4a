//! A fused model's two files for a model of width 32: the input is split at its first 0xFF byte
//! into `fusion_manifest.json` and `fusion.safetensors`. Never a panic, never a layer allocated
//! from a manifest before it is checked against the model and the limits.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use lorafuse::fusion::files;

fuzz_target!(|bytes: &[u8]| {
    let at = bytes.iter().position(|&b| b == 0xFF).unwrap_or(bytes.len());
    let mut f = BTreeMap::new();
    f.insert(files::MANIFEST.to_string(), bytes[..at].to_vec());
    f.insert(
        files::WEIGHTS.to_string(),
        bytes.get(at + 1..).unwrap_or_default().to_vec(),
    );
    let device = lorafuse::backend::cpu_device("flex").expect("flex");
    let _ = files::from_files(&f, 32, &device);
});
