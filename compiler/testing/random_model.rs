//! Random valid models, NNSmith-style: each op is chosen so that its shape rule holds for the
//! values at hand, and the model is written as `.nn` source so the whole front end runs on it.
//!
//! One stream of bytes drives every choice. proptest shrinks it, libFuzzer mutates it and the
//! campaign draws it from a seeded generator, so all three explore the same space, and a
//! failing case is its bytes. Past the end of the stream every byte reads as zero, so any
//! stream, however short or long, is a valid model.
//!
//! Every op of the language and every variant that has its own code path in some backend
//! (see [`VARIANTS`]) is reachable; `generator_reaches_every_op_and_variant` in
//! `tests/random_graphs.rs` checks that, against [`crate::ops::OP_NAMES`], so an op added to
//! the language and not to this generator fails the suite.

use std::collections::BTreeSet;

/// The variants the generator records besides op names: each is a shape of an op call that a
/// backend lowers differently, or a front-end form that must mean the same as another.
pub const VARIANTS: &[&str] = &[
    "batch>1",
    "conv2d:dilated",
    "conv2d:grouped",
    "conv2d:depthwise",
    "conv2d:same",
    "conv2d:asymmetric-padding",
    "conv2d:rectangular-kernel",
    "conv2d:strided",
    "conv2d:no-bias",
    "conv2d:explicit-weights",
    "dense:explicit-weights",
    "dense:no-bias",
    "dense:rank-4-input",
    "batch_norm:explicit-weights",
    "batch_norm:eps",
    "layer_norm:eps",
    "lstm:explicit-weights",
    "lstm:no-bias",
    "binary:call-form",
    "binary:number-left",
    "binary:number-right",
    "binary:broadcast",
    "matmul:call-form",
    "matmul:distinct-operands",
    "matmul:weight-operand",
    "attention:distinct-operands",
    "attention:causal",
    "attention:cross-length",
    "concat:distinct-operands",
    "pool:same",
    "pool:rectangular",
    "softmax:negative-axis",
    "slice:negative-step",
];

/// A generated model: its source, and which ops and [`VARIANTS`] it contains.
#[derive(Clone, Debug)]
pub struct RandomModel {
    pub source: String,
    pub features: BTreeSet<&'static str>,
}

/// Reads choices from a byte stream; past its end every byte is zero.
pub struct Choices<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Choices<'a> {
        Choices { data, at: 0 }
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// A number in `0..n` (`n` ≥ 1, at most 256).
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn coin(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }
}

/// At most this many ops: enough for interesting interactions (fusion chains, layouts that
/// change and change back), few enough that a case runs in milliseconds.
pub const MAX_STEPS: usize = 14;

/// The model the bytes describe.
pub fn random_model(data: &[u8]) -> RandomModel {
    let mut c = Choices::new(data);
    let batch = if c.below(4) == 0 { 2 } else { 1 };
    let channels = c.range(1, 6);
    let (h, w) = (c.range(3, 8), c.range(3, 8));
    let steps = c.range(1, MAX_STEPS);
    let mut g = Gen { c, lines: Vec::new(), values: vec![("x".into(), vec![batch, channels, h, w])], next: 0, features: BTreeSet::new() };
    if batch > 1 {
        g.features.insert("batch>1");
    }
    for _ in 0..steps {
        g.step();
    }
    let last = g.values.last().expect("the input is a value").0.clone();
    let extra_at = g.c.below(g.values.len());
    let extra = g.values[extra_at].0.clone();
    let mut source = format!("model random {{\n    input x: f32[{batch}, {channels}, {h}, {w}]\n{}\n", g.lines.join("\n"));
    // Outputs are fresh values, so a graph output is never also a graph input.
    source.push_str(&format!("    output out0 = {last} * 1\n"));
    if extra != last {
        source.push_str(&format!("    output out1 = {extra} + 0\n"));
    }
    source.push_str("}\n");
    g.features.insert("mul");
    RandomModel { source, features: g.features }
}

/// Builds a model statement by statement, tracking every value's shape.
struct Gen<'a> {
    c: Choices<'a>,
    lines: Vec<String>,
    values: Vec<(String, Vec<usize>)>,
    next: usize,
    features: BTreeSet<&'static str>,
}

fn list(v: &[usize]) -> String {
    format!("[{}]", v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// `(size + before + after − dilation·(kernel − 1) − 1) / stride + 1`, if the window fits.
fn window_out(size: usize, before: usize, after: usize, kernel: usize, dilation: usize, stride: usize) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    (size + before + after >= span).then(|| (size + before + after - span) / stride + 1)
}

/// How many elements `range(d)[start:end:step]` has in Python.
fn python_slice_len(d: i64, start: i64, end: i64, step: i64) -> i64 {
    let clamp = |i: i64, lo: i64, hi: i64| {
        let i = if i < 0 { i + d } else { i };
        i.clamp(lo, hi)
    };
    if step > 0 {
        let (s, e) = (clamp(start, 0, d), clamp(end, 0, d));
        if e > s { (e - s + step - 1) / step } else { 0 }
    } else {
        let (s, e) = (clamp(start, -1, d - 1), clamp(end, -1, d - 1));
        if s > e { (s - e - 1) / -step + 1 } else { 0 }
    }
}

impl Gen<'_> {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn push(&mut self, expr: String, shape: Vec<usize>) {
        let name = self.fresh("v");
        self.lines.push(format!("    {name} = {expr}"));
        self.values.push((name, shape));
    }

    fn param(&mut self, shape: &[usize]) -> String {
        let name = self.fresh("p");
        self.lines.push(format!("    param {name}: f32{}", list(shape)));
        name
    }

    fn note(&mut self, feature: &'static str) {
        self.features.insert(feature);
    }

    /// Another value with exactly this shape, if there is one besides `not`.
    fn other_of_shape(&mut self, shape: &[usize], not: &str) -> Option<String> {
        let same: Vec<String> = self.values.iter().filter(|(n, s)| s == shape && n != not).map(|(n, _)| n.clone()).collect();
        (!same.is_empty()).then(|| self.c.pick(&same).clone())
    }

    fn step(&mut self) {
        // Mostly the newest value, so that graphs grow deep rather than wide.
        let newest = self.values.len() - 1;
        let at = if self.c.below(4) == 0 { self.c.below(self.values.len()) } else { newest };
        let (v, shape) = self.values[at].clone();
        let kind = self.c.below(17);
        let done = match kind {
            0 => self.unary(&v, &shape),
            1 => self.binary(&v, &shape),
            2 => self.conv2d(&v, &shape),
            3 => self.batch_norm(&v, &shape),
            4 => self.pool(&v, &shape),
            5 => self.softmax(&v, &shape),
            6 => self.layer_norm(&v, &shape),
            7 => self.dense(&v, &shape),
            8 => self.transpose(&v, &shape),
            9 => self.reshape(&v, &shape),
            10 => self.concat(&v, &shape),
            11 => self.slice(&v, &shape),
            12 => self.global_avg_pool(&v, &shape),
            13 => self.matmul(&v, &shape),
            14 => self.attention(&v, &shape),
            15 => self.lstm(&v, &shape),
            _ => self.exp_or_sqrt(&v, &shape),
        };
        if !done {
            self.unary(&v, &shape);
        }
    }

    fn unary(&mut self, v: &str, shape: &[usize]) -> bool {
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

    fn exp_or_sqrt(&mut self, v: &str, shape: &[usize]) -> bool {
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
    fn binary(&mut self, v: &str, shape: &[usize]) -> bool {
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

    fn conv2d(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.len() != 4 {
            return false;
        }
        let (n, ch, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        let kernel = [self.c.range(1, 3), self.c.range(1, 3)];
        let dilation = if self.c.below(4) == 0 { 2 } else { 1 };
        let stride = if self.c.below(3) == 0 { 2 } else { 1 };
        // Groups: 1, all channels (depthwise) or a proper divisor in between.
        let divisors: Vec<usize> = (2..ch).filter(|g| ch % g == 0).collect();
        let groups = match self.c.below(3) {
            1 => ch,
            2 if !divisors.is_empty() => *self.c.pick(&divisors),
            _ => 1,
        };
        let filters = groups * self.c.range(1, if groups == 1 { 6 } else { 2 });
        // Padding: none, symmetric, `[ph, pw]`, `[top, left, bottom, right]` or "same". Up to
        // the kernel's reach, so on small images some taps see only padding.
        let reach = [dilation * (kernel[0] - 1), dilation * (kernel[1] - 1)];
        let (text, pad) = match self.c.below(5) {
            0 => (String::new(), [0; 4]),
            1 => {
                let p = self.c.range(0, reach[0].min(reach[1]));
                (format!(", padding={p}"), [p; 4])
            }
            2 => {
                let (ph, pw) = (self.c.range(0, reach[0]), self.c.range(0, reach[1]));
                (format!(", padding=[{ph}, {pw}]"), [ph, pw, ph, pw])
            }
            3 => {
                let p = [self.c.range(0, reach[0]), self.c.range(0, reach[1]), self.c.range(0, reach[0]), self.c.range(0, reach[1])];
                if p[0] != p[2] || p[1] != p[3] {
                    self.note("conv2d:asymmetric-padding");
                }
                (format!(", padding=[{}, {}, {}, {}]", p[0], p[1], p[2], p[3]), p)
            }
            _ if stride == 1 => {
                self.note("conv2d:same");
                (", padding=\"same\"".to_string(), [reach[0] / 2, reach[1] / 2, reach[0] - reach[0] / 2, reach[1] - reach[1] / 2])
            }
            _ => (String::new(), [0; 4]),
        };
        let (Some(oh), Some(ow)) = (window_out(h, pad[0], pad[2], kernel[0], dilation, stride), window_out(w, pad[1], pad[3], kernel[1], dilation, stride)) else {
            return false;
        };
        self.note("conv2d");
        if dilation > 1 {
            self.note("conv2d:dilated");
        }
        if stride > 1 {
            self.note("conv2d:strided");
        }
        if kernel[0] != kernel[1] {
            self.note("conv2d:rectangular-kernel");
        }
        if groups == ch && ch > 1 {
            self.note("conv2d:depthwise");
        } else if groups > 1 {
            self.note("conv2d:grouped");
        }
        let bias = self.c.below(4) != 0;
        if !bias {
            self.note("conv2d:no-bias");
        }
        let options = format!("stride={stride}, dilation={dilation}, groups={groups}{text}");
        let expr = if self.c.below(3) == 0 {
            self.note("conv2d:explicit-weights");
            let wt = self.param(&[filters, ch / groups, kernel[0], kernel[1]]);
            if bias {
                let b = self.param(&[filters]);
                format!("conv2d({v}, {wt}, {b}, {options})")
            } else {
                format!("conv2d({v}, {wt}, {options})")
            }
        } else {
            let k = if kernel[0] == kernel[1] { kernel[0].to_string() } else { list(&kernel) };
            format!("conv2d({v}, filters={filters}, kernel={k}, {options}{})", if bias { "" } else { ", bias=false" })
        };
        self.push(expr, vec![n, filters, oh, ow]);
        true
    }

    fn batch_norm(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.len() < 2 {
            return false;
        }
        self.note("batch_norm");
        let eps = if self.c.coin() {
            self.note("batch_norm:eps");
            ", eps=0.001"
        } else {
            ""
        };
        let expr = if self.c.below(3) == 0 {
            self.note("batch_norm:explicit-weights");
            let ps: Vec<String> = (0..4).map(|_| self.param(&[shape[1]])).collect();
            format!("batch_norm({v}, {}{eps})", ps.join(", "))
        } else {
            format!("batch_norm({v}{eps})")
        };
        self.push(expr, shape.to_vec());
        true
    }

    fn layer_norm(&mut self, v: &str, shape: &[usize]) -> bool {
        let Some(&d) = shape.last() else { return false };
        self.note("layer_norm");
        let eps = if self.c.coin() {
            self.note("layer_norm:eps");
            ", eps=0.01"
        } else {
            ""
        };
        let expr = if self.c.below(3) == 0 {
            let (g, b) = (self.param(&[d]), self.param(&[d]));
            format!("layer_norm({v}, {g}, {b}{eps})")
        } else {
            format!("layer_norm({v}{eps})")
        };
        self.push(expr, shape.to_vec());
        true
    }

    fn pool(&mut self, v: &str, shape: &[usize]) -> bool {
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

    fn softmax(&mut self, v: &str, shape: &[usize]) -> bool {
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

    fn dense(&mut self, v: &str, shape: &[usize]) -> bool {
        let Some(&inputs) = shape.last() else { return false };
        self.note("dense");
        if shape.len() == 4 {
            self.note("dense:rank-4-input");
        }
        let units = self.c.range(1, 9);
        let bias = self.c.below(4) != 0;
        if !bias {
            self.note("dense:no-bias");
        }
        let expr = if self.c.below(3) == 0 {
            self.note("dense:explicit-weights");
            let wt = self.param(&[units, inputs]);
            if bias {
                let b = self.param(&[units]);
                format!("dense({v}, {wt}, {b})")
            } else {
                format!("dense({v}, {wt})")
            }
        } else {
            format!("dense({v}, units={units}{})", if bias { "" } else { ", bias=false" })
        };
        let mut out = shape.to_vec();
        *out.last_mut().expect("rank ≥ 1") = units;
        self.push(expr, out);
        true
    }

    fn transpose(&mut self, v: &str, shape: &[usize]) -> bool {
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

    fn reshape(&mut self, v: &str, shape: &[usize]) -> bool {
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
                let divisors: Vec<usize> = (1..=n).filter(|d| n % d == 0).collect();
                let d = *self.c.pick(&divisors);
                self.note("reshape");
                self.push(format!("reshape({v}, [{d}, 1, -1])"), vec![d, 1, n / d]);
            }
        }
        true
    }

    fn concat(&mut self, v: &str, shape: &[usize]) -> bool {
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

    fn slice(&mut self, v: &str, shape: &[usize]) -> bool {
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

    fn global_avg_pool(&mut self, v: &str, shape: &[usize]) -> bool {
        if shape.len() != 4 {
            return false;
        }
        self.note("global_avg_pool");
        self.push(format!("global_avg_pool({v})"), vec![shape[0], shape[1], 1, 1]);
        true
    }

    /// `a @ b` with `b` the transpose of `a`, of another value of `a`'s shape, or a weight.
    fn matmul(&mut self, v: &str, shape: &[usize]) -> bool {
        let rank = shape.len();
        if rank < 2 {
            return false;
        }
        self.note("matmul");
        self.note("transpose");
        let (m, k) = (shape[rank - 2], shape[rank - 1]);
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(rank - 1, rank - 2);
        let (rhs, n) = match self.c.below(3) {
            0 => (format!("transpose({v}, perm={})", list(&perm)), m),
            1 => match self.other_of_shape(shape, v) {
                Some(o) => {
                    self.note("matmul:distinct-operands");
                    (format!("transpose({o}, perm={})", list(&perm)), m)
                }
                None => (format!("transpose({v}, perm={})", list(&perm)), m),
            },
            _ => {
                self.note("matmul:weight-operand");
                let n = self.c.range(1, 6);
                (self.param(&[k, n]), n)
            }
        };
        let expr = if self.c.coin() {
            self.note("matmul:call-form");
            format!("matmul({v}, {rhs})")
        } else {
            format!("{v} @ {rhs}")
        };
        let mut out = shape.to_vec();
        out[rank - 1] = n;
        self.push(expr, out);
        true
    }

    fn attention(&mut self, v: &str, shape: &[usize]) -> bool {
        let rank = shape.len();
        if rank < 2 {
            return false;
        }
        self.note("attention");
        let causal = self.c.coin();
        if causal {
            self.note("attention:causal");
        }
        let (k, val, dv) = match self.c.below(3) {
            0 => (v.to_string(), v.to_string(), shape[rank - 1]),
            1 => {
                let k = self.other_of_shape(shape, v).unwrap_or_else(|| v.to_string());
                let val = self.other_of_shape(shape, v).unwrap_or_else(|| v.to_string());
                if k != v || val != v {
                    self.note("attention:distinct-operands");
                }
                (k, val, shape[rank - 1])
            }
            _ => {
                // Keys and values from weights, of another sequence length and value width.
                self.note("attention:distinct-operands");
                self.note("attention:cross-length");
                let (sk, dv) = (self.c.range(1, 5), self.c.range(1, 5));
                let mut ks = shape.to_vec();
                ks[rank - 2] = sk;
                let mut vs = ks.clone();
                vs[rank - 1] = dv;
                (self.param(&ks), self.param(&vs), dv)
            }
        };
        let mut out = shape.to_vec();
        out[rank - 1] = dv;
        self.push(format!("attention({v}, {k}, {val}, causal={causal})"), out);
        true
    }

    /// An LSTM over `[T, N, I]`; a value of another rank is first viewed as one.
    fn lstm(&mut self, v: &str, shape: &[usize]) -> bool {
        let (v, shape) = if shape.len() == 3 {
            (v.to_string(), shape.to_vec())
        } else {
            let n: usize = shape.iter().product();
            let t = if n % 2 == 0 { 2 } else { 1 };
            self.note("reshape");
            self.push(format!("reshape({v}, [{t}, 1, -1])"), vec![t, 1, n / t]);
            self.values.last().expect("just pushed").clone()
        };
        let (t, n, i) = (shape[0], shape[1], shape[2]);
        // Hidden sizes around one f32x4 vector, with remainders.
        let hidden = self.c.range(1, 6);
        self.note("lstm");
        let bias = self.c.below(4) != 0;
        if !bias {
            self.note("lstm:no-bias");
        }
        let expr = if self.c.below(3) == 0 {
            self.note("lstm:explicit-weights");
            let wi = self.param(&[4 * hidden, i]);
            let wh = self.param(&[4 * hidden, hidden]);
            if bias {
                let (bi, bh) = (self.param(&[4 * hidden]), self.param(&[4 * hidden]));
                format!("lstm({v}, {wi}, {wh}, {bi}, {bh})")
            } else {
                format!("lstm({v}, {wi}, {wh})")
            }
        } else {
            format!("lstm({v}, hidden={hidden}{})", if bias { "" } else { ", bias=false" })
        };
        self.push(expr, vec![t, n, hidden]);
        true
    }
}
