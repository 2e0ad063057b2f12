//! The activation a fused product ends with, shared by everything that applies one: the
//! interpreter's `requantize`, the JIT's GEMM epilogues (through the runtime ABI) and the
//! accelerator's activation unit. One definition, so they cannot drift apart.

/// `none`, `relu` or `relu6` (the activations a product's epilogue or an activation unit can
/// apply as it stores a result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

impl Activation {
    /// The name IR text uses.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
        }
    }

    pub fn from_name(s: &str) -> Option<Activation> {
        [Activation::None, Activation::Relu, Activation::Relu6].into_iter().find(|a| a.name() == s)
    }

    /// Exactly what the `relu`/`relu6` ops compute on one value; NaN propagates, as in
    /// PyTorch (`f32::max` would turn it into 0).
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
            // `clamp` keeps NaN and −0 as the comparisons would.
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// The code the runtime ABI carries: 0 none, 1 ReLU, 2 ReLU6.
    pub fn code(self) -> i64 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
        }
    }

    /// The activation an ABI code names; unknown codes are none.
    pub fn from_code(code: i64) -> Activation {
        [Activation::Relu, Activation::Relu6].into_iter().find(|a| a.code() == code).unwrap_or(Activation::None)
    }
}

#[cfg(test)]
mod tests {
    use super::Activation;

    #[test]
    fn names_and_codes_round_trip_and_nan_propagates() {
        for a in [Activation::None, Activation::Relu, Activation::Relu6] {
            assert_eq!(Activation::from_name(a.name()), Some(a));
            assert_eq!(Activation::from_code(a.code()), a);
            assert!(a.apply(f32::NAN).is_nan());
        }
        assert_eq!(Activation::Relu.apply(-0.5), 0.0);
        assert_eq!(Activation::Relu6.apply(7.0), 6.0);
        assert_eq!(Activation::Relu6.apply(3.0), 3.0);
    }
}
