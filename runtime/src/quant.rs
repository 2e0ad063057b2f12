//! The int8 roundings every backend shares: the interpreter's `quantize` and `requantize`,
//! the integer GEMM's requantizing epilogue and the accelerator's activation unit call these
//! functions, so their codes are the same bits.

use crate::Activation;

/// The largest code: the range is symmetric, [-127, 127].
pub const QMAX: f32 = 127.0;

/// One f32 to its int8 code at `scale`: round half to even of `x / scale`, saturated. NaN
/// maps to 0.
///
/// Rounding adds and subtracts 1.5·2²³, which rounds to nearest-even exactly for |v| ≤ 2²²
/// (the default floating-point mode) and needs no SSE4.1 `roundps`, so loops over it
/// vectorize on any x86-64; clamping to ±128 first keeps |v| in that range without changing
/// any code (everything beyond ±127.5 saturates either way).
#[inline(always)]
pub fn quantize_value(x: f32, scale: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    let v = (x / scale).clamp(-128.0, 128.0);
    let rounded = (v + MAGIC) - MAGIC;
    rounded.clamp(-QMAX, QMAX) as i8
}

/// An i32 accumulator to its int8 code: dequantize at `scale` (the product of the input's
/// and the weight's scales), apply the activation in f32, quantize at `out_scale`. Identical
/// to running `dequantize`, the activation op and `quantize` one after another, which is why
/// the quantization pass may fold that chain into one `requantize`.
#[inline(always)]
pub fn requantize_value(acc: i32, scale: f32, activation: Activation, out_scale: f32) -> i8 {
    quantize_value(activation.apply(acc as f32 * scale), out_scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The add-and-subtract rounding against `round_ties_even` on ties, edges and a sweep
    /// of bit patterns of `x` (scale 1, and a scale that makes `x / scale` inexact).
    #[test]
    fn codes_match_round_half_to_even_then_saturate() {
        let reference = |x: f32, s: f32| (x / s).round_ties_even().clamp(-QMAX, QMAX) as i8;
        let edges = [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -127.5, 128.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0, 0.49999997, f32::MIN_POSITIVE];
        let sweep = (0..1u32 << 22).map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9) ^ (i >> 5)));
        for x in edges.into_iter().chain(sweep) {
            for s in [1.0f32, 0.0123, 3.7e-5] {
                assert_eq!(quantize_value(x, s), reference(x, s), "{x:e} / {s}");
            }
        }
    }
}
