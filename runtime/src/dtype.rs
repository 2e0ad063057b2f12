//! Element types of tensors.

use std::fmt;

/// The element type of a tensor value.
///
/// `F16` and `BF16` values are *stored* as `f32` in [`crate::Tensor`] but every value is
/// exactly representable in the narrow type: producers round on write. That keeps one float
/// storage path while the type still says how much precision a value really has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    I8,
    I32,
}

impl DType {
    /// Size of one element in bytes, as stored in memory by a real backend.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 => 1,
        }
    }

    pub fn is_float(self) -> bool {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => true,
            DType::I8 | DType::I32 => false,
        }
    }

    /// The spelling used in `.nn` sources and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::I32 => "i32",
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        Some(match s {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "i8" => DType::I8,
            "i32" => DType::I32,
            _ => return None,
        })
    }

    /// Round an `f32` to the nearest value representable in this float type.
    pub fn round_f32(self, v: f32) -> f32 {
        match self {
            DType::F32 | DType::I8 | DType::I32 => v,
            DType::F16 => half::f16::from_f32(v).to_f32(),
            DType::BF16 => round_bf16(v),
        }
    }

    /// [`DType::round_f32`] over a buffer: how compiled code rounds an f16/bf16 result after
    /// computing it in f32.
    pub fn round_slice(self, values: &mut [f32]) {
        match self {
            DType::F32 | DType::I8 | DType::I32 => {}
            DType::F16 => values.iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32()),
            // Branch-free but for NaN, so the loop vectorizes.
            DType::BF16 => values.iter_mut().for_each(|v| *v = round_bf16(*v)),
        }
    }
}

/// `v` rounded to the nearest bfloat16 (ties to even), as `half::bf16::from_f32` rounds it
/// (NaN stays NaN, made quiet), in integer arithmetic: adding `0x7fff` plus the lowest kept
/// bit carries into the kept bits exactly when the dropped half is above, or at and odd.
#[inline]
pub fn round_bf16(v: f32) -> f32 {
    let bits = v.to_bits();
    let rounded = if v.is_nan() { bits | 0x0040_0000 } else { bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) };
    f32::from_bits(rounded & 0xffff_0000)
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_agrees_with_half_on_edges_and_a_sweep_of_bit_patterns() {
        let edges = [0.0f32, -0.0, 1.0, f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, f32::MIN_POSITIVE, f32::from_bits(1), f32::from_bits(0x7f7f_8000), f32::from_bits(0x3f80_8000), f32::from_bits(0x3f81_8000)];
        let sweep = (0..1u64 << 22).map(|i| f32::from_bits((i as u32).wrapping_mul(0x9e37_79b9) ^ (i as u32 >> 3)));
        for v in edges.into_iter().chain(sweep) {
            let want = half::bf16::from_f32(v).to_f32();
            assert_eq!(round_bf16(v).to_bits(), want.to_bits(), "{v:e} ({:#010x})", v.to_bits());
        }
    }
}
