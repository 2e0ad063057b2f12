//! `max_pool`, `avg_pool` and `global_avg_pool` over NCHW input.
//!
//! Padding never wins a max and is never counted in an average (ONNX `count_include_pad=0`):
//! both only look at the in-bounds cells of a window.

use super::conv::{parse_padding, window_out};
use super::{checked_type, common_float, Built, CallArgs, Const, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

impl PoolKind {
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "max_pool",
            PoolKind::Avg => "avg_pool",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`
    pub padding: [usize; 4],
}

fn rank4(args: &CallArgs) -> OpResult<()> {
    let x = args.operand(0);
    if x.rank() != 4 {
        return Err(OpError::new(format!("{} expects an NCHW input of rank 4, but `x` has shape {}", args.op, ShapeDisplay(&x.shape))).at(args.operands[0].span.clone()));
    }
    Ok(())
}

impl Pool {
    pub fn build(kind: PoolKind, args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        rank4(args)?;
        let kernel = match args.pair("kernel", 1)? {
            Some(k) => k,
            None => return Err(args.missing("kernel", "give the window size, e.g. `kernel=2`")),
        };
        let stride = args.pair("stride", 1)?.unwrap_or(kernel);
        let padding_span = args.keyword_span("padding");
        let padding = parse_padding(args, kernel, [1, 1], stride)?;
        // PyTorch's rule; it also guarantees every window holds at least one real cell.
        if padding[0].max(padding[2]) > kernel[0] / 2 || padding[1].max(padding[3]) > kernel[1] / 2 {
            return Err(OpError::new(format!("{}: padding {padding:?} is more than half the kernel {kernel:?}", kind.name()))
                .at(padding_span.unwrap_or(args.span.clone()))
                .help("a window would then cover only padding; use padding of at most kernel/2"));
        }
        args.finish(&["kernel", "stride", "padding"])?;
        Built::plain(Op::Pool(Pool { kind, kernel, stride, padding }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let name = self.kind.name();
        // int8 codes order like the values they stand for, so a max of codes is the code of
        // the max: quantization may move across a max pool.
        let dtype = if self.kind == PoolKind::Max { super::float_or_codes(name, operands)? } else { common_float(name, operands)? };
        let x = operands[0];
        if x.rank() != 4 {
            return Err(OpError::new(format!("{name} expects rank 4, got {}", ShapeDisplay(&x.shape))));
        }
        let p = self.padding;
        let oh = window_out(x.shape[2], p[0], p[2], self.kernel[0], 1, self.stride[0]);
        let ow = window_out(x.shape[3], p[1], p[3], self.kernel[1], 1, self.stride[1]);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(OpError::new(format!("{name}: the {:?} window does not fit the input of shape {}", self.kernel, ShapeDisplay(&x.shape))));
        };
        checked_type(name, dtype, vec![x.shape[0], x.shape[1], oh, ow])
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], out_shape: &[usize]) -> Vec<f32> {
        let [n, c, h, w] = shapes[0][..] else { unreachable!("pool input has rank 4") };
        let (oh, ow) = (out_shape[2], out_shape[3]);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for plane in x[0].chunks_exact(h * w) {
            for y in 0..oh {
                for xo in 0..ow {
                    let y0 = (y * self.stride[0]) as isize - self.padding[0] as isize;
                    let x0 = (xo * self.stride[1]) as isize - self.padding[1] as isize;
                    let ys = y0.max(0) as usize..((y0 + self.kernel[0] as isize).min(h as isize)) as usize;
                    let xs = x0.max(0) as usize..((x0 + self.kernel[1] as isize).min(w as isize)) as usize;
                    let cells = ys.flat_map(|yy| xs.clone().map(move |xx| plane[yy * w + xx]));
                    out.push(match self.kind {
                        // NaN wins, as in PyTorch (`f32::max` would skip it).
                        PoolKind::Max => cells.fold(f32::NEG_INFINITY, |m, v| if v.is_nan() || m.is_nan() { f32::NAN } else { m.max(v) }),
                        PoolKind::Avg => {
                            let (sum, count) = cells.fold((0.0f64, 0usize), |(s, k), v| (s + v as f64, k + 1));
                            (sum / count as f64) as f32
                        }
                    });
                }
            }
        }
        out
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        let list = |v: &[usize]| Const::List(v.iter().map(|&x| Const::Int(x as i64)).collect());
        vec![("kernel", list(&self.kernel)), ("stride", list(&self.stride)), ("padding", list(&self.padding))]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalAvgPool;

impl GlobalAvgPool {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        rank4(args)?;
        args.finish(&[])?;
        Built::plain(Op::GlobalAvgPool(GlobalAvgPool))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = common_float("global_avg_pool", operands)?;
        let x = operands[0];
        if x.rank() != 4 {
            return Err(OpError::new(format!("global_avg_pool expects rank 4, got {}", ShapeDisplay(&x.shape))));
        }
        Ok(TensorType::new(dtype, vec![x.shape[0], x.shape[1], 1, 1]))
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let hw = shapes[0][2] * shapes[0][3];
        x[0].chunks_exact(hw).map(nnc_runtime::gemm::pool::plane_mean).collect()
    }
}

impl Pool {
    /// A max pool only selects values, so int8 codes pass through it; an average does not.
    pub fn traits(&self) -> super::Traits {
        let codes = match self.kind {
            PoolKind::Max => super::Codes::Moves,
            PoolKind::Avg => super::Codes::Floats,
        };
        super::Traits { codes, ..super::Traits::PLAIN }
    }
}

impl GlobalAvgPool {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}
