//! `conv2d`: 2-D convolution over NCHW input, PyTorch semantics (cross-correlation), with
//! stride, asymmetric padding, dilation and groups.

use super::{checked_type, expect_shape, Built, CallArgs, Const, ImplicitParam, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};

#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

const KEYWORDS: &[&str] = &["filters", "kernel", "stride", "padding", "dilation", "groups", "bias"];

/// Parse `padding=`: an int, `[ph, pw]`, `[top, left, bottom, right]` or `"same"`.
pub fn parse_padding(args: &mut CallArgs, kernel: [usize; 2], dilation: [usize; 2], stride: [usize; 2]) -> OpResult<[usize; 4]> {
    let op = args.op;
    let Some((value, span)) = args.take("padding") else { return Ok([0; 4]) };
    let ints = match &value {
        Const::Str(s) if s == "same" => {
            if stride != [1, 1] {
                return Err(OpError::new(format!("{op}: padding=\"same\" needs stride 1, but stride is {stride:?}")).at(span));
            }
            // PyTorch: total padding d·(k-1), the odd extra row/column at the bottom/right.
            let total = [dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)];
            return Ok([total[0] / 2, total[1] / 2, total[0] - total[0] / 2, total[1] - total[1] / 2]);
        }
        Const::Str(s) => return Err(OpError::new(format!("{op}: unknown padding mode \"{s}\"")).at(span).help("use an integer, a list of 2 or 4 integers, or \"same\"")),
        Const::Int(v) => vec![*v],
        Const::List(items) => items
            .iter()
            .map(|c| match c {
                Const::Int(v) => Ok(*v),
                other => Err(OpError::new(format!("{op}: `padding` entries must be integers, not {}", other.kind_name())).at(span.clone())),
            })
            .collect::<OpResult<Vec<i64>>>()?,
        other => return Err(OpError::new(format!("{op}: `padding` must be an integer, a list or \"same\", not {}", other.kind_name())).at(span)),
    };
    if ints.iter().any(|&p| !(0..=1 << 20).contains(&p)) {
        return Err(OpError::new(format!("{op}: padding must be non-negative, got {ints:?}")).at(span));
    }
    let p: Vec<usize> = ints.iter().map(|&v| v as usize).collect();
    match p[..] {
        [a] => Ok([a, a, a, a]),
        [h, w] => Ok([h, w, h, w]),
        [t, l, b, r] => Ok([t, l, b, r]),
        _ => Err(OpError::new(format!("{op}: `padding` takes 1, 2 or 4 values, not {}", p.len())).at(span)),
    }
}

/// Output size of a sliding window along one axis, or `None` if the window does not fit.
pub fn window_out(input: usize, pad_lo: usize, pad_hi: usize, kernel: usize, dilation: usize, stride: usize) -> Option<usize> {
    let padded = input + pad_lo + pad_hi;
    let span = dilation * (kernel - 1) + 1;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

impl Conv2d {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 3, "x, and optionally weight and bias")?;
        let x = args.operand(0).clone();
        if x.rank() != 4 {
            return Err(OpError::new(format!("conv2d expects an NCHW input of rank 4, but `x` has shape {}", ShapeDisplay(&x.shape))).at(args.operands[0].span.clone()));
        }
        let stride = args.pair("stride", 1)?.unwrap_or([1, 1]);
        let dilation = args.pair("dilation", 1)?.unwrap_or([1, 1]);
        let groups = args.positive("groups")?.unwrap_or(1);
        let bias_kw = args.bool("bias")?;
        let mut implicit = Vec::new();
        let kernel = if args.operands.len() == 1 {
            let filters = args.required_positive("filters", "a conv2d without a weight tensor creates one: give `filters=` and `kernel=`")?;
            let kernel = match args.pair("kernel", 1)? {
                Some(k) => k,
                None => return Err(args.missing("kernel", "give the kernel size, e.g. `kernel=3` or `kernel=[3, 1]`")),
            };
            let c = x.shape[1];
            if !c.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
                let what = if !c.is_multiple_of(groups) { format!("the {c} input channels") } else { format!("the {filters} filters") };
                return Err(OpError::new(format!("conv2d: groups={groups} does not divide {what}"))
                    .at(args.keyword_span("groups").unwrap_or(args.span.clone()))
                    .help("`groups` must divide both the input channels and `filters`; groups equal to the channel count is a depthwise convolution"));
            }
            implicit.push(ImplicitParam { field: "weight", ty: x.with_shape(vec![filters, c / groups, kernel[0], kernel[1]]) });
            if bias_kw.unwrap_or(true) {
                implicit.push(ImplicitParam { field: "bias", ty: x.with_shape(vec![filters]) });
            }
            kernel
        } else {
            for kw in ["filters", "kernel"] {
                if let Some(span) = args.keyword_span(kw) {
                    // Redundant with the weight's shape; accept it only when it agrees.
                    let w = args.operand(1).clone();
                    let agrees = match kw {
                        "filters" => args.positive("filters")? == w.shape.first().copied(),
                        _ => args.pair("kernel", 1)?.map(|k| k.to_vec()) == w.shape.get(2..4).map(|s| s.to_vec()),
                    };
                    if !agrees {
                        return Err(OpError::new(format!("conv2d: `{kw}=` disagrees with the weight of shape {}", ShapeDisplay(&w.shape))).at(span));
                    }
                }
            }
            if bias_kw == Some(false) && args.operands.len() == 3 {
                return Err(OpError::new("conv2d: `bias=false` but a bias tensor was passed").at(args.operands[2].span.clone()));
            }
            let w = args.operand(1);
            if w.rank() != 4 {
                return Err(OpError::new(format!("conv2d: the weight must have rank 4 [filters, C/groups, kh, kw], but has shape {}", ShapeDisplay(&w.shape))).at(args.operands[1].span.clone()));
            }
            [w.shape[2], w.shape[3]]
        };
        let padding = parse_padding(args, kernel, dilation, stride)?;
        args.finish(KEYWORDS)?;
        Ok(Built { op: Op::Conv2d(Conv2d { stride, padding, dilation, groups }), implicit })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = super::quant::product_dtype("conv2d", operands)?;
        let (x, w) = (operands[0], operands[1]);
        if x.rank() != 4 || w.rank() != 4 {
            return Err(OpError::new(format!("conv2d expects rank-4 input and weight, got {} and {}", ShapeDisplay(&x.shape), ShapeDisplay(&w.shape))));
        }
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let (f, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
        if c % self.groups != 0 || f % self.groups != 0 {
            return Err(OpError::new(format!("conv2d: groups={} must divide the {c} input channels and the {f} filters", self.groups)));
        }
        if cg * self.groups != c {
            return Err(OpError::new(format!(
                "conv2d: the input has {c} channels, so with groups={} the weight needs {} channels per group, but the weight has shape {}",
                self.groups,
                c / self.groups,
                ShapeDisplay(&w.shape)
            ))
            .help(format!("input shape {}, weight shape {}", ShapeDisplay(&x.shape), ShapeDisplay(&w.shape))));
        }
        if let Some(b) = operands.get(2) {
            expect_shape("conv2d", "the bias", b, &[f])?;
        }
        let p = self.padding;
        let oh = window_out(h, p[0], p[2], kh, self.dilation[0], self.stride[0]);
        let ow = window_out(wd, p[1], p[3], kw, self.dilation[1], self.stride[1]);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(OpError::new(format!(
                "conv2d: the {kh}x{kw} kernel (dilation {:?}) does not fit the padded {}x{} input of shape {}",
                self.dilation,
                h + p[0] + p[2],
                wd + p[1] + p[3],
                ShapeDisplay(&x.shape)
            )));
        };
        checked_type("conv2d", dtype, vec![n, f, oh, ow])
    }

    /// Generic over the element so that f32 and wrapping-i32 (int8 codes) share one definition.
    pub fn eval<T: Copy + Default + std::ops::AddAssign + std::ops::Mul<Output = T>>(&self, x: &[&[T]], shapes: &[&[usize]], out_shape: &[usize]) -> Vec<T> {
        let (input, weight) = (x[0], x[1]);
        let [n, c, h, w] = shapes[0][..] else { unreachable!("conv2d input has rank 4") };
        let [f, cg, kh, kw] = shapes[1][..] else { unreachable!("conv2d weight has rank 4") };
        let (oh, ow) = (out_shape[2], out_shape[3]);
        let fg = f / self.groups;
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let (pt, pl) = (self.padding[0], self.padding[1]);
        let mut out = vec![T::default(); n * f * oh * ow];
        for b in 0..n {
            for o in 0..f {
                let plane = &mut out[(b * f + o) * oh * ow..][..oh * ow];
                if let Some(bias) = x.get(2) {
                    plane.fill(bias[o]);
                }
                let group = o / fg;
                for ci in 0..cg {
                    let ch = group * cg + ci;
                    let in_plane = &input[(b * c + ch) * h * w..][..h * w];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let wv = weight[((o * cg + ci) * kh + ky) * kw + kx];
                            for y in 0..oh {
                                // Input row for this output row and tap; skip rows in the padding.
                                let iy = (y * sh + ky * dh) as isize - pt as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                let row = &in_plane[iy as usize * w..][..w];
                                for (xo, acc) in plane[y * ow..][..ow].iter_mut().enumerate() {
                                    let ix = (xo * sw + kx * dw) as isize - pl as isize;
                                    if ix >= 0 && ix < w as isize {
                                        *acc += wv * row[ix as usize];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        let list = |v: &[usize]| Const::List(v.iter().map(|&x| Const::Int(x as i64)).collect());
        vec![("stride", list(&self.stride)), ("padding", list(&self.padding)), ("dilation", list(&self.dilation)), ("groups", Const::Int(self.groups as i64))]
    }

    pub fn macs(&self, operands: &[&TensorType], out: &TensorType) -> u64 {
        let w = &operands[1].shape;
        (out.numel() as u64) * (w[1] * w[2] * w[3]) as u64
    }
}

impl Conv2d {
    pub fn traits(&self) -> super::Traits {
        super::Traits { codes: super::Codes::Multiplies, product: Some(super::Product::Conv2d(self.clone())), ..super::Traits::PLAIN }
    }
}
