//! Window geometry shared by the row-major window kernels (pooling, int8 convolutions):
//! which outputs of a row can run as vectors, and loops over the window rows and taps that
//! lie inside the image.

use crate::jit::builder::KernelBuilder;
use crate::ops::Pool;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};

/// The outputs of a row-major pooling's rows that can run as vectors: every tap column of
/// each is inside the row, and so is every vector load that reads them.
pub(crate) struct VectorSpan {
    /// Outputs per vector step.
    pub lanes: i64,
    /// Outputs `lo..hi` of each row, `hi − lo` a multiple of `lanes`.
    pub lo: i64,
    pub hi: i64,
}

impl VectorSpan {
    /// The span for a pooling over rows of `w` elements into rows of `ow` outputs, with
    /// `lanes` outputs per step whose taps are read as `loaded` consecutive elements from the
    /// step's first tap column (`lanes · stride`, or one vector's worth when that is more).
    /// `None` when no output qualifies.
    pub fn of(p: &Pool, w: i64, ow: i64, lanes: i64, loaded: i64) -> Option<VectorSpan> {
        VectorSpan::over_row([p.stride[1] as i64, p.kernel[1] as i64, p.padding[1] as i64], w, ow, lanes, loaded)
    }

    /// [`VectorSpan::of`] for any window sliding along rows: `[stride, width, left padding]`.
    pub fn over_row([sw, kw, pl]: [i64; 3], w: i64, ow: i64, lanes: i64, loaded: i64) -> Option<VectorSpan> {
        // First output whose first tap is inside the row; last step start whose last tap's
        // load (`loaded` elements from column `ox0·sw + kw − 1 − pl`) ends inside it.
        let lo = (pl + sw - 1) / sw;
        let last_start = w - loaded - (kw - 1) + pl;
        if last_start < lo * sw || ow - lo < lanes {
            return None;
        }
        let steps = ((last_start / sw - lo) / lanes + 1).min((ow - lo) / lanes);
        Some(VectorSpan { lanes, lo, hi: lo + steps * lanes })
    }
}

/// Runs `body(k, ky, iy)` for each row `ky` of the window of output row `y` that lies inside
/// the image (`iy = y·stride + ky − top padding`, in `0..h`); rows in the padding are
/// skipped. The vector bodies of pooling and depthwise convolution, whose columns are
/// already known to be inside, test only this.
pub(crate) fn for_window_rows_inside(k: &mut KernelBuilder, y: Value, [kh, sh, pt, h]: [i64; 4], mut body: impl FnMut(&mut KernelBuilder, i64, Value)) {
    for ky in 0..kh {
        let iy = k.b.ins().imul_imm_s(y, sh);
        let iy = k.b.ins().iadd_imm_s(iy, ky - pt);
        let y_ok = k.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, h);
        k.if_else(y_ok, |k| body(k, ky, iy), |_| {});
    }
}

/// A window sliding over `h × w` planes: its size, strides, dilation and top and left
/// padding, as the int8 window kernels use them.
pub(crate) struct Window {
    pub h: i64,
    pub w: i64,
    pub kh: i64,
    pub kw: i64,
    pub sh: i64,
    pub sw: i64,
    pub dh: i64,
    pub dw: i64,
    pub pt: i64,
    pub pl: i64,
}

/// Runs `tap(k, ky, kx, at)` for each tap of the window of output `(y, xo)` that lies inside
/// the image, `at = iy·w + ix` its element within the plane. Taps in the padding are skipped
/// by a bounds test, so no address is formed outside the image.
pub(crate) fn for_each_tap_inside(k: &mut KernelBuilder, win: &Window, y: Value, xo: Value, mut tap: impl FnMut(&mut KernelBuilder, i64, i64, Value)) {
    let &Window { h, w, kh, kw, sh, sw, dh, dw, pt, pl } = win;
    for ky in 0..kh {
        for kx in 0..kw {
            let iy = k.b.ins().imul_imm_s(y, sh);
            let iy = k.b.ins().iadd_imm_s(iy, ky * dh - pt);
            let ix = k.b.ins().imul_imm_s(xo, sw);
            let ix = k.b.ins().iadd_imm_s(ix, kx * dw - pl);
            let y_ok = k.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, h);
            let x_ok = k.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, ix, w);
            let inside = k.b.ins().band(y_ok, x_ok);
            k.if_else(
                inside,
                |k| {
                    let at = k.b.ins().imul_imm_s(iy, w);
                    let at = k.b.ins().iadd(at, ix);
                    tap(k, ky, kx, at)
                },
                |_| {},
            );
        }
    }
}
