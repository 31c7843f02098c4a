//! The exact (erf-based) GELU of BERT's feed-forward block, vectorised on the CPU backends.
//!
//! burn's CPU backends compute `erf` with libm's scalar `erff`, one call per element (and `erff`
//! plus `expf` again in the backward pass): 13 % of an inference pass and 11 % of a LoRA training
//! step in profiles of `bench-speed` (README "Native"). On a CPU device, [`gelu`] instead reads the
//! values out and computes GELU (and, in training, its derivative) in loops the compiler
//! vectorises, with [`erf_f32`] and [`exp_f32`]:
//!
//! - inference (no autodiff): the values are replaced by GELU(x);
//! - training (an autodiff device): `y = x ⊙ s − c`, where `s = Φ(x) + x φ(x)` (GELU's derivative)
//!   and `c = x ⊙ x φ(x)` are constants computed from `x`. Its value is `x Φ(x)` = GELU(x) (to a
//!   rounding), and the only tracked operations are a product and a difference, so burn's autodiff
//!   passes back `grad ⊙ s`: GELU's gradient, with no `erf` in the backward pass.
//!
//! [`erf_f32`] is the rational approximation Eigen and TensorFlow/XLA use for single precision
//! (`generic_fast_erf_float`): an odd polynomial of degree 13 over an even one of degree 8, on `x`
//! clamped to [-4, 4] (where `erf` is ±1 in f32); against libm's double-precision `erf` its error
//! is 3.8e-7 at most (libm's own `erff`: 1 ulp). [`exp_f32`] is Cody–Waite range reduction to
//! `|r| ≤ ln 2 / 2` and a degree-7 Taylor polynomial, within 3e-7 relative. Both are checked below.
//!
//! Left out: the GPU keeps burn's `gelu` (and its backward pass), and so does every dtype but f32.

use burn::tensor::activation;
use burn::tensor::{DType, Tensor, TensorData};

/// GELU(x) = x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), elementwise.
///
/// # Shapes
/// - x: any; output: the same.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() != DType::F32 || !crate::backend::is_host(&x.device()) {
        return activation::gelu(x);
    }
    let device = x.device();
    if x.is_autodiff() {
        let shape = x.shape();
        let data = x.clone().into_data();
        let Ok(values) = data.as_slice::<f32>() else {
            return activation::gelu(x);
        };
        let (mut slope, mut excess) = (vec![0f32; values.len()], vec![0f32; values.len()]);
        for ((&v, s), c) in values.iter().zip(&mut slope).zip(&mut excess) {
            let x_pdf = v * INV_SQRT_2PI * exp_f32(-0.5 * v * v);
            *s = normal_cdf(v) + x_pdf;
            *c = v * x_pdf;
        }
        let slope = Tensor::from_data(TensorData::new(slope, shape.clone()), &device);
        let excess = Tensor::from_data(TensorData::new(excess, shape), &device);
        return x * slope - excess;
    }
    let mut data = x.into_data();
    match data.as_mut_slice::<f32>() {
        Ok(values) => gelu_in_place(values),
        // Not reachable for an f32 tensor; burn's own GELU is still right.
        Err(_) => return activation::gelu(Tensor::from_data(data, &device)),
    }
    Tensor::from_data(data, &device)
}

/// 1 / √(2π), the standard normal density at 0.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// [`gelu_f32`] over a slice.
pub fn gelu_in_place(values: &mut [f32]) {
    for v in values {
        *v = gelu_f32(*v);
    }
}

/// GELU of one value, `x Φ(x)`.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    x * normal_cdf(x)
}

/// Φ(x), the standard normal distribution function, with [`erf_f32`].
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf_f32(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `erf(x)` in single precision, branch-free (so a loop over it vectorises): Eigen's
/// `generic_fast_erf_float` rational approximation. Written with plain `a * b + c` rather than
/// `mul_add`, which without a target's FMA becomes a libm call per term.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    // Numerator: odd, alpha_1 … alpha_13.
    let mut p = x2 * -2.726_142_258_013_06e-10 + 2.770_681_424_959_02e-08;
    p = x2 * p + -2.101_024_020_825_08e-06;
    p = x2 * p + -5.692_506_394_623_46e-05;
    p = x2 * p + -7.349_906_303_268_55e-04;
    p = x2 * p + -2.954_599_808_540_25e-03;
    p = x2 * p + -1.609_603_332_624_15e-02;
    p *= x;
    // Denominator: even, beta_0 … beta_8.
    let mut q = x2 * -1.456_607_184_649_96e-05 + -2.133_740_552_789_05e-04;
    q = x2 * q + -1.682_826_974_382_03e-03;
    q = x2 * q + -7.373_329_167_204_68e-03;
    q = x2 * q + -1.426_473_905_141_89e-02;
    p / q
}

/// `exp(x)` in single precision, branch-free: `x = k ln 2 + r` with `|r| ≤ ln 2 / 2` (Cody–Waite:
/// `ln 2` in two parts, so `r` keeps its low bits), `e^r` by its Taylor polynomial of degree 7
/// (truncation below 6e-9), and `2^k` put into the exponent bits. Inputs are clamped to
/// [-87, 88], so the result is a normal f32 (underflow gives `e^-87`, not 0).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_751_953_125;
    const LN2_LO: f32 = 1.428_606_765_330_187e-6;
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer without `round()`,
    // which is a libm call on targets without SSE4.1.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2_E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = r * (1.0 / 5040.0) + 1.0 / 720.0;
    p = r * p + 1.0 / 120.0;
    p = r * p + 1.0 / 24.0;
    p = r * p + 1.0 / 6.0;
    p = r * p + 0.5;
    p = r * p + 1.0;
    p = r * p + 1.0;
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn erf_f64(x: f64) -> f64 {
        libm::erf(x)
    }

    #[test]
    fn erf_is_within_5e7_of_double_precision() {
        let mut worst = 0f64;
        let mut x = -10f32;
        while x < 10.0 {
            worst = worst.max((erf_f32(x) as f64 - erf_f64(x as f64)).abs());
            x += 1e-4;
        }
        assert!(worst < 5e-7, "max |erf error| {worst:e}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert!((erf_f32(f32::INFINITY) - 1.0).abs() < 1e-6);
        assert!((erf_f32(f32::NEG_INFINITY) + 1.0).abs() < 1e-6);
        assert!(erf_f32(f32::NAN).is_nan());
    }

    /// The largest absolute difference between two f32 tensors' values.
    fn max_abs_diff(a: TensorData, b: TensorData) -> f32 {
        let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn fast_path_agrees_with_burns_gelu() {
        let device = Device::flex();
        let values: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) / 250.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [40, 100]), &device);
        let worst = max_abs_diff(gelu(x.clone()).into_data(), activation::gelu(x).into_data());
        // |x| ≤ 8 here, so 2e-6 is a few ulps of the largest outputs.
        assert!(worst < 2e-6, "max |difference| {worst:e}");
    }

    #[test]
    fn exp_is_within_3e7_relative() {
        let mut worst = 0f64;
        let mut x = -87f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64 - want) / want).abs());
            x += 1e-3;
        }
        assert!(worst < 3e-7, "max relative |exp error| {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1e4) > 0.0 && exp_f32(-1e4) < 1e-37);
    }

    #[test]
    fn training_path_has_burns_values_and_gradient() {
        let device = Device::flex().autodiff();
        let values: Vec<f32> = (0..2000).map(|i| (i as f32 - 1000.0) / 125.0).collect();
        let leaf = || {
            Tensor::<2>::from_data(TensorData::new(values.clone(), [20, 100]), &device)
                .require_grad()
        };
        // Weights make each element's gradient distinct.
        let w = Tensor::<2>::from_data(
            TensorData::new((0..2000).map(|i| 1.0 + (i % 7) as f32).collect(), [20, 100]),
            &device,
        );
        let (x, y) = (leaf(), leaf());
        let ours = gelu(x.clone());
        let burns = activation::gelu(y.clone());
        let close = |a: TensorData, b: TensorData, tol: f32, what: &str| {
            let worst = max_abs_diff(a, b);
            assert!(worst < tol, "{what}: max |difference| {worst:e}");
        };
        close(
            ours.clone().into_data(),
            burns.clone().into_data(),
            4e-6,
            "values",
        );
        let gx = (ours * w.clone()).sum().backward();
        let gy = (burns * w).sum().backward();
        let (gx, gy) = (x.grad(&gx).unwrap(), y.grad(&gy).unwrap());
        close(gx.into_data(), gy.into_data(), 1e-5, "gradients");
    }
}
