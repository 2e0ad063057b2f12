//! Ops computed at import time when every input is known: what exporters emit around shapes
//! (`Shape → Gather → Unsqueeze → Concat → Reshape`, `ConstantOfShape`, `Range`, casts) and
//! arithmetic on initializers. The results stay constants; only a model op that reads one
//! turns it into a parameter.

use super::constant::{strides, ConstTensor};
use super::import::{attr, attr_int, attr_ints, axis, reshape_target, Importer};
use super::proto::{data_type, NodeProto};

/// Ops [`fold`] computes.
pub fn foldable(op_type: &str) -> bool {
    matches!(
        op_type,
        "Constant" | "QuantizeLinear" | "DequantizeLinear" | "Identity" | "Dropout" | "Cast" | "Shape" | "Gather" | "Unsqueeze" | "Squeeze" | "Concat" | "Reshape" | "Flatten" | "Transpose" | "Slice" | "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Neg" | "Sqrt" | "Abs" | "Exp" | "Reciprocal" | "Equal" | "Where" | "ConstantOfShape" | "Range" | "Expand"
    )
}

/// The value of `node` on the known inputs `inputs` (`None` where an optional one is left out).
pub fn fold(im: &Importer, node: &NodeProto, inputs: &[Option<ConstTensor>]) -> Result<ConstTensor, String> {
    let op = node.op_type.as_deref().unwrap_or("");
    let get = |i: usize| inputs.get(i).and_then(|v| v.as_ref()).ok_or_else(|| format!("input {i} is required"));
    Ok(match op {
        "Constant" => constant_attr(node)?,
        // Weights stored as int8 codes, or as floats run through a quantize/dequantize pair.
        "DequantizeLinear" | "QuantizeLinear" => {
            let x = get(0)?;
            let scale = get(1)?;
            let zero = inputs.get(2).and_then(|v| v.as_ref());
            let a = if scale.len() == 1 { None } else { Some(axis(attr_int(node, "axis", 1), x.shape.len())?) };
            if let Some(a) = a {
                if scale.shape.len() != 1 || scale.len() != x.shape[a] {
                    return Err(format!("{op}: {} scales for an axis of {}", scale.len(), x.shape[a]));
                }
            }
            let inner: usize = a.map_or(1, |a| x.shape[a + 1..].iter().product());
            let channel = |i: usize| a.map_or(0, |a| (i / inner) % x.shape[a]);
            let (s, z) = (scale.values(), zero.map(|z| z.values()).unwrap_or_else(|| vec![0.0; scale.len()]));
            if z.len() != s.len() {
                return Err(format!("{op}: {} zero points for {} scales", z.len(), s.len()));
            }
            let v = x.values();
            if op == "DequantizeLinear" {
                // In f32, as ONNX Runtime computes it.
                ConstTensor::f32(x.shape.clone(), v.iter().enumerate().map(|(i, &q)| (q - z[channel(i)]) as f32 * s[channel(i)] as f32).collect())
            } else {
                let kind = zero.map_or(data_type::UINT8, |z| z.onnx_type);
                let (lo, hi) = match kind {
                    data_type::INT8 => (-128.0, 127.0),
                    data_type::UINT8 => (0.0, 255.0),
                    other => return Err(format!("QuantizeLinear to {} is not supported", data_type::name(other))),
                };
                let codes = v.iter().enumerate().map(|(i, &x)| ((x as f32 / s[channel(i)] as f32).round_ties_even() as f64 + z[channel(i)]).clamp(lo, hi) as i64).collect();
                ConstTensor { onnx_type: kind, ..ConstTensor::i64(x.shape.clone(), codes) }
            }
        }
        "Identity" | "Dropout" => get(0)?.clone(),
        "Cast" => {
            let x = get(0)?;
            match attr_int(node, "to", data_type::FLOAT as i64) as i32 {
                data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 => ConstTensor::f32(x.shape.clone(), x.values().iter().map(|&v| v as f32).collect()),
                data_type::BOOL => ConstTensor::i64(x.shape.clone(), x.values().iter().map(|&v| (v != 0.0) as i64).collect()),
                _ => ConstTensor::i64(x.shape.clone(), x.values().iter().map(|&v| v as i64).collect()),
            }
        }
        "Shape" => {
            let x = get(0)?;
            let r = x.shape.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clampi(attr_int(node, "start", 0)), clampi(attr_int(node, "end", r)));
            let dims: Vec<i64> = x.shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
            ConstTensor::i64(vec![dims.len()], dims)
        }
        "Gather" => {
            let (x, idx) = (get(0)?, get(1)?);
            let a = axis(attr_int(node, "axis", 0), x.shape.len())?;
            let n = x.shape[a] as i64;
            let idx: Vec<usize> = idx.ints().iter().map(|&i| if (-n..n).contains(&i) { Ok(if i < 0 { i + n } else { i } as usize) } else { Err(format!("Gather index {i} is out of range for an axis of {n}")) }).collect::<Result<_, _>>()?;
            let indices_shape = get(1)?.shape.clone();
            let inner: usize = x.shape[a + 1..].iter().product();
            let shape: Vec<usize> = x.shape[..a].iter().chain(&indices_shape).chain(&x.shape[a + 1..]).copied().collect();
            elements(&shape, "Gather")?;
            let k = idx.len();
            x.gather(shape, |i| {
                let (o, rest) = (i / (k * inner), i % (k * inner));
                o * x.shape[a] * inner + idx[rest / inner] * inner + rest % inner
            })

        }
        "Unsqueeze" | "Squeeze" => {
            let x = get(0)?;
            let axes = match attr_ints(node, "axes") {
                Some(a) => Some(a),
                None => inputs.get(1).and_then(|v| v.as_ref()).map(|c| c.ints()),
            };
            ConstTensor { shape: squeeze_shape(op, &x.shape, axes.as_deref())?, ..x.clone() }
        }
        "Concat" => {
            let parts: Vec<&ConstTensor> = inputs.iter().flatten().collect();
            let first = parts.first().ok_or("Concat has no inputs")?;
            let a = axis(attr_int(node, "axis", 0), first.shape.len())?;
            let mut shape = first.shape.clone();
            shape[a] = parts.iter().map(|p| p.shape.get(a).copied().unwrap_or(0)).sum();
            if parts.iter().any(|p| p.shape.len() != shape.len() || p.shape.iter().enumerate().any(|(i, &d)| i != a && d != shape[i])) {
                return Err("Concat of tensors whose other axes differ".into());
            }
            let total = elements(&shape, "Concat")?;
            let outer: usize = shape[..a].iter().product();
            let inner: usize = shape[a + 1..].iter().product();
            let part_values: Vec<Vec<f64>> = parts.iter().map(|p| p.values()).collect();
            let mut values = Vec::with_capacity(total);
            for o in 0..outer {
                for (p, v) in parts.iter().zip(&part_values) {
                    let chunk = p.shape[a] * inner;
                    values.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
                }
            }
            first.like(shape, values)
        }
        "Reshape" => {
            let x = get(0)?;
            ConstTensor { shape: reshape_target(&x.shape, &get(1)?.ints(), attr_int(node, "allowzero", 0) != 0)?, ..x.clone() }
        }
        "Flatten" => {
            let x = get(0)?;
            let a = super::import::flatten_axis(attr_int(node, "axis", 1), x.shape.len())?;
            ConstTensor { shape: vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()], ..x.clone() }
        }
        "Transpose" => {
            let x = get(0)?;
            let rank = x.shape.len();
            let perm = attr_ints(node, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
            let perm: Vec<usize> = perm.iter().map(|&p| axis(p, rank)).collect::<Result<_, _>>()?;
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..rank).collect::<Vec<_>>() {
                return Err(format!("Transpose perm {perm:?} is not a permutation"));
            }
            let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
            let (in_strides, out_strides) = (strides(&x.shape), strides(&shape));
            x.gather(shape.clone(), |i| (0..rank).map(|d| (i / out_strides[d]) % shape[d] * in_strides[perm[d]]).sum())
        }
        "Slice" => {
            let x = get(0)?;
            let spec = slice_spec(im, node, x.shape.len())?;
            let mut cur = x.clone();
            for (a, start, end, step) in spec {
                let idx = python_range(cur.shape[a], start, end, step);
                let inner: usize = cur.shape[a + 1..].iter().product();
                let mut shape = cur.shape.clone();
                let len_a = shape[a];
                shape[a] = idx.len();
                let k = idx.len();
                cur = cur.gather(shape, |i| {
                    let (o, rest) = (i / (k * inner), i % (k * inner));
                    o * len_a * inner + idx[rest / inner] * inner + rest % inner
                });
            }
            cur
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" => {
            let (a, b) = (get(0)?, get(1)?);
            let f: fn(f64, f64) -> f64 = match op {
                "Add" => |x, y| x + y,
                "Sub" => |x, y| x - y,
                "Mul" => |x, y| x * y,
                "Pow" => f64::powf,
                "Equal" => |x, y| (x == y) as i64 as f64,
                _ => |x, y| x / y,
            };
            let integer_div = op == "Div" && !a.is_float();
            let (shape, va, vb) = broadcast2(a, b)?;
            let values: Vec<f64> = va.iter().zip(&vb).map(|(&x, &y)| if integer_div { if y == 0.0 { 0.0 } else { (x / y).trunc() } } else { f(x, y) }).collect();
            if op == "Equal" { ConstTensor::i64(shape, values.iter().map(|&v| v as i64).collect()) } else { a.like(shape, values) }
        }
        "Neg" | "Sqrt" | "Abs" | "Exp" | "Reciprocal" => {
            let x = get(0)?;
            let f: fn(f64) -> f64 = match op {
                "Neg" => |v| -v,
                "Sqrt" => f64::sqrt,
                "Abs" => f64::abs,
                "Exp" => f64::exp,
                _ => |v| 1.0 / v,
            };
            x.like(x.shape.clone(), x.values().into_iter().map(f).collect())
        }
        "Where" => {
            let (c, x, y) = (get(0)?, get(1)?, get(2)?);
            let shape = broadcast_shape(&broadcast_shape(&c.shape, &x.shape)?, &y.shape)?;
            elements(&shape, "Where")?;
            let (vc, vx, vy) = (expand(c, &shape), expand(x, &shape), expand(y, &shape));
            x.like(shape, vc.iter().zip(vx.iter().zip(&vy)).map(|(&c, (&a, &b))| if c != 0.0 { a } else { b }).collect())
        }
        "Expand" => {
            let x = get(0)?;
            let target: Vec<usize> = get(1)?.ints().iter().map(|&d| usize::try_from(d).map_err(|_| format!("Expand to a negative size {d}"))).collect::<Result<_, _>>()?;
            let shape = broadcast_shape(&x.shape, &target)?;
            elements(&shape, "Expand")?;
            x.like(shape.clone(), expand(x, &shape))
        }
        "ConstantOfShape" => {
            let shape: Vec<usize> = get(0)?.ints().iter().map(|&d| usize::try_from(d).map_err(|_| format!("ConstantOfShape of a negative size {d}"))).collect::<Result<_, _>>()?;
            let n = elements(&shape, "ConstantOfShape")?;
            let value = match attr(node, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => super::constant::decode(t)?,
                None => ConstTensor::f32(vec![1], vec![0.0]),
            };
            let v = value.scalar().ok_or("ConstantOfShape's value must hold one element")?;
            value.like(shape, vec![v; n])
        }
        "Range" => {
            let (s, l, d) = (get(0)?, get(1)?, get(2)?);
            let (start, limit, delta) = (s.scalar().ok_or("Range start")?, l.scalar().ok_or("Range limit")?, d.scalar().ok_or("Range delta")?);
            if delta == 0.0 {
                return Err("Range with delta 0".into());
            }
            let n = ((limit - start) / delta).ceil().max(0.0);
            if n > (1 << 24) as f64 {
                return Err("Range is too long".into());
            }
            s.like(vec![n as usize], (0..n as usize).map(|i| start + i as f64 * delta).collect())
        }
        other => return Err(format!("{other} cannot be computed at import time")),
    })
}

/// Elements of a tensor the importer would make from nothing (not read from the file), capped
/// so that a hostile shape cannot exhaust memory: shape arithmetic never needs many.
fn elements(shape: &[usize], op: &str) -> Result<usize, String> {
    const MAX: usize = 1 << 24;
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX).ok_or_else(|| format!("{op} would make a tensor of shape {shape:?}, larger than nnc computes at import time"))
}

/// The shape after `Squeeze`/`Unsqueeze` with `axes` (`None`: every axis of size 1, for
/// `Squeeze`).
pub fn squeeze_shape(op: &str, shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, String> {
    if op == "Unsqueeze" {
        let axes = axes.ok_or("Unsqueeze needs axes")?;
        let rank = shape.len() + axes.len();
        let mut axes: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?;
        axes.sort_unstable();
        let mut out = Vec::with_capacity(rank);
        let mut it = shape.iter();
        for i in 0..rank {
            if axes.binary_search(&i).is_ok() {
                out.push(1);
            } else {
                out.push(*it.next().ok_or("Unsqueeze axes repeat")?);
            }
        }
        return Ok(out);
    }
    match axes {
        None => Ok(shape.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let axes: Vec<usize> = axes.iter().map(|&a| axis(a, shape.len())).collect::<Result<_, _>>()?;
            if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
                return Err(format!("Squeeze of axis {a}, of size {}", shape[a]));
            }
            Ok(shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect())
        }
    }
}

/// `Slice`'s `(axis, start, end, step)` per sliced axis, from its inputs (opset 10 on, so
/// every opset nnc imports).
pub fn slice_spec(im: &Importer, node: &NodeProto, rank: usize) -> Result<Vec<(usize, i64, i64, i64)>, String> {
    let c = |i: usize, what: &str| im.constant(node, i, what).map(|c| c.map(|c| c.ints()));
    let (starts, ends, axes, steps) = (c(1, "starts")?.ok_or("Slice needs starts")?, c(2, "ends")?.ok_or("Slice needs ends")?, c(3, "axes")?, c(4, "steps")?);
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("Slice's starts, ends, axes and steps differ in length".into());
    }
    let mut spec = Vec::new();
    for i in 0..starts.len() {
        if steps[i] == 0 {
            return Err("Slice with step 0".into());
        }
        spec.push((axis(axes[i], rank)?, starts[i], ends[i], steps[i]));
    }
    Ok(spec)
}

/// The indices Python's `range` picks for `x[start:end:step]` on an axis of `len`.
pub fn python_range(len: usize, start: i64, end: i64, step: i64) -> Vec<usize> {
    let n = len as i64;
    let norm = |v: i64, lo: i64, hi: i64| (if v < 0 { v.saturating_add(n) } else { v }).clamp(lo, hi);
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, e) = (norm(start, 0, n), norm(end, 0, n));
        while i < e {
            out.push(i as usize);
            let Some(next) = i.checked_add(step) else { break };
            i = next;
        }
    } else {
        let (mut i, e) = (norm(start, -1, n - 1), norm(end, -1, n - 1));
        while i > e {
            out.push(i as usize);
            let Some(next) = i.checked_add(step) else { break };
            i = next;
        }
    }
    out
}

pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

/// `x`'s values broadcast to `shape`.
fn expand(x: &ConstTensor, shape: &[usize]) -> Vec<f64> {
    let r = shape.len();
    let pad = r - x.shape.len();
    let xs = strides(&x.shape);
    let os = strides(shape);
    let v = x.values();
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            let mut at = 0;
            for d in pad..r {
                let xd = x.shape[d - pad];
                if xd != 1 {
                    at += (i / os[d]) % shape[d] * xs[d - pad];
                }
            }
            v[at]
        })
        .collect()
}

fn broadcast2(a: &ConstTensor, b: &ConstTensor) -> Result<(Vec<usize>, Vec<f64>, Vec<f64>), String> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    elements(&shape, "broadcasting")?;
    let (va, vb) = (expand(a, &shape), expand(b, &shape));
    Ok((shape, va, vb))
}

/// A `Constant` node's value, from whichever attribute holds it.
fn constant_attr(node: &NodeProto) -> Result<ConstTensor, String> {
    let a = node.attribute.first().ok_or("Constant has no value")?;
    Ok(match a.name.as_deref() {
        Some("value") => super::constant::decode(a.t.as_ref().ok_or("Constant value is not a tensor")?)?,
        Some("value_float") => ConstTensor::f32(vec![], vec![a.f.unwrap_or(0.0)]),
        Some("value_floats") => ConstTensor::f32(vec![a.floats.len()], a.floats.clone()),
        Some("value_int") => ConstTensor::i64(vec![], vec![a.i.unwrap_or(0)]),
        Some("value_ints") => ConstTensor::i64(vec![a.ints.len()], a.ints.clone()),
        other => return Err(format!("Constant with attribute {other:?} is not supported")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_ranges() {
        assert_eq!(python_range(5, 1, i64::MAX, 1), [1, 2, 3, 4]);
        assert_eq!(python_range(5, -1, i64::MIN, -1), [4, 3, 2, 1, 0]);
        assert_eq!(python_range(5, 0, 5, 2), [0, 2, 4]);
        assert_eq!(python_range(5, -2, -1, 1), [3]);
        assert_eq!(python_range(5, 1, 5, i64::MAX), [1]);
        assert_eq!(python_range(5, 3, i64::MIN, i64::MIN), [3]);
        assert!(python_range(5, 4, 2, 1).is_empty());
    }

    #[test]
    fn broadcasting_and_squeezing() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]).unwrap(), [2, 4, 3]);
        assert!(broadcast_shape(&[2], &[3]).is_err());
        assert_eq!(squeeze_shape("Unsqueeze", &[3, 4], Some(&[0, -1])).unwrap(), [1, 3, 4, 1]);
        assert_eq!(squeeze_shape("Squeeze", &[1, 3, 1], None).unwrap(), [3]);
        assert!(squeeze_shape("Squeeze", &[2, 3], Some(&[0])).is_err());
        let x = ConstTensor::f32(vec![2, 1], vec![1.0, 2.0]);
        assert_eq!(expand(&x, &[2, 3]), [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    }
}
