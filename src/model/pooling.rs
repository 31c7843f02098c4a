//! Masked mean pooling over tokens (sentence-transformers' default): the average of the hidden
//! states whose attention mask is 1, [CLS] and [SEP] included, padding excluded.

use burn::tensor::Tensor;

/// # Shapes
/// - hidden: `[batch, seq, d]`
/// - mask: `[batch, seq]` with 1.0 for tokens and 0.0 for padding
/// - output: `[batch, d]`
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let m = mask.unsqueeze_dim::<3>(2); // [b, t, 1]
    let summed = (hidden * m.clone()).sum_dim(1).squeeze_dim::<2>(1); // [b, d]
    let counts = m.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9); // [b, 1]
    summed / counts
}

/// Row-wise L2 normalisation (`torch.nn.functional.normalize`, eps 1e-12).
///
/// # Shapes
/// - x: `[batch, d]` → `[batch, d]`
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}
