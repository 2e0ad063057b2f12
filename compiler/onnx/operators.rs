//! The translation of each ONNX operator that needs more than a call with its attributes:
//! QDQ pairs, Clip's bounds, elementwise operands, MatMul and Gemm as dense layers, Conv with
//! its padding rules (and a folded Pad), pooling, Slice, LSTM. `Importer::translate`
//! dispatches here.

use super::constant::ConstTensor;
use super::import::{attr, attr_float, attr_int, attr_ints, attr_str, decimal, ints_const, usizes_const, Importer, Val};
use super::patterns;
use super::proto::{data_type, NodeProto};
use crate::ir::NodeId;
use crate::ops::Const;

impl Importer<'_> {
    /// `QuantizeLinear → DequantizeLinear` on a computed value, as nnc's int8 quantization
    /// does it: symmetric int8 (zero point 0) with one scale per tensor. The pair leaves the
    /// value as it is in the graph and records its scale, which `--quantize int8` (implied for
    /// such models) then uses instead of calibrating.
    pub(super) fn quantize_pair(&mut self, index: usize) -> Result<Val, String> {
        let node = &self.nodes[index];
        let x = self.node_input(node, 0)?;
        let scale = self.constant(node, 1, "the scale")?.ok_or("QuantizeLinear needs a scale")?;
        let s = scale.scalar().ok_or("QuantizeLinear of a computed value is imported with one scale per tensor")? as f32;
        let zero = self.constant(node, 2, "the zero point")?;
        match &zero {
            Some(z) if z.onnx_type == data_type::INT8 && z.values().iter().all(|&v| v == 0.0) => {}
            Some(z) if z.onnx_type == data_type::INT8 => return Err("asymmetric int8 (a nonzero zero point) is not supported: nnc's int8 is symmetric; quantize activations symmetrically (ONNX Runtime: extra_options={\"ActivationSymmetric\": True})".into()),
            _ => return Err("uint8 activations are not supported: nnc's int8 is symmetric; quantize activations as QInt8 with ActivationSymmetric".into()),
        }
        if !(s > 0.0 && s.is_finite()) {
            return Err(format!("scale {s} is not a positive number"));
        }
        let out = &node.output[0];
        let dq = self.uses.only_reader(out).filter(|&i| self.nodes[i].op_type.as_deref() == Some("DequantizeLinear") && !self.consumed.contains(&i)).ok_or("QuantizeLinear is imported only when one DequantizeLinear alone reads it")?;
        let dq_node = &self.nodes[dq];
        let same = |i: usize, want: &Option<ConstTensor>| match (dq_node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| self.values.get(n)), want) {
            (Some(Val::Const(c)), Some(w)) => c.values() == w.values(),
            (None, None) => true,
            _ => false,
        };
        if dq_node.input.first() != Some(out) || !same(1, &Some(scale.clone())) || !same(2, &zero) {
            return Err("the DequantizeLinear after this QuantizeLinear uses another scale or zero point".into());
        }
        if let Some(&prev) = self.activation_scales.get(&x) {
            if prev != s {
                return Err(format!("`{}` is quantized with two scales ({prev} and {s})", node.input[0]));
            }
        }
        self.activation_scales.insert(x, s);
        self.consumed.insert(dq);
        self.values.insert(dq_node.output[0].clone(), Val::Node(x));
        Ok(Val::Node(x))
    }

    pub(super) fn clip(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let x = self.node_input(node, 0)?;
        // Opset 11 on (all nnc imports): the bounds are inputs.
        let bound = |i: usize, what: &str| -> Result<Option<f64>, String> {
            match self.constant(node, i, what)? {
                None => Ok(None),
                Some(c) => c.scalar().map(|v| Some(decimal(v as f32))).ok_or_else(|| format!("Clip's {what} must be one number")),
            }
        };
        let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
        Ok(Val::Node(match (lo, hi) {
            (Some(l), Some(h)) if l == 0.0 && h == 6.0 => self.op(out, "relu6", &[x], vec![])?,
            (Some(l), None) if l == 0.0 => self.op(out, "relu", &[x], vec![])?,
            (None, None) => x,
            (l, h) => {
                let mut kw = Vec::new();
                if let Some(l) = l {
                    kw.push(("min", Const::Float(l)));
                }
                if let Some(h) = h {
                    kw.push(("max", Const::Float(h)));
                }
                self.op(out, "clip", &[x], kw)?
            }
        }))
    }

    /// An operand of an elementwise op: a single known number whose rank does not widen the
    /// result is a literal, anything else a node.
    pub(super) fn elementwise_operand(&mut self, node: &NodeProto, i: usize, other_rank: usize) -> Result<NodeId, String> {
        let v = self.required(node, i)?;
        if let Val::Const(c) = &v {
            if let Some(s) = c.scalar().filter(|_| c.shape.len() <= other_rank && c.is_float()) {
                return Ok(self.scalar_node(&node.input[i], s as f32));
            }
        }
        let name = node.input[i].clone();
        self.node_of(&name, &v)
    }

    pub(super) fn binary(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let ranks: Vec<usize> = (0..2).map(|i| self.required(node, i).map(|v| self.shape_of(&v).len())).collect::<Result<_, _>>()?;
        let a = self.elementwise_operand(node, 0, ranks[1])?;
        let b = self.elementwise_operand(node, 1, ranks[0])?;
        let name = match node.op_type.as_deref() {
            Some("Add") => "add",
            Some("Sub") => "sub",
            Some("Mul") => "mul",
            _ => "div",
        };
        Ok(Val::Node(self.op(out, name, &[a, b], vec![])?))
    }

    /// `MatMul` by a known 2-D matrix is a dense layer (its weight transposed to
    /// `[units, features]`), taking the bias of an `Add` that alone reads it.
    pub(super) fn matmul(&mut self, index: usize, out: &str) -> Result<Val, String> {
        let node = &self.nodes[index];
        let b = self.required(node, 1)?;
        if let Val::Const(w) = &b {
            if w.shape.len() == 2 && w.is_float() {
                let (features, units) = (w.shape[0], w.shape[1]);
                let wt = w.gather(vec![units, features], |i| (i % features) * units + i / features);
                let weight_name = node.input[1].clone();
                let x = self.node_input(node, 0)?;
                let weight = self.const_node(&weight_name, wt)?;
                if let Some((add_index, bias_name, bias)) = patterns::bias_add(self, index, units) {
                    let bias = self.const_node(&bias_name, bias)?;
                    let add = &self.nodes[add_index];
                    let add_out = add.output[0].clone();
                    let y = self.op(&add_out, "dense", &[x, weight, bias], vec![])?;
                    self.consumed.insert(add_index);
                    self.values.insert(add_out, Val::Node(y));
                    return Ok(Val::Node(y));
                }
                return Ok(Val::Node(self.op(out, "dense", &[x, weight], vec![("bias", Const::Bool(false))])?));
            }
        }
        let a = self.node_input(node, 0)?;
        let bn = self.node_input(node, 1)?;
        Ok(Val::Node(self.op(out, "matmul", &[a, bn], vec![])?))
    }

    pub(super) fn gemm(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let (alpha, beta) = (attr_float(node, "alpha", 1.0), attr_float(node, "beta", 1.0));
        let (trans_a, trans_b) = (attr_int(node, "transA", 0) != 0, attr_int(node, "transB", 0) != 0);
        let Some(b) = self.constant(node, 1, "B").ok().flatten().filter(|b| b.shape.len() == 2 && b.is_float()) else {
            return Err("Gemm is imported with a known 2-D B (a dense layer)".into());
        };
        let mut x = self.node_input(node, 0)?;
        if trans_a {
            x = self.op(&format!("{out}_a"), "transpose", &[x], vec![("perm", ints_const(&[1, 0]))])?;
        }
        let (r, c) = (b.shape[0], b.shape[1]);
        // The dense weight is [units, features]: B itself when transposed, else Bᵀ.
        let (units, features) = if trans_b { (r, c) } else { (c, r) };
        let w = if trans_b { b.clone() } else { b.gather(vec![units, features], |i| (i % features) * units + i / features) };
        let w = w.like(vec![units, features], w.values().into_iter().map(|v| v * alpha as f64).collect());
        let weight = self.const_node(&node.input[1], w)?;
        let bias = match self.constant(node, 2, "C")? {
            None => None,
            Some(cst) => {
                let vals = cst.values();
                let per_unit: Vec<f32> = match (cst.len(), cst.shape.as_slice()) {
                    (1, _) => vec![vals[0] as f32 * beta; units],
                    (n, [_] | [1, _]) if n == units => vals.iter().map(|&v| v as f32 * beta).collect(),
                    _ => return Err(format!("Gemm's C of shape {:?} is not a bias per unit", cst.shape)),
                };
                Some(self.const_node(&node.input[2], ConstTensor::f32(vec![units], per_unit))?)
            }
        };
        Ok(Val::Node(match bias {
            Some(bias) => self.op(out, "dense", &[x, weight, bias], vec![])?,
            None => self.op(out, "dense", &[x, weight], vec![("bias", Const::Bool(false))])?,
        }))
    }

    pub(super) fn conv(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let (x, extra) = match self.required(node, 0)? {
            Val::Padded(id, p) => (id, p),
            v => (self.node_of(&node.input[0].clone(), &v)?, [0; 4]),
        };
        let Some(w) = self.constant(node, 1, "the filter")? else { return Err("Conv needs a filter".into()) };
        if w.shape.len() != 4 {
            return Err(format!("Conv is imported in 2-D only; the filter has shape {:?}", w.shape));
        }
        if self.graph.node(x).ty.rank() != 4 {
            return Err(format!("Conv is imported in 2-D only; the input has shape {:?}", self.graph.node(x).ty.shape));
        }
        // `auto_pad` sizes the padding for the input as the Conv sees it: after a folded Pad.
        let in_shape = self.shape_of(&Val::Padded(x, extra));
        let stride = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
        let dilation = attr_ints(node, "dilations").unwrap_or(vec![1, 1]);
        let kernel = [w.shape[2], w.shape[3]];
        let pads = self.pads(node, &in_shape, kernel, &stride, &dilation)?;
        let padding: Vec<usize> = (0..4).map(|i| pads[i].checked_add(extra[i]).ok_or("padding is too large")).collect::<Result<_, _>>()?;
        let weight = self.const_node(&node.input[1], w)?;
        let mut operands = vec![x, weight];
        if self.input(node, 2)?.is_some() {
            operands.push(self.node_input(node, 2)?);
        }
        let mut kw = vec![("stride", ints_const(&stride)), ("padding", usizes_const(&padding)), ("dilation", ints_const(&dilation)), ("groups", Const::Int(attr_int(node, "group", 1)))];
        if operands.len() == 2 {
            kw.push(("bias", Const::Bool(false)));
        }
        Ok(Val::Node(self.op(out, "conv2d", &operands, kw)?))
    }

    /// Padding `[top, left, bottom, right]` from `pads` or `auto_pad`.
    pub(super) fn pads(&self, node: &NodeProto, in_shape: &[usize], kernel: [usize; 2], stride: &[i64], dilation: &[i64]) -> Result<[usize; 4], String> {
        const LARGEST: i64 = 1 << 20;
        if stride.len() != 2 || dilation.len() != 2 || stride.iter().chain(dilation).any(|&v| !(1..=LARGEST).contains(&v)) {
            return Err(format!("strides {stride:?} and dilations {dilation:?} must be two positive numbers (at most {LARGEST})"));
        }
        if in_shape.len() != 4 {
            return Err(format!("a 2-D window needs an input of rank 4, not {in_shape:?}"));
        }
        match attr_str(node, "auto_pad").as_deref().unwrap_or("NOTSET") {
            "NOTSET" => {
                let p = attr_ints(node, "pads").unwrap_or(vec![0; 4]);
                if p.len() != 4 || p.iter().any(|&v| !(0..1 << 20).contains(&v)) {
                    return Err(format!("pads {p:?} must be four non-negative numbers"));
                }
                // ONNX orders pads [top, left, bottom, right], as nnc does.
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            "VALID" => Ok([0; 4]),
            mode @ ("SAME_UPPER" | "SAME_LOWER") => {
                let mut p = [0; 4];
                for d in 0..2 {
                    // In i128: sizes, strides and dilations are bounded, their products not.
                    let size = in_shape[2 + d] as i128;
                    let (s, dl) = (stride[d] as i128, dilation[d] as i128);
                    let out = (size + s - 1) / s;
                    let span = (kernel[d] as i128 - 1) * dl + 1;
                    let total = usize::try_from(((out - 1) * s + span - size).max(0)).map_err(|_| "SAME padding is too large")?;
                    let (small, big) = (total / 2, total - total / 2);
                    (p[d], p[d + 2]) = if mode == "SAME_UPPER" { (small, big) } else { (big, small) };
                }
                Ok(p)
            }
            other => Err(format!("auto_pad \"{other}\" is not an ONNX mode")),
        }
    }

    pub(super) fn pad(&mut self, node: &NodeProto) -> Result<Val, String> {
        let mode = attr_str(node, "mode").unwrap_or_else(|| "constant".into());
        // Opset 11 on: pads and value are inputs.
        let pads = self.constant(node, 1, "the pads")?.map(|c| c.ints());
        let value = self.constant(node, 2, "the padding value")?.and_then(|c| c.scalar()).unwrap_or(0.0);
        let x = self.node_input(node, 0)?;
        let rank = self.graph.node(x).ty.rank();
        let pads = pads.ok_or("Pad needs pads")?;
        if mode != "constant" || value != 0.0 || rank != 4 || pads.len() != 8 || self.input(node, 3)?.is_some() {
            return Err("Pad is imported only as zero padding of the two spatial axes of an NCHW tensor, folded into the convolution that reads it".into());
        }
        // [begin N, C, H, W, end N, C, H, W]
        if pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 || pads.iter().any(|&p| p < 0) {
            return Err(format!("Pad {pads:?} pads more than the spatial axes"));
        }
        Ok(Val::Padded(x, [pads[2] as usize, pads[3] as usize, pads[6] as usize, pads[7] as usize]))
    }

    pub(super) fn pool(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let max = node.op_type.as_deref() == Some("MaxPool");
        if node.output.len() > 1 && !node.output[1].is_empty() {
            return Err("MaxPool's Indices output is not supported".into());
        }
        let x = self.node_input(node, 0)?;
        let in_shape = self.graph.node(x).ty.shape.clone();
        if in_shape.len() != 4 {
            return Err(format!("pooling is imported in 2-D only; the input has shape {in_shape:?}"));
        }
        let kernel = attr_ints(node, "kernel_shape").filter(|k| k.len() == 2 && k.iter().all(|&v| (1..1 << 20).contains(&v))).ok_or("pooling is imported in 2-D with a kernel_shape of two sizes")?;
        let kernel = [kernel[0] as usize, kernel[1] as usize];
        let stride = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
        let dilation = attr_ints(node, "dilations").unwrap_or(vec![1, 1]);
        if dilation != [1, 1] {
            return Err("dilated pooling is not supported".into());
        }
        let pads = self.pads(node, &in_shape, kernel, &stride, &dilation)?;
        if !max && attr_int(node, "count_include_pad", 0) != 0 && pads.iter().any(|&p| p > 0) {
            return Err("AveragePool with count_include_pad=1 and padding is not supported (nnc leaves padded cells out of the average)".into());
        }
        if attr_int(node, "ceil_mode", 0) != 0 {
            // Ceil mode changes the result only where a last window would start inside.
            for d in 0..2 {
                let span = in_shape[2 + d] + pads[d] + pads[d + 2];
                if span < kernel[d] || !(span - kernel[d]).is_multiple_of(stride[d] as usize) {
                    return Err("pooling with ceil_mode=1 is supported only where it rounds nothing".into());
                }
            }
        }
        let kw = vec![("kernel", usizes_const(&kernel)), ("stride", ints_const(&stride)), ("padding", usizes_const(&pads))];
        Ok(Val::Node(self.op(out, if max { "max_pool" } else { "avg_pool" }, &[x], kw)?))
    }

    pub(super) fn slice(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let x = self.node_input(node, 0)?;
        let shape = self.graph.node(x).ty.shape.clone();
        let spec = super::fold::slice_spec(self, node, shape.len())?;
        let mut v = x;
        for (k, (a, start, end, step)) in spec.iter().enumerate() {
            // ONNX's "to the end" sentinels are beyond any axis: clamped as Python does.
            let len = shape[*a] as i64;
            let clamp = |b: i64| b.clamp(-len - 1, len);
            let name = if k + 1 == spec.len() { out.to_string() } else { format!("{}_axis{a}", out.strip_suffix("_output_0").unwrap_or(out)) };
            v = self.op(&name, "slice", &[v], vec![("axis", Const::Int(*a as i64)), ("start", Const::Int(clamp(*start))), ("end", Const::Int(clamp(*end))), ("step", Const::Int(*step))])?;
        }
        Ok(Val::Node(v))
    }

    /// ONNX `LSTM` (forward, zero initial state, no peepholes) as nnc's `lstm`: gates
    /// reordered from ONNX's i, o, f, c to PyTorch's i, f, g, o; `Y` is `[T, 1, N, H]`
    /// and `Y_h` the last step.
    pub(super) fn lstm(&mut self, node: &NodeProto) -> Result<Val, String> {
        if attr_str(node, "direction").is_some_and(|d| d != "forward") || attr_int(node, "layout", 0) != 0 || attr_int(node, "input_forget", 0) != 0 || attr(node, "clip").is_some() || attr(node, "activations").is_some() {
            return Err("LSTM is imported forward, in layout 0, with default activations and no clip".into());
        }
        for (i, what) in [(4, "sequence_lens"), (7, "peepholes P")] {
            if self.input(node, i)?.is_some() {
                return Err(format!("LSTM with {what} is not supported"));
            }
        }
        for (i, what) in [(5, "initial_h"), (6, "initial_c")] {
            match self.input(node, i)? {
                None => {}
                Some(Val::Const(c)) if c.values().iter().all(|&v| v == 0.0) => {}
                Some(_) => return Err(format!("LSTM with a nonzero {what} is not supported")),
            }
        }
        if node.output.get(2).is_some_and(|n| !n.is_empty()) {
            return Err("LSTM's Y_c output is not supported".into());
        }
        let x = self.node_input(node, 0)?;
        let w = self.constant(node, 1, "W")?.ok_or("LSTM needs W")?;
        let r = self.constant(node, 2, "R")?.ok_or("LSTM needs R")?;
        let h = w.shape.get(1).copied().unwrap_or(0) / 4;
        if w.shape.len() != 3 || w.shape[0] != 1 || w.shape[1] != 4 * h || r.shape != [1, 4 * h, h] || h == 0 {
            return Err(format!("LSTM weights of shapes {:?} and {:?} are not one direction's", w.shape, r.shape));
        }
        // Rows of gate blocks [i, o, f, c] → [i, f, c, o].
        let reorder = |t: &ConstTensor, cols: usize| -> ConstTensor {
            let blocks = [0usize, 2, 3, 1];
            t.gather(vec![4 * h, cols], |i| {
                let (row, col) = (i / cols, i % cols);
                (blocks[row / h] * h + row % h) * cols + col
            })
        };
        let wih = reorder(&w, w.shape[2]);
        let whh = reorder(&r, h);
        let wih = self.const_node(&node.input[1], wih)?;
        let whh = self.const_node(&node.input[2], whh)?;
        let mut operands = vec![x, wih, whh];
        if let Some(b) = self.constant(node, 3, "B")? {
            if b.shape != [1, 8 * h] {
                return Err(format!("LSTM bias of shape {:?} is not [1, {}]", b.shape, 8 * h));
            }
            let half = |k: usize| b.gather(vec![4 * h, 1], move |i| k * 4 * h + i);
            let (bi, bh) = (reorder(&half(0), 1), reorder(&half(1), 1));
            let flat = |t: ConstTensor| ConstTensor { shape: vec![4 * h], ..t };
            operands.push(self.const_node(&format!("{}_ih", node.input[3]), flat(bi))?);
            operands.push(self.const_node(&format!("{}_hh", node.input[3]), flat(bh))?);
        }
        let y_name = node.output.first().cloned().unwrap_or_default();
        let kw = if operands.len() == 3 { vec![("bias", Const::Bool(false))] } else { vec![] };
        let seq = self.op(&format!("{y_name}_steps"), "lstm", &operands, kw)?;
        let [t, n] = [self.graph.node(seq).ty.shape[0], self.graph.node(seq).ty.shape[1]];
        if let Some(yh) = node.output.get(1).filter(|n| !n.is_empty()).cloned() {
            let last = self.op(&yh, "slice", &[seq], vec![("axis", Const::Int(0)), ("start", Const::Int(t as i64 - 1)), ("end", Const::Int(t as i64))])?;
            self.values.insert(yh, Val::Node(last));
        }
        if y_name.is_empty() {
            return Ok(Val::Node(seq));
        }
        Ok(Val::Node(self.op(&y_name, "reshape", &[seq], vec![("shape", usizes_const(&[t, 1, n, h]))])?))
    }

    /// `Attention` (opset 23) on 4-D `[batch, heads, sequence, head size]` values, as nnc's
    /// `attention`: no mask, past state or extra outputs; a `scale` other than 1/√d scales
    /// the queries first.
    pub(super) fn attention(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        if node.input.iter().skip(3).any(|n| !n.is_empty()) {
            return Err("Attention with a mask or past keys and values is not supported".into());
        }
        if node.output.iter().skip(1).any(|n| !n.is_empty()) {
            return Err("Attention's present_key, present_value and qk_matmul_output outputs are not supported".into());
        }
        if attr_float(node, "softcap", 0.0) != 0.0 {
            return Err("Attention with softcap is not supported".into());
        }
        let (mut q, k, v) = (self.node_input(node, 0)?, self.node_input(node, 1)?, self.node_input(node, 2)?);
        let [qs, ks, vs] = [q, k, v].map(|id| self.graph.node(id).ty.shape.clone());
        if qs.len() != 4 || ks.len() != 4 || vs.len() != 4 {
            return Err("Attention is imported on 4-D [batch, heads, sequence, head size] inputs (3-D inputs with q_num_heads are not)".into());
        }
        if qs[..2] != ks[..2] || ks[..3] != vs[..3] || qs[3] != ks[3] {
            return Err(format!("Attention of shapes {qs:?}, {ks:?}, {vs:?} (grouped-query heads are not supported)"));
        }
        let causal = attr_int(node, "is_causal", 0) != 0;
        if causal && qs[2] != ks[2] {
            return Err("causal Attention is imported for queries and keys of one length".into());
        }
        if let Some(scale) = attr(node, "scale").and_then(|a| a.f) {
            let factor = scale as f64 * (qs[3] as f64).sqrt();
            if (factor - 1.0).abs() > 1e-7 {
                let s = self.scalar_node(&format!("{out}_scale"), factor as f32);
                q = self.op(&format!("{out}_q"), "mul", &[q, s], vec![])?;
            }
        }
        Ok(Val::Node(self.op(out, "attention", &[q, k, v], vec![("causal", Const::Bool(causal))])?))
    }
}
