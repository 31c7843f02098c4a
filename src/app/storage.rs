//! The saved workspace in IndexedDB (one bundle zip under one key), with the `rexie` crate.

use js_sys::Uint8Array;
use rexie::{ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::{JsCast, JsValue};

const DB: &str = "lorafuse";
const STORE: &str = "workspace";
const KEY: &str = "current";

/// The error with the browser's own message (rexie's says only "idb error"), so a full storage
/// shows as `QuotaExceededError`.
fn describe(e: rexie::Error) -> String {
    match e {
        rexie::Error::IdbError(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

async fn open() -> Result<Rexie, String> {
    Rexie::builder(DB)
        .version(1)
        .add_object_store(ObjectStore::new(STORE))
        .build()
        .await
        .map_err(describe)
}

/// Saves the workspace bundle, replacing the previous one.
pub async fn save(bundle: &[u8]) -> Result<(), String> {
    let db = open().await?;
    let tx = db
        .transaction(&[STORE], TransactionMode::ReadWrite)
        .map_err(describe)?;
    let store = tx.store(STORE).map_err(describe)?;
    let value: JsValue = Uint8Array::from(bundle).into();
    store
        .put(&value, Some(&JsValue::from_str(KEY)))
        .await
        .map_err(describe)?;
    tx.done().await.map_err(describe)?;
    Ok(())
}

/// The saved bundle, if any.
pub async fn load() -> Result<Option<Vec<u8>>, String> {
    let db = open().await?;
    let tx = db
        .transaction(&[STORE], TransactionMode::ReadOnly)
        .map_err(describe)?;
    let store = tx.store(STORE).map_err(describe)?;
    let v = store.get(JsValue::from_str(KEY)).await.map_err(describe)?;
    Ok(v.filter(|v| v.is_instance_of::<Uint8Array>())
        .map(|v| Uint8Array::new(&v).to_vec()))
}
