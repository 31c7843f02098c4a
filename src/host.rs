//! Reading tensors back to host memory, asynchronously.
//!
//! On wasm + WebGPU a synchronous read fails, so every read in the engine goes through these
//! async helpers. Native callers drive them with [`block_on`].

use burn::tensor::Tensor;

use crate::error::{Error, Result};

/// Reads a float tensor as a flat `Vec<f32>` (row-major).
pub async fn floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| Error::Device(format!("{e:?}")))?;
    data.try_into_vec_as::<f32>()
        .map_err(|e| Error::Device(format!("{e:?}")))
}

/// Reads a one-element float tensor.
pub async fn scalar(t: Tensor<1>) -> Result<f32> {
    floats(t)
        .await?
        .first()
        .copied()
        .ok_or_else(|| Error::Device("empty tensor".into()))
}

/// Runs an engine future to completion on the current thread (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}
