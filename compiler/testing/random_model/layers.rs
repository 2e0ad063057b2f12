//! Generators for the layers: convolutions, normalizations, dense and matmul products,
//! attention and the LSTM, each with its variants (explicit weights, bias or none, groups,
//! padding forms, ...).

use super::{list, window_out, Gen};

impl Gen<'_> {
    pub(super) fn conv2d(&mut self, v: &str, shape: &[usize]) -> bool {
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
    pub(super) fn batch_norm(&mut self, v: &str, shape: &[usize]) -> bool {
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
    pub(super) fn layer_norm(&mut self, v: &str, shape: &[usize]) -> bool {
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
    pub(super) fn dense(&mut self, v: &str, shape: &[usize]) -> bool {
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
    /// `a @ b` with `b` the transpose of `a`, of another value of `a`'s shape, or a weight.
    pub(super) fn matmul(&mut self, v: &str, shape: &[usize]) -> bool {
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
    pub(super) fn attention(&mut self, v: &str, shape: &[usize]) -> bool {
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
    pub(super) fn lstm(&mut self, v: &str, shape: &[usize]) -> bool {
        let (v, shape) = if shape.len() == 3 {
            (v.to_string(), shape.to_vec())
        } else {
            let n: usize = shape.iter().product();
            let t = if n.is_multiple_of(2) { 2 } else { 1 };
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
