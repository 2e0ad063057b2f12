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
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
