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

mod layers;
mod shapes;

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
}
