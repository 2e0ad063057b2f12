//! Types of IR values: element type, static shape and memory layout.

pub use nnc_runtime::DType;
use std::fmt;

/// How a tensor's logical axes map to memory.
///
/// Shapes are always logical (`[N, C, H, W]` for an image batch, whatever the layout), and
/// every op's semantics are defined on logical values, so the interpreter ignores layouts.
/// Every value starts in `RowMajor`: memory order is logical order, i.e. NCHW. Layout
/// selection for a backend rewrites this field (and inserts `convert_layout` ops); it is a
/// property of the value, never a special-case op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    RowMajor,
    /// A rank-4 value stored channels-last: memory order N, H, W, C.
    Nhwc,
    /// A rank-4 value with channels in blocks of four: memory order N, C/4, H, W, then the
    /// four channels of the block (`NCHW[x]c` with x = 4, one `f32x4`). Only for values whose
    /// channel count is a multiple of four, so no padding is ever stored.
    Nchw4c,
}

impl Layout {
    /// The name in IR text (`nchw` for row-major at rank 4).
    pub fn name(self) -> &'static str {
        match self {
            Layout::RowMajor => "nchw",
            Layout::Nhwc => "nhwc",
            Layout::Nchw4c => "nchw4c",
        }
    }

    pub fn from_name(name: &str) -> Option<Layout> {
        match name {
            "nchw" => Some(Layout::RowMajor),
            "nhwc" => Some(Layout::Nhwc),
            "nchw4c" => Some(Layout::Nchw4c),
            _ => None,
        }
    }
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

    pub fn with_layout(&self, layout: Layout) -> TensorType {
        TensorType { layout, ..self.clone() }
    }

    pub fn with_shape(&self, shape: Vec<usize>) -> TensorType {
        TensorType { dtype: self.dtype, shape, layout: self.layout }
    }

    pub fn with_dtype(&self, dtype: DType) -> TensorType {
        TensorType { dtype, ..self.clone() }
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
        if self.rank() == 4 {
            write!(f, " {}", self.layout.name())?;
        }
        Ok(())
    }
}
