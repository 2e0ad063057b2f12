//! Elementwise ops: the unary activations and math functions, and the four arithmetic ops with
//! NumPy broadcasting.

use super::{checked_type, common_float, Built, CallArgs, Const, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};
use nnc_runtime::reference::Transcendental;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryKind {
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
    /// Exact GELU: `x·Φ(x)` with the error function, not the tanh approximation.
    Gelu,
    Silu,
    Exp,
    Sqrt,
    Abs,
    Neg,
    LeakyRelu { alpha: f64 },
    Clip { min: f64, max: f64 },
}

impl UnaryKind {
    /// Whether the op takes keyword attributes (`leaky_relu`'s `alpha`, `clip`'s bounds).
    pub fn has_attributes(&self) -> bool {
        match self {
            UnaryKind::LeakyRelu { .. } | UnaryKind::Clip { .. } => true,
            UnaryKind::Relu
            | UnaryKind::Relu6
            | UnaryKind::Sigmoid
            | UnaryKind::Tanh
            | UnaryKind::Gelu
            | UnaryKind::Silu
            | UnaryKind::Exp
            | UnaryKind::Sqrt
            | UnaryKind::Abs
            | UnaryKind::Neg => false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            UnaryKind::Relu => "relu",
            UnaryKind::Relu6 => "relu6",
            UnaryKind::Sigmoid => "sigmoid",
            UnaryKind::Tanh => "tanh",
            UnaryKind::Gelu => "gelu",
            UnaryKind::Silu => "silu",
            UnaryKind::Exp => "exp",
            UnaryKind::Sqrt => "sqrt",
            UnaryKind::Abs => "abs",
            UnaryKind::Neg => "neg",
            UnaryKind::LeakyRelu { .. } => "leaky_relu",
            UnaryKind::Clip { .. } => "clip",
        }
    }

    /// The transcendental activations, whose interpreter semantics live in the runtime (generated
    /// code for quantized graphs calls the same functions); `None` for the others.
    pub fn transcendental(&self) -> Option<Transcendental> {
        Some(match *self {
            UnaryKind::Sigmoid => Transcendental::Sigmoid,
            UnaryKind::Tanh => Transcendental::Tanh,
            UnaryKind::Gelu => Transcendental::Gelu,
            UnaryKind::Silu => Transcendental::Silu,
            UnaryKind::Exp => Transcendental::Exp,
            UnaryKind::LeakyRelu { alpha } => Transcendental::LeakyRelu { alpha },
            UnaryKind::Relu | UnaryKind::Relu6 | UnaryKind::Sqrt | UnaryKind::Abs | UnaryKind::Neg | UnaryKind::Clip { .. } => return None,
        })
    }

    /// The function itself, computed in f64.
    pub fn apply(&self, x: f64) -> f64 {
        if let Some(f) = self.transcendental() {
            return f.apply(x);
        }
        match *self {
            // Only values below zero become zero: NaN propagates, as in PyTorch (`f64::max`
            // would turn it into 0), and -0 stays -0, as every backend's `x < 0 ? 0 : x`
            // leaves it (`f64::max` may return either zero).
            UnaryKind::Relu => if x < 0.0 { 0.0 } else { x },
            UnaryKind::Relu6 => x.clamp(0.0, 6.0),
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Abs => x.abs(),
            UnaryKind::Neg => -x,
            UnaryKind::Clip { min, max } => if x.is_nan() { x } else { x.max(min).min(max) },
            UnaryKind::Sigmoid | UnaryKind::Tanh | UnaryKind::Gelu | UnaryKind::Silu | UnaryKind::Exp | UnaryKind::LeakyRelu { .. } => unreachable!("transcendental, applied above"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Unary {
    pub kind: UnaryKind,
}

impl Unary {
    pub fn build(mut kind: UnaryKind, args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        let accepted: &[&str] = match &mut kind {
            UnaryKind::LeakyRelu { alpha } => {
                *alpha = args.float("alpha")?.unwrap_or(*alpha);
                &["alpha"]
            }
            UnaryKind::Clip { min, max } => {
                *min = args.float("min")?.unwrap_or(*min);
                *max = args.float("max")?.unwrap_or(*max);
                if min > max {
                    return Err(OpError::new(format!("clip: min ({min}) is greater than max ({max})")).at(args.span.clone()));
                }
                &["min", "max"]
            }
            UnaryKind::Relu
            | UnaryKind::Relu6
            | UnaryKind::Sigmoid
            | UnaryKind::Tanh
            | UnaryKind::Gelu
            | UnaryKind::Silu
            | UnaryKind::Exp
            | UnaryKind::Sqrt
            | UnaryKind::Abs
            | UnaryKind::Neg => &[],
        };
        args.finish(accepted)?;
        Built::plain(Op::Unary(Unary { kind }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = common_float(self.kind.name(), operands)?;
        Ok(TensorType::new(dtype, operands[0].shape.clone()))
    }

    pub fn eval(&self, x: &[&[f32]], _shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        x[0].iter().map(|&v| self.kind.apply(v as f64) as f32).collect()
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        match self.kind {
            UnaryKind::LeakyRelu { alpha } => vec![("alpha", Const::Float(alpha))],
            UnaryKind::Clip { min, max } => {
                let mut v = Vec::new();
                if min.is_finite() {
                    v.push(("min", Const::Float(min)));
                }
                if max.is_finite() {
                    v.push(("max", Const::Float(max)));
                }
                v
            }
            UnaryKind::Relu
            | UnaryKind::Relu6
            | UnaryKind::Sigmoid
            | UnaryKind::Tanh
            | UnaryKind::Gelu
            | UnaryKind::Silu
            | UnaryKind::Exp
            | UnaryKind::Sqrt
            | UnaryKind::Abs
            | UnaryKind::Neg => Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryKind {
    pub fn name(self) -> &'static str {
        match self {
            BinaryKind::Add => "add",
            BinaryKind::Sub => "sub",
            BinaryKind::Mul => "mul",
            BinaryKind::Div => "div",
        }
    }

    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    pub kind: BinaryKind,
}

/// NumPy broadcasting: align shapes at the right; each pair of dims must match or be 1.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() { 1 } else { a[i - (rank - a.len())] };
        let db = if i < rank - b.len() { 1 } else { b[i - (rank - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// The flat index into an operand of shape `from` (right-aligned, broadcast) that feeds flat
/// index `i` of a result of shape `to`.
pub fn broadcast_index(mut i: usize, to: &[usize], from: &[usize]) -> usize {
    let offset = to.len() - from.len();
    let mut index = 0;
    let mut stride = 1;
    for axis in (0..to.len()).rev() {
        let coord = i % to[axis];
        i /= to[axis];
        if axis >= offset {
            let d = from[axis - offset];
            if d != 1 {
                index += coord * stride;
            }
            stride *= d;
        }
    }
    index
}

/// The operand's stride along each axis of a result of shape `to`, for an operand of shape
/// `from` (right-aligned, broadcast): 0 where it broadcasts or has no axis.
fn broadcast_strides(to: &[usize], from: &[usize]) -> Vec<usize> {
    let offset = to.len() - from.len();
    let mut strides = vec![0; to.len()];
    let mut stride = 1;
    for axis in (offset..to.len()).rev() {
        let d = from[axis - offset];
        if d != 1 {
            strides[axis] = stride;
        }
        stride *= d;
    }
    strides
}

/// `Σ coord[axis]·strides[axis]` for the coordinates of `shape` in row-major order, at a
/// constant cost per element (an odometer rather than a division per axis).
fn strided_offsets(shape: &[usize], strides: &[usize]) -> impl Iterator<Item = usize> {
    let (shape, strides) = (shape.to_vec(), strides.to_vec());
    let mut coord = vec![0; shape.len()];
    let mut index = 0;
    (0..shape.iter().product::<usize>()).map(move |i| {
        if i > 0 {
            // Element i exists, so some axis below its extent can be advanced.
            let mut axis = shape.len() - 1;
            loop {
                coord[axis] += 1;
                index += strides[axis];
                if coord[axis] < shape[axis] {
                    break;
                }
                index -= strides[axis] * shape[axis];
                coord[axis] = 0;
                axis -= 1;
            }
        }
        index
    })
}

/// `kind` applied elementwise to `a` (shape `sa`) and `b` (shape `sb`) broadcast to `out`.
/// The trailing axes over which each operand is either contiguous or one repeated value are
/// one run, computed as a plain loop over slices (a convolution's weights times a per-filter
/// scale: a run of `C·kh·kw` values times one number): constant folding rescales
/// ResNet-18's 11.7 million weights this way.
fn broadcast_apply(kind: BinaryKind, a: &[f32], sa: &[usize], b: &[f32], sb: &[usize], out: &[usize]) -> Vec<f32> {
    let (ta, tb) = (broadcast_strides(out, sa), broadcast_strides(out, sb));
    // Whether each operand is constant / contiguous over the run of axes found so far.
    let (mut a_const, mut a_contig, mut b_const, mut b_contig) = (true, true, true, true);
    let (mut run, mut outer_rank) = (1, out.len());
    for axis in (0..out.len()).rev() {
        let d = out[axis];
        let (ac, ag) = (a_const && (d == 1 || ta[axis] == 0), a_contig && (d == 1 || ta[axis] == run));
        let (bc, bg) = (b_const && (d == 1 || tb[axis] == 0), b_contig && (d == 1 || tb[axis] == run));
        if !(ac || ag) || !(bc || bg) {
            break;
        }
        (a_const, a_contig, b_const, b_contig) = (ac, ag, bc, bg);
        run *= d;
        outer_rank = axis;
    }
    let outer = &out[..outer_rank];
    let mut result = Vec::with_capacity(out.iter().product());
    for (ia, ib) in strided_offsets(outer, &ta[..outer_rank]).zip(strided_offsets(outer, &tb[..outer_rank])) {
        // A run where an operand is contiguous reads `run` values from its offset (a run
        // of size-1 axes is both: contiguous, one value).
        match (a_contig, b_contig) {
            (true, true) => result.extend(a[ia..ia + run].iter().zip(&b[ib..ib + run]).map(|(&x, &y)| kind.apply(x, y))),
            (true, false) => result.extend(a[ia..ia + run].iter().map(|&x| kind.apply(x, b[ib]))),
            (false, true) => result.extend(b[ib..ib + run].iter().map(|&y| kind.apply(a[ia], y))),
            (false, false) => result.extend(std::iter::repeat_n(kind.apply(a[ia], b[ib]), run)),
        }
    }
    result
}

impl Binary {
    pub fn build(kind: BinaryKind, args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(2, 2, "a and b")?;
        args.finish(&[])?;
        Built::plain(Op::Binary(Binary { kind }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = common_float(self.kind.name(), operands)?;
        let (a, b) = (&operands[0].shape, &operands[1].shape);
        let shape = broadcast_shapes(a, b).ok_or_else(|| {
            OpError::new(format!("{}: shapes {} and {} do not broadcast", self.kind.name(), ShapeDisplay(a), ShapeDisplay(b)))
                .help("aligned from the right, each pair of dimensions must be equal or one of them 1")
        })?;
        checked_type(self.kind.name(), dtype, shape)
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], out: &[usize]) -> Vec<f32> {
        broadcast_apply(self.kind, x[0], shapes[0], x[1], shapes[1], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shapes(&[2, 3, 4, 5], &[3, 1, 5]), Some(vec![2, 3, 4, 5]));
        assert_eq!(broadcast_shapes(&[], &[3]), Some(vec![3]));
        assert_eq!(broadcast_shapes(&[2], &[3]), None);
        // Result [2, 3], operand [3]: element (1, 2) reads operand index 2.
        assert_eq!(broadcast_index(5, &[2, 3], &[3]), 2);
        assert_eq!(broadcast_index(5, &[2, 3], &[2, 1]), 1);
        // The odometer over the broadcast strides gives broadcast_index of every element.
        for (to, from) in [(&[2, 3, 4, 5][..], &[3, 1, 5][..]), (&[2, 3, 4, 5], &[]), (&[2, 3, 4, 5], &[2, 1, 1, 1]), (&[1, 7, 1, 3], &[7, 1, 3]), (&[], &[]), (&[4, 1], &[1])] {
            let want: Vec<usize> = (0..to.iter().product::<usize>()).map(|i| broadcast_index(i, to, from)).collect();
            assert_eq!(strided_offsets(to, &broadcast_strides(to, from)).collect::<Vec<_>>(), want, "{to:?} from {from:?}");
        }
        // Runs of every kind (both contiguous, one repeated on either side, both repeated,
        // size-1 axes inside and outside a run) give the element-by-element result.
        let shapes: [(&[usize], &[usize], &[usize]); 8] = [
            (&[4, 3, 3, 3], &[4, 3, 3, 3], &[4, 1, 1, 1]),
            (&[4, 3, 3, 3], &[4, 1, 1, 1], &[4, 3, 3, 3]),
            (&[2, 3, 4], &[3, 1], &[2, 1, 4]),
            (&[2, 3, 4], &[2, 3, 4], &[]),
            (&[2, 3, 4], &[1], &[1, 1]),
            (&[5, 1, 6], &[5, 1, 1], &[1, 6]),
            (&[1, 7], &[1, 7], &[1, 1]),
            (&[3, 2], &[3, 1], &[2]),
        ];
        for (out, sa, sb) in shapes {
            let a: Vec<f32> = (0..sa.iter().product::<usize>()).map(|i| i as f32 + 0.5).collect();
            let b: Vec<f32> = (0..sb.iter().product::<usize>()).map(|i| 100.0 - i as f32).collect();
            for kind in [BinaryKind::Sub, BinaryKind::Div] {
                let want: Vec<f32> = (0..out.iter().product::<usize>()).map(|i| kind.apply(a[broadcast_index(i, out, sa)], b[broadcast_index(i, out, sb)])).collect();
                assert_eq!(broadcast_apply(kind, &a, sa, &b, sb, out), want, "{out:?} = {sa:?} {kind:?} {sb:?}");
            }
        }
    }

    #[test]
    fn gelu_is_exact() {
        // Φ(1) = 0.841344746...
        assert!((UnaryKind::Gelu.apply(1.0) - 0.841344746068543).abs() < 1e-12);
    }
}

#[cfg(test)]
mod nan_tests {
    use super::UnaryKind;

    #[test]
    fn nan_propagates_as_in_pytorch() {
        for k in [UnaryKind::Relu, UnaryKind::Relu6, UnaryKind::Clip { min: -1.0, max: 1.0 }, UnaryKind::LeakyRelu { alpha: 0.1 }, UnaryKind::Sigmoid, UnaryKind::Gelu] {
            assert!(k.apply(f64::NAN).is_nan(), "{}", k.name());
        }
    }
}

impl Unary {
    pub fn traits(&self) -> super::Traits {
        let activation = match self.kind {
            UnaryKind::Relu => Some(nnc_runtime::Activation::Relu),
            UnaryKind::Relu6 => Some(nnc_runtime::Activation::Relu6),
            UnaryKind::Sigmoid
            | UnaryKind::Tanh
            | UnaryKind::Gelu
            | UnaryKind::Silu
            | UnaryKind::Exp
            | UnaryKind::Sqrt
            | UnaryKind::Abs
            | UnaryKind::Neg
            | UnaryKind::LeakyRelu { .. }
            | UnaryKind::Clip { .. } => None,
        };
        super::Traits { elementwise: true, activation, ..super::Traits::PLAIN }
    }
}

impl Binary {
    pub fn traits(&self) -> super::Traits {
        super::Traits { elementwise: true, ..super::Traits::PLAIN }
    }
}
