//! `dense` (a fully connected layer over the last axis) and `matmul` (NumPy semantics).

use super::{broadcast_shapes, checked_type, expect_shape, Built, CallArgs, ImplicitParam, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};
use std::num::Wrapping;

type W32 = Wrapping<i32>;

#[derive(Clone, Debug, PartialEq)]
pub struct Dense;

impl Dense {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 3, "x, and optionally weight and bias")?;
        let x = args.operand(0).clone();
        if x.rank() == 0 {
            return Err(OpError::new("dense needs an input of rank 1 or more, `[..., features]`, but got a scalar").at(args.operands[0].span.clone()));
        }
        let bias_kw = args.bool("bias")?;
        let mut implicit = Vec::new();
        if args.operands.len() == 1 {
            let units = args.required_positive("units", "a dense layer without a weight tensor creates one: give `units=`")?;
            let features = *x.shape.last().unwrap_or(&1);
            implicit.push(ImplicitParam { field: "weight", ty: x.with_shape(vec![units, features]) });
            if bias_kw.unwrap_or(true) {
                implicit.push(ImplicitParam { field: "bias", ty: x.with_shape(vec![units]) });
            }
        } else {
            if let Some(span) = args.keyword_span("units") {
                let w = args.operand(1).clone();
                if args.positive("units")? != w.shape.first().copied() {
                    return Err(OpError::new(format!("dense: `units=` disagrees with the weight of shape {}", ShapeDisplay(&w.shape))).at(span));
                }
            }
            if bias_kw == Some(false) && args.operands.len() == 3 {
                return Err(OpError::new("dense: `bias=false` but a bias tensor was passed").at(args.operands[2].span.clone()));
            }
        }
        args.finish(&["units", "bias"])?;
        Ok(Built { op: Op::Dense(Dense), implicit })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = super::quant::product_dtype("dense", operands)?;
        let (x, w) = (operands[0], operands[1]);
        if w.rank() != 2 {
            return Err(OpError::new(format!("dense: the weight must have rank 2 [units, features], but has shape {}", ShapeDisplay(&w.shape))));
        }
        let features = *x.shape.last().ok_or_else(|| OpError::new("dense needs an input of rank 1 or more"))?;
        if w.shape[1] != features {
            return Err(OpError::new(format!(
                "dense: the input has {features} features (shape {}) but the weight expects {} (shape {})",
                ShapeDisplay(&x.shape),
                w.shape[1],
                ShapeDisplay(&w.shape)
            )));
        }
        if let Some(b) = operands.get(2) {
            expect_shape("dense", "the bias", b, &[w.shape[0]])?;
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("rank checked above") = w.shape[0];
        checked_type("dense", dtype, shape)
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let [units, features] = shapes[1][..] else { unreachable!("dense weight has rank 2") };
        let rows = x[0].len() / features;
        let mut out = Vec::with_capacity(rows * units);
        for r in 0..rows {
            let row = &x[0][r * features..][..features];
            for u in 0..units {
                let wrow = &x[1][u * features..][..features];
                let dot: f64 = row.iter().zip(wrow).map(|(&a, &b)| a as f64 * b as f64).sum();
                out.push((dot + x.get(2).map_or(0.0, |b| b[u] as f64)) as f32);
            }
        }
        out
    }

    /// Int8 codes, wrapping i32 accumulation.
    pub fn eval_int(&self, x: &[&[W32]], shapes: &[&[usize]]) -> Vec<W32> {
        let [units, features] = shapes[1][..] else { unreachable!("dense weight has rank 2") };
        let rows = x[0].len() / features;
        let mut out = Vec::with_capacity(rows * units);
        for r in 0..rows {
            let row = &x[0][r * features..][..features];
            for u in 0..units {
                let wrow = &x[1][u * features..][..features];
                let init = x.get(2).map_or(Wrapping(0), |b| b[u]);
                out.push(row.iter().zip(wrow).fold(init, |acc, (&a, &b)| acc + a * b));
            }
        }
        out
    }

    pub fn macs(&self, operands: &[&TensorType], out: &TensorType) -> u64 {
        out.numel() as u64 * operands[1].shape[1] as u64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MatMul;

/// The broadcast batch shape and the `(m, k, n)` of a NumPy matmul, with 1-D operands
/// promoted (a: prepend 1, b: append 1) and the result shape with those axes removed again.
struct MatMulShape {
    batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out: Vec<usize>,
}

fn matmul_shape(a: &[usize], b: &[usize]) -> OpResult<MatMulShape> {
    if a.is_empty() || b.is_empty() {
        return Err(OpError::new("matmul: operands must have rank 1 or more, not scalars").help("use `*` to multiply by a scalar"));
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(OpError::new(format!(
            "matmul: the inner dimensions differ: {} @ {} contracts {k} with {k2}",
            ShapeDisplay(a),
            ShapeDisplay(b)
        )));
    }
    let batch = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2])
        .ok_or_else(|| OpError::new(format!("matmul: the batch dimensions of {} and {} do not broadcast", ShapeDisplay(a), ShapeDisplay(b))))?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(MatMulShape { batch, m, k, n, out })
}

impl MatMul {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(2, 2, "a and b")?;
        args.finish(&[])?;
        Built::plain(Op::MatMul(MatMul))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = super::quant::product_dtype("matmul", operands)?;
        let s = matmul_shape(&operands[0].shape, &operands[1].shape)?;
        checked_type("matmul", dtype, s.out)
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let s = matmul_shape(shapes[0], shapes[1]).expect("matmul shapes were checked");
        let batches: usize = s.batch.iter().product();
        // Batch index of each operand under broadcasting.
        let a_batch = &shapes[0][..shapes[0].len().saturating_sub(2)];
        let b_batch = &shapes[1][..shapes[1].len().saturating_sub(2)];
        let mut out = Vec::with_capacity(batches * s.m * s.n);
        for bi in 0..batches {
            let ia = super::elementwise::broadcast_index(bi, &s.batch, a_batch);
            let ib = super::elementwise::broadcast_index(bi, &s.batch, b_batch);
            let a = &x[0][ia * s.m * s.k..][..s.m * s.k];
            let b = &x[1][ib * s.k * s.n..][..s.k * s.n];
            for i in 0..s.m {
                for j in 0..s.n {
                    let dot: f64 = (0..s.k).map(|p| a[i * s.k + p] as f64 * b[p * s.n + j] as f64).sum();
                    out.push(dot as f32);
                }
            }
        }
        out
    }

    /// Int8 codes, wrapping i32 accumulation.
    pub fn eval_int(&self, x: &[&[W32]], shapes: &[&[usize]]) -> Vec<W32> {
        let s = matmul_shape(shapes[0], shapes[1]).expect("matmul shapes were checked");
        let batches: usize = s.batch.iter().product();
        let a_batch = &shapes[0][..shapes[0].len().saturating_sub(2)];
        let b_batch = &shapes[1][..shapes[1].len().saturating_sub(2)];
        let mut out = Vec::with_capacity(batches * s.m * s.n);
        for bi in 0..batches {
            let a = &x[0][super::elementwise::broadcast_index(bi, &s.batch, a_batch) * s.m * s.k..][..s.m * s.k];
            let b = &x[1][super::elementwise::broadcast_index(bi, &s.batch, b_batch) * s.k * s.n..][..s.k * s.n];
            for i in 0..s.m {
                for j in 0..s.n {
                    out.push((0..s.k).fold(Wrapping(0), |acc, p| acc + a[i * s.k + p] * b[p * s.n + j]));
                }
            }
        }
        out
    }

    /// For batch `bi` of the result, the batch indices of `a` and `b` under broadcasting.
    pub fn batch_operands(a: &[usize], b: &[usize], bi: usize) -> (usize, usize) {
        let s = matmul_shape(a, b).expect("matmul shapes were checked");
        let a_batch = &a[..a.len().saturating_sub(2)];
        let b_batch = &b[..b.len().saturating_sub(2)];
        (super::elementwise::broadcast_index(bi, &s.batch, a_batch), super::elementwise::broadcast_index(bi, &s.batch, b_batch))
    }

    /// `(batch count, m, k, n)` of the product, operands promoted as NumPy does.
    pub fn dims(a: &[usize], b: &[usize]) -> (usize, usize, usize, usize) {
        let s = matmul_shape(a, b).expect("matmul shapes were checked");
        (s.batch.iter().product(), s.m, s.k, s.n)
    }

    pub fn macs(&self, operands: &[&TensorType], _out: &TensorType) -> u64 {
        matmul_shape(&operands[0].shape, &operands[1].shape).map_or(0, |s| (s.batch.iter().product::<usize>() * s.m * s.k * s.n) as u64)
    }
}

impl Dense {
    pub fn traits(&self) -> super::Traits {
        super::Traits { codes: super::Codes::Multiplies, product: Some(super::Product::Dense(self.clone())), ..super::Traits::PLAIN }
    }
}

impl MatMul {
    pub fn traits(&self) -> super::Traits {
        super::Traits { codes: super::Codes::Multiplies, product: Some(super::Product::MatMul(self.clone())), ..super::Traits::PLAIN }
    }
}
