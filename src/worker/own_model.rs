//! The user's own encoder, on the worker's side: checks the files the page sends (they must load
//! and embed a sentence on the CPU backend), keeps them in Cache Storage (bucket
//! `lorafuse-own-model-v1`, with a manifest of names, sizes and sha256), and reads them back,
//! checked against that manifest, when the page starts on it. The default model keeps its own
//! bucket (`web.rs`), so switching back costs no download.
//!
//! Left out: several own encoders at once (a new one replaces the last).

use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;

use super::model_fetch::{open_cache, read_body, response_of, sha256_hex, site};
use super::protocol::{Event, NamedFile};
use super::web::{WebHost, js_err};
use crate::engine::{Engine, ModelFiles};
use crate::worker::session::Host;

/// Cache Storage bucket of the user's encoder.
const BUCKET: &str = "lorafuse-own-model-v1";
/// Key prefix of its files (relative URLs, resolved against the worker's).
const PREFIX: &str = "own-model/";
/// Key of the manifest, written last: a bucket without it holds no usable model.
const MANIFEST: &str = "own-model/manifest.json";

#[derive(Serialize, Deserialize)]
struct Manifest {
    name: String,
    files: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    bytes: u64,
    sha256: String,
}

/// Checks and keeps the encoder; emits [`Event::ModelInstalled`] or an error (nothing kept).
pub async fn install(host: &WebHost, name: &str, files: Vec<NamedFile>) {
    match keep(host, name, files).await {
        Ok(ev) => host.emit(ev),
        Err(message) => host.emit(Event::Error {
            context: "installing the encoder".into(),
            message,
        }),
    }
}

async fn keep(host: &WebHost, name: &str, files: Vec<NamedFile>) -> Result<Event, String> {
    let model =
        ModelFiles::from_named(name, files.into_iter().map(|f| (f.name, f.bytes)).collect())
            .map_err(|e| e.to_string())?;
    let cpu = crate::backend::cpu_device(crate::backend::DEFAULT_CPU).map_err(|e| e.to_string())?;
    let engine = Engine::from_files(&model, &cpu).map_err(|e| e.to_string())?;
    let v = engine
        .embed(&["A sentence to check the encoder."], None)
        .await
        .map_err(|e| format!("the encoder loaded but could not embed a sentence: {e}"))?;
    if v.first().is_none_or(|v| v.iter().any(|x| !x.is_finite())) {
        return Err("the encoder gives no finite sentence vector".into());
    }
    let caches = host.scope.caches().map_err(js_err)?;
    JsFuture::from(caches.delete(BUCKET))
        .await
        .map_err(js_err)?;
    let cache = open_cache(&host.scope, BUCKET)
        .await
        .ok_or("the browser's Cache Storage cannot be opened")?;
    let mut entries = Vec::new();
    for (file, bytes) in model.named() {
        let resp = response_of(bytes).map_err(js_err)?;
        JsFuture::from(cache.put_with_str(&site(&format!("{PREFIX}{file}")), &resp))
            .await
            .map_err(|e| format!("{file} could not be stored in this browser: {}", js_err(e)))?;
        entries.push(Entry {
            name: file.into(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&host.scope, bytes).await,
        });
    }
    let manifest = Manifest {
        name: model.name.clone(),
        files: entries,
    };
    let json = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let resp = response_of(&json).map_err(js_err)?;
    JsFuture::from(cache.put_with_str(&site(MANIFEST), &resp))
        .await
        .map_err(js_err)?;
    Ok(Event::ModelInstalled {
        name: model.name,
        bytes: model.weights.len() as u64,
    })
}

/// The kept encoder's files, each checked against the manifest's sha256.
pub async fn read(host: &WebHost) -> Result<ModelFiles, String> {
    let gone = "your encoder is no longer in this browser's storage (pick it again)";
    let cache = open_cache(&host.scope, BUCKET).await.ok_or(gone)?;
    let get = |key: String| {
        let cache = cache.clone();
        async move {
            JsFuture::from(cache.match_with_str(&key))
                .await
                .ok()
                .filter(|v| v.is_instance_of::<Response>())
                .map(|v| v.unchecked_into::<Response>())
        }
    };
    let resp = get(site(MANIFEST)).await.ok_or(gone)?;
    let bytes = read_body(host, resp, "manifest.json", true).await?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("{gone}: manifest.json: {e}"))?;
    let mut files = Vec::new();
    for e in &manifest.files {
        let resp = get(site(&format!("{PREFIX}{}", e.name)))
            .await
            .ok_or_else(|| format!("{gone}: {} is missing", e.name))?;
        let bytes = read_body(host, resp, &e.name, true).await?;
        if sha256_hex(&host.scope, &bytes).await != e.sha256 {
            return Err(format!(
                "the copy of your encoder's {} kept in this browser is damaged (pick it again)",
                e.name
            ));
        }
        files.push((e.name.clone(), bytes));
    }
    ModelFiles::from_named(&manifest.name, files).map_err(|e| e.to_string())
}
