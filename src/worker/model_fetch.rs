//! The default model's files in the worker: fetched from the page's own `models/` folder with
//! byte progress ([`Event::ModelProgress`]) and kept in the browser's Cache Storage, so a second
//! visit (or an offline one) reads them locally. The weights are the F16 copy
//! ([`DEFAULT_MODEL_F16`], 45 MB; widened to f32 on load), not the 91 MB F32 file; an F32 copy an
//! earlier version cached is deleted. Every file read, from the network or the cache, is checked
//! against the sha256 of [`DEFAULT_MODEL_FILES`] / [`DEFAULT_MODEL_F16`]; a damaged cache entry is
//! evicted and fetched again. Also the Cache Storage and body-reading helpers the user's own encoder
//! ([`super::own_model`]) uses.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, DedicatedWorkerGlobalScope, ReadableStreamDefaultReader, Response};

use super::protocol::{Event, ModelProgress};
use super::session::Host;
use super::web::{WebHost, js_err};
use crate::engine::{DEFAULT_MODEL_F16, DEFAULT_MODEL_FILES, DEFAULT_MODEL_NAME, ModelFiles};
use crate::train::now_sec;

/// Where the page serves the default model, relative to the page.
pub const MODEL_DIR: &str = "models/all-MiniLM-L6-v2/";

/// `path` (relative to the page) relative to this worker's script, which relative URLs resolve
/// against: the single-thread worker sits next to the page, the threaded one in `threads/`. Both
/// then name the same absolute URL, in fetches and Cache Storage keys alike.
pub(super) fn site(path: &str) -> String {
    match cfg!(feature = "threads") {
        true => format!("../{path}"),
        false => path.to_string(),
    }
}
/// Cache Storage bucket of the model files.
const CACHE_NAME: &str = "lorafuse-model-v1";

/// The default model's files, from the cache or the page's own `models/` folder.
pub(super) async fn fetch_model(host: &WebHost) -> Result<ModelFiles, String> {
    let cache = open_cache(&host.scope, CACHE_NAME).await;
    let cache = cache.as_ref();
    let files = ModelFiles {
        name: DEFAULT_MODEL_NAME.into(),
        config: fetch_cached(host, cache, "config.json").await?,
        tokenizer: fetch_cached(host, cache, "tokenizer.json").await?,
        weights: fetch_cached(host, cache, DEFAULT_MODEL_F16.0).await?,
        modules: None,
        pooling: None,
    };
    if let Some(c) = cache {
        // The F32 weights an earlier version of the page kept: 91 MB nothing reads any more.
        let old = site(&format!("{MODEL_DIR}{}", DEFAULT_MODEL_FILES[2].0));
        let _ = JsFuture::from(c.delete_with_str(&old)).await;
    }
    Ok(files)
}

/// Opens Cache Storage bucket `name`.
pub(super) async fn open_cache(scope: &DedicatedWorkerGlobalScope, name: &str) -> Option<Cache> {
    let caches = scope.caches().ok()?;
    JsFuture::from(caches.open(name))
        .await
        .ok()
        .map(JsCast::unchecked_into)
}

/// The sha256 a default model file must have, if `name` is one.
fn expected_sha256(name: &str) -> Option<&'static str> {
    DEFAULT_MODEL_FILES
        .iter()
        .chain([&DEFAULT_MODEL_F16])
        .find(|(n, _)| *n == name)
        .map(|(_, sha)| *sha)
}

/// A copy of `bytes` in a JavaScript buffer of its own. The threaded engine's memory is a
/// SharedArrayBuffer, and Web APIs that keep or hash bytes (`Response`, `crypto.subtle.digest`)
/// refuse views of shared memory; a copy works in both builds.
pub(super) fn js_bytes(bytes: &[u8]) -> Uint8Array {
    Uint8Array::from(bytes)
}

/// A `Response` holding a copy of `bytes` (for Cache Storage).
pub(super) fn response_of(bytes: &[u8]) -> Result<Response, JsValue> {
    Response::new_with_opt_js_u8_array(Some(&js_bytes(bytes)))
}

/// sha256 of `bytes` as lowercase hex: the browser's SubtleCrypto (native speed) where the page is
/// a secure context, else the `sha2` crate.
pub(super) async fn sha256_hex(scope: &DedicatedWorkerGlobalScope, bytes: &[u8]) -> String {
    let subtle = scope.crypto().ok().map(|c| c.subtle());
    if let Some(p) = subtle.and_then(|s| {
        s.digest_with_str_and_js_u8_array("SHA-256", &js_bytes(bytes))
            .ok()
    }) && let Ok(buf) = JsFuture::from(p).await
    {
        return hex::encode(Uint8Array::new(&buf).to_vec());
    }
    crate::workspace::task_files::sha256_hex(bytes)
}

/// One model file, from the cache when it is there and its sha256 is right, else from the network
/// (checked the same way, then cached). A damaged cache entry is deleted and fetched again.
async fn fetch_cached(
    host: &WebHost,
    cache: Option<&Cache>,
    name: &str,
) -> Result<Vec<u8>, String> {
    let url = site(&format!("{MODEL_DIR}{name}"));
    let want = expected_sha256(name);
    let hit = match cache {
        Some(c) => JsFuture::from(c.match_with_str(&url)).await.ok(),
        None => None,
    }
    .filter(|v| v.is_instance_of::<Response>());
    if let (Some(resp), Some(c)) = (hit, cache) {
        let bytes = read_body(host, resp.unchecked_into(), name, true).await;
        let sha = match &bytes {
            Ok(b) => Some(sha256_hex(&host.scope, b).await),
            Err(_) => None,
        };
        match (bytes, want) {
            (Ok(b), None) => return Ok(b),
            (Ok(b), Some(w)) if sha.as_deref() == Some(w) => return Ok(b),
            (result, _) => {
                let what = match (&result, &sha) {
                    (Err(e), _) => format!("could not be read ({e})"),
                    (Ok(b), Some(got)) => format!(
                        "was damaged ({} bytes, sha256 {}… instead of {}…)",
                        b.len(),
                        &got[..12],
                        &want.unwrap_or_default()[..12]
                    ),
                    (Ok(_), None) => "was damaged".into(),
                };
                let deleted = JsFuture::from(c.delete_with_str(&url)).await.is_ok();
                host.emit(Event::Notice(format!(
                    "the copy of {name} kept in this browser {what}; it was {} and is downloaded again",
                    if deleted { "removed" } else { "left (it could not be removed)" }
                )));
            }
        }
    }
    let resp = JsFuture::from(host.scope.fetch_with_str(&url))
        .await
        .map_err(|e| format!("{url}: {}", js_err(e)))?;
    let resp: Response = resp.unchecked_into();
    if !resp.ok() {
        return Err(format!(
            "{url}: the server answered {} {} (run ./scripts/setup to install the model)",
            resp.status(),
            resp.status_text()
        ));
    }
    let out = read_body(host, resp, name, false).await?;
    if let Some(w) = want {
        let got = sha256_hex(&host.scope, &out).await;
        if got != w {
            return Err(format!(
                "{url}: the server's file has sha256 {got}, not the {w} of the model this page \
                 was built for (run ./scripts/setup to install it again)"
            ));
        }
    }
    if let Some(c) = cache {
        let stored = response_of(&out).map(|r| c.put_with_str(&url, &r));
        match stored {
            Ok(p) => {
                if let Err(e) = JsFuture::from(p).await {
                    host.emit(Event::Notice(format!(
                        "the model could not be cached for the next visit: {}",
                        js_err(e)
                    )));
                }
            }
            Err(e) => host.emit(Event::Notice(format!(
                "the model could not be cached for the next visit: {}",
                js_err(e)
            ))),
        }
    }
    Ok(out)
}

/// Reads a response body with byte progress.
pub(super) async fn read_body(
    host: &WebHost,
    resp: Response,
    name: &str,
    cached: bool,
) -> Result<Vec<u8>, String> {
    let total = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u64>().ok());
    let mut out = Vec::with_capacity(total.unwrap_or(0).min(1 << 30) as usize);
    let body = resp
        .body()
        .ok_or_else(|| format!("{name}: empty response"))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut last = 0.0;
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("{name}: {}", js_err(e)))?;
        let done = Reflect::get(&chunk, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        if done {
            break;
        }
        if let Ok(v) = Reflect::get(&chunk, &"value".into()) {
            out.extend_from_slice(&Uint8Array::new(&v).to_vec());
        }
        let now = now_sec();
        if now - last > 0.1 {
            last = now;
            host.emit(Event::ModelProgress(ModelProgress {
                file: name.into(),
                loaded: out.len() as u64,
                total,
                cached,
            }));
        }
    }
    host.emit(Event::ModelProgress(ModelProgress {
        file: name.into(),
        loaded: out.len() as u64,
        total: Some(out.len() as u64),
        cached,
    }));
    Ok(out)
}
