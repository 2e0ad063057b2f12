//! Types of IR values: element type, static shape and memory layout.

pub use nnc_runtime::DType;
use std::fmt;

/// How a tensor's logical axes map to memory.
///
/// Every value starts in `RowMajor`: memory order is logical order, i.e. NCHW for an image
/// batch. Layout selection for a backend rewrites this field (and inserts conversions); it is
/// a property of the value, never a special-case op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    RowMajor,
}

/// The static type of a value. Shapes are fully known after elaboration: symbolic dims are
/// bound before any IR exists.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub layout: Layout,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> TensorType {
        TensorType { dtype, shape, layout: Layout::RowMajor }
    }

    pub fn f32(shape: Vec<usize>) -> TensorType {
        TensorType::new(DType::F32, shape)
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Element count. Types are only built by shape rules that checked this against
    /// `MAX_TENSOR_BYTES`, so the product cannot overflow.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn size_bytes(&self) -> usize {
        self.numel() * self.dtype.size_bytes()
    }

    pub fn with_shape(&self, shape: Vec<usize>) -> TensorType {
        TensorType { dtype: self.dtype, shape, layout: self.layout }
    }
}

/// `[1, 6, 28, 28]`
pub struct ShapeDisplay<'a>(pub &'a [usize]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for TensorType {
    /// `f32[1, 6, 28, 28] nchw`; the layout is spelled out for rank-4 values, where it matters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, ShapeDisplay(&self.shape))?;
        match self.layout {
            Layout::RowMajor if self.rank() == 4 => f.write_str(" nchw"),
            Layout::RowMajor => Ok(()),
        }
    }
}
