//! Addressing in the channel-vector layouts: element `c·cs + p·ps` is channel `c` of pixel `p`
//! in NHWC and NCHW4c alike ([`Channels`]), so one kernel serves both.

use crate::ir::{Layout, TensorType};
use crate::jit::builder::KernelBuilder;
use cranelift_codegen::ir::{InstBuilder, Value};

pub(crate) fn shape4(t: &TensorType) -> [i64; 4] {
    let [a, b, c, d] = t.shape[..] else { unreachable!("rank checked") };
    [a as i64, b as i64, c as i64, d as i64]
}

/// How a channel-vector layout addresses one image `[C, H, W]`: the vector of channels
/// `c..c+4` of pixel `p` (pixels counted row-major) starts at element `c·cs + p·ps`.
#[derive(Clone, Copy)]
pub(crate) struct Channels {
    pub(crate) cs: i64,
    pub(crate) ps: i64,
    /// Elements per image.
    pub(crate) image: i64,
    pub(crate) layout: Layout,
}

impl Channels {
    pub(crate) fn of(t: &TensorType) -> Channels {
        let [_, c, h, w] = shape4(t);
        let (cs, ps) = match t.layout {
            Layout::Nhwc => (1, c),
            Layout::Nchw4c => (h * w, 4),
            Layout::RowMajor => (h * w, 1),
        };
        Channels { cs, ps, image: c * h * w, layout: t.layout }
    }

    /// Element offset of any single channel `c` (not only a vector's first) of pixel 0.
    pub(crate) fn scalar(&self, k: &mut KernelBuilder, c: Value) -> Value {
        match self.layout {
            Layout::Nhwc => c,
            Layout::RowMajor => k.b.ins().imul_imm_s(c, self.cs),
            // Block c/4 (each `cs·4` elements), lane c mod 4.
            Layout::Nchw4c => {
                let block = k.b.ins().ushr_imm_s(c, 2);
                let block = k.b.ins().imul_imm_s(block, self.cs * 4);
                let lane = k.b.ins().band_imm_s(c, 3);
                k.b.ins().iadd(block, lane)
            }
        }
    }
}
