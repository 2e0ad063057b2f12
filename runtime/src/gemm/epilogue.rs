//! The epilogue of a GEMM: what happens to each element of C after its last product slab.

use super::Activation;

/// What happens to each element of C after its last product slab: add a bias (one per row or
/// one per column), add a residual matrix (addressed with C's strides), then an activation,
/// then, if `gelu`, GELU (as generated code computes it; never together with an activation).
/// It runs on each register tile right after the microkernel stores it, while the tile is in
/// L1, instead of as separate passes over C in memory. ReLU keeps NaN, as the interpreter does.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue {
    pub bias: *const f32,
    pub bias_per_row: bool,
    pub residual: *const f32,
    pub act: Activation,
    pub gelu: bool,
}

impl Epilogue {
    pub const NONE: Epilogue = Epilogue { bias: std::ptr::null(), bias_per_row: false, residual: std::ptr::null(), act: Activation::None, gelu: false };

    /// The ABI's activation code for GELU (the others are `Activation::code`).
    pub const GELU_CODE: i64 = 3;

    pub(super) fn is_none(&self) -> bool {
        self.bias.is_null() && self.residual.is_null() && self.act == Activation::None && !self.gelu
    }

    /// The epilogue of the sub-product whose C starts at row `di`, column `dj`.
    ///
    /// # Safety
    /// The bias and the residual, moved to row `di` and column `dj`, stay inside the buffers
    /// they point into: `(di, dj)` is inside the product this epilogue was made for.
    pub(super) unsafe fn shifted(&self, di: usize, dj: usize, rsc: isize, csc: isize) -> Epilogue {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            let bias = if self.bias.is_null() { self.bias } else { self.bias.add(if self.bias_per_row { di } else { dj }) };
            let residual = if self.residual.is_null() { self.residual } else { self.residual.offset(di as isize * rsc + dj as isize * csc) };
            Epilogue { bias, residual, ..*self }
    
        }
    }

    /// Apply to the `rows × cols` tile of C at `c`, whose first element is C's `(i0, j0)`.
    ///
    /// # Safety
    /// `c` is C's `(i0, j0)` and the `rows × cols` tile there is valid and writable with C's
    /// strides; the bias holds the product's `m` (per row) or `n` floats, and the residual is
    /// valid at that tile with C's strides.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn apply(&self, c: *mut f32, i0: usize, j0: usize, rows: usize, cols: usize, rsc: isize, csc: isize) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            // One loop per combination, so the per-element work has no branches on the
            // epilogue's shape and vectorizes.
            const NO: u8 = 0;
            const ROW: u8 = 1;
            const COL: u8 = 2;
            let bias = match (self.bias.is_null(), self.bias_per_row) {
                (true, _) => NO,
                (false, true) => ROW,
                (false, false) => COL,
            };
            let t = Tile { c, i0, j0, rows, cols, rsc, csc };
            macro_rules! go {
                ($b:expr, $r:expr) => {
                    match self.act {
                        Activation::None => self.apply_as::<$b, $r, 0>(t),
                        Activation::Relu => self.apply_as::<$b, $r, 1>(t),
                        Activation::Relu6 => self.apply_as::<$b, $r, 2>(t),
                    }
                };
            }
            match (bias, self.residual.is_null()) {
                (NO, true) => go!(NO, false),
                (NO, false) => go!(NO, true),
                (ROW, true) => go!(ROW, false),
                (ROW, false) => go!(ROW, true),
                (_, true) => go!(COL, false),
                (_, false) => go!(COL, true),
            }
    
        }
    }

    /// # Safety
    /// As [`Epilogue::apply`] for the tile `t`.
    #[inline(always)]
    unsafe fn apply_as<const BIAS: u8, const RESIDUAL: bool, const ACT: u8>(&self, t: Tile) {
        // SAFETY: the caller upholds the contract in `# Safety` above.
        unsafe {
            for i in 0..t.rows {
                let row = t.c.offset(i as isize * t.rsc);
                let res_row = if RESIDUAL { self.residual.offset((t.i0 + i) as isize * t.rsc + t.j0 as isize * t.csc) } else { std::ptr::null() };
                let row_bias = if BIAS == 1 { *self.bias.add(t.i0 + i) } else { 0.0 };
                for j in 0..t.cols {
                    let p = row.offset(j as isize * t.csc);
                    let mut v = *p;
                    if BIAS == 1 {
                        v += row_bias;
                    } else if BIAS == 2 {
                        v += *self.bias.add(t.j0 + j);
                    }
                    if RESIDUAL {
                        v += *res_row.offset(j as isize * t.csc);
                    }
                    let v = match ACT {
                        0 => v,
                        1 => Activation::Relu.apply(v),
                        _ => Activation::Relu6.apply(v),
                    };
                    *p = if self.gelu { gelu(v) } else { v };
                }
            }
    
        }
    }

    pub(super) fn from_abi(bias: *const f32, bias_per_row: i64, residual: *const f32, act: i64) -> Epilogue {
        let gelu = act == Self::GELU_CODE;
        Epilogue { bias, bias_per_row: bias_per_row != 0, residual, act: if gelu { Activation::None } else { Activation::from_code(act) }, gelu }
    }
}

/// A block of C an [`Epilogue`] applies to.
#[derive(Clone, Copy)]
struct Tile {
    c: *mut f32,
    i0: usize,
    j0: usize,
    rows: usize,
    cols: usize,
    rsc: isize,
    csc: isize,
}


/// GELU on one value, the vector kernels' formula (`simd::Lanes::gelu`) in scalar form.
pub(super) fn gelu(x: f32) -> f32 {
    let xs = x * std::f32::consts::FRAC_1_SQRT_2;
    let ax = xs.abs();
    let mut poly = super::simd::ERF_COEFFS[0];
    for c in &super::simd::ERF_COEFFS[1..] {
        poly = poly.mul_add(ax, *c);
    }
    for _ in 0..4 {
        poly *= poly;
    }
    let y = 1.0 - 1.0 / poly;
    let erf = if xs < 0.0 { -y } else { y };
    x * 0.5 * (erf + 1.0)
}
