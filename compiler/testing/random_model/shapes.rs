//! Generators for elementwise ops, pooling, softmax and the ops that only move data
//! (transpose, reshape, flatten, concat, slice).

use super::{list, python_slice_len, window_out, Choices, Gen};

impl Gen<'_> {
    pub(super) fn unary(&mut self, v: &str, shape: &[usize]) -> bool {
        let q = self.c.byte() as usize;
        let names = ["relu", "sigmoid", "tanh", "gelu", "silu", "abs", "neg", "relu6", "leaky_relu", "clip"];
        let f = names[q % names.len()];
        let expr = match f {
            "leaky_relu" => format!("leaky_relu({v}, alpha=0.{})", 1 + q % 9),
            "clip" => format!("clip({v}, min=-0.5, max=0.{})", 1 + q % 9),
            _ => format!("{f}({v})"),
        };
        self.note(f);
        self.push(expr, shape.to_vec());
        true
    }
    pub(super) fn exp_or_sqrt(&mut self, v: &str, shape: &[usize]) -> bool {
        if self.c.coin() {
            // Values stay moderate in these graphs, but chains of exp may still overflow to
            // inf: every backend must agree on that too.
            self.note("exp");
            self.push(format!("exp({v})"), shape.to_vec());
        } else {
            self.note("sqrt");
            self.note("abs");
            self.note("add");
            self.push(format!("sqrt(abs({v}) + 0.5)"), shape.to_vec());
        }
        true
    }
    /// `+ - * /` between two values (the second the same shape or broadcast to it) or a
    /// value and a number, as operators or as calls.
    pub(super) fn binary(&mut self, v: &str, shape: &[usize]) -> bool {
        let op = *self.c.pick(&["add", "sub", "mul", "div"]);
        let symbol = match op {
            "add" => "+",
            "sub" => "-",
            "mul" => "*",
            _ => "/",
        };
        self.note(op);
        // The other operand: a value that broadcasts to `shape`, or a number.
        let broadcastable: Vec<(String, Vec<usize>)> = self
            .values
            .iter()
            .filter(|(_, s)| s.len() <= shape.len() && s.iter().rev().zip(shape.iter().rev()).all(|(a, b)| a == b || *a == 1))
            .cloned()
            .collect();
        let (other, other_shape) = if self.c.below(3) == 0 {
            (format!("{}.{}", self.c.range(0, 3), self.c.range(1, 9)), None)
        } else {
            let (n, s) = self.c.pick(&broadcastable).clone();
            (n, Some(s))
        };
        if let Some(s) = &other_shape {
            if s.as_slice() != shape {
                self.note("binary:broadcast");
            }
        }
        let number = other_shape.is_none();
        // A divisor is kept away from zero.
        let other = if op == "div" && !number {
            self.note("abs");
            self.note("add");
            format!("(abs({other}) + 1)")
        } else {
            other
        };
        let number_left = number && op != "div" && self.c.coin();
        let (a, b) = if number_left { (other.clone(), v.to_string()) } else { (v.to_string(), other.clone()) };
        if number {
            self.note(if number_left { "binary:number-left" } else { "binary:number-right" });
        }
        let expr = if self.c.coin() {
            self.note("binary:call-form");
            format!("{op}({a}, {b})")
        } else {
            format!("{a} {symbol} {b}")
        };
        self.push(expr, shape.to_vec());
        true
    }
    pub(super) fn pool(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.len() != 4 {
            return false;
        }
        let op = if self.c.coin() { "max_pool" } else { "avg_pool" };
        let kernel = [self.c.range(1, 3), self.c.range(1, 3)];
        let stride = [self.c.range(1, 2), self.c.range(1, 2)];
        let same = stride == [1, 1] && self.c.coin();
        let (text, pad) = if same {
            let t = [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2];
            (", padding=\"same\"".to_string(), [t[0], t[1], kernel[0] - 1 - t[0], kernel[1] - 1 - t[1]])
        } else {
            let p = [self.c.range(0, kernel[0] / 2), self.c.range(0, kernel[1] / 2)];
            (format!(", padding={}", list(&p)), [p[0], p[1], p[0], p[1]])
        };
        if pad.iter().zip([kernel[0], kernel[1], kernel[0], kernel[1]]).any(|(p, k)| *p > k / 2) {
            return false;
        }
        let (Some(oh), Some(ow)) = (window_out(shape[2], pad[0], pad[2], kernel[0], 1, stride[0]), window_out(shape[3], pad[1], pad[3], kernel[1], 1, stride[1])) else {
            return false;
        };
        self.note(op);
        if same {
            self.note("pool:same");
        }
        if kernel[0] != kernel[1] || stride[0] != stride[1] {
            self.note("pool:rectangular");
        }
        self.push(format!("{op}({v}, kernel={}, stride={}{text})", list(&kernel), list(&stride)), vec![shape[0], shape[1], oh, ow]);
        true
    }
    pub(super) fn softmax(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.is_empty() {
            return false;
        }
        self.note("softmax");
        let rank = shape.len() as i64;
        let axis = self.c.below(shape.len()) as i64;
        let axis = if self.c.coin() {
            self.note("softmax:negative-axis");
            axis - rank
        } else {
            axis
        };
        self.push(format!("softmax({v}, axis={axis})"), shape.to_vec());
        true
    }
    pub(super) fn transpose(&mut self, v: &str, shape: &[usize]) -> bool {
        let rank = shape.len();
        if rank < 2 {
            return false;
        }
        self.note("transpose");
        let mut perm: Vec<usize> = (0..rank).collect();
        // A rotation or a swap of two axes: every permutation is a product of these.
        if self.c.coin() {
            perm.rotate_left(1 + self.c.below(rank - 1));
        } else {
            let (a, b) = (self.c.below(rank), self.c.below(rank));
            perm.swap(a, b);
        }
        let out = perm.iter().map(|&a| shape[a]).collect();
        self.push(format!("transpose({v}, perm={})", list(&perm)), out);
        true
    }
    pub(super) fn reshape(&mut self, v: &str, shape: &[usize]) -> bool {
        let n: usize = shape.iter().product();
        match self.c.below(3) {
            0 => {
                self.note("reshape");
                self.push(format!("reshape({v}, [-1])"), vec![n]);
            }
            1 if !shape.is_empty() => {
                self.note("flatten");
                self.push(format!("flatten({v})"), vec![shape[0], n / shape[0]]);
            }
            _ => {
                // Split off a divisor as a leading axis, with the rest inferred.
                let divisors: Vec<usize> = (1..=n).filter(|d| n.is_multiple_of(*d)).collect();
                let d = *self.c.pick(&divisors);
                self.note("reshape");
                self.push(format!("reshape({v}, [{d}, 1, -1])"), vec![d, 1, n / d]);
            }
        }
        true
    }
    pub(super) fn concat(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.is_empty() {
            return false;
        }
        let axis = self.c.below(shape.len());
        // Operands that match `shape` on every axis but `axis`.
        let fits: Vec<(String, Vec<usize>)> = self
            .values
            .iter()
            .filter(|(n, s)| n != v && s.len() == shape.len() && (0..s.len()).all(|a| a == axis || s[a] == shape[a]))
            .cloned()
            .collect();
        let (other, size) = if !fits.is_empty() && self.c.below(4) != 0 {
            self.note("concat:distinct-operands");
            let (n, s) = self.c.pick(&fits).clone();
            (n, s[axis])
        } else {
            (v.to_string(), shape[axis])
        };
        self.note("concat");
        let mut out = shape.to_vec();
        out[axis] += size;
        self.push(format!("concat({v}, {other}, axis={axis})"), out);
        true
    }
    pub(super) fn slice(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.is_empty() {
            return false;
        }
        let axis = self.c.below(shape.len());
        let d = shape[axis] as i64;
        // Bounds anywhere from well before the axis to well after it, negative ones included.
        let bound = |c: &mut Choices| c.range(0, 2 * d as usize + 6) as i64 - d - 3;
        let (start, end) = (bound(&mut self.c), bound(&mut self.c));
        let step = *self.c.pick(&[1i64, 1, 2, 3, -1, -2]);
        let len = python_slice_len(d, start, end, step);
        if len == 0 {
            return false;
        }
        if step < 0 {
            self.note("slice:negative-step");
        }
        self.note("slice");
        let mut out = shape.to_vec();
        out[axis] = len as usize;
        self.push(format!("slice({v}, axis={axis}, start={start}, end={end}, step={step})"), out);
        true
    }
    pub(super) fn global_avg_pool(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.len() != 4 {
            return false;
        }
        self.note("global_avg_pool");
        self.push(format!("global_avg_pool({v})"), vec![shape[0], shape[1], 1, 1]);
        true
    }
}
