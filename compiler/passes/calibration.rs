//! Calibration for int8 quantization: the float graph runs on representative inputs, and
//! each observed value's magnitudes become the range `[-r, r]` its codes cover
//! ([`RangeMethod`]). Observation streams run by run, so memory holds one run's values and
//! a histogram per value, whatever the number of runs.

use crate::interp;
use crate::ir::{Graph, NodeId};
use nnc_runtime::Tensor;
use std::collections::HashMap;

/// Inputs to calibrate on, what runs the float graph on them, and how ranges are chosen.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// Each entry is one run's inputs, in declaration order.
    pub runs: Vec<Vec<Tensor>>,
    /// What runs the float graph on them: the interpreter when `None`. The CLI passes the
    /// JIT's ([`crate::jit::observe`]), an order of magnitude faster on a CNN; the ranges
    /// then come from the JIT's f32 arithmetic, so the scales may differ from the
    /// interpreter's in the last bits (the quantized graph is still one graph, which every
    /// backend then runs bit for bit).
    pub observe: Option<ObserveFn>,
    pub method: RangeMethod,
    /// Activation scales the model already carries (an ONNX model's QDQ pairs), by the name
    /// of the value they quantize: used as given, and those values are not observed.
    pub scales: std::collections::HashMap<String, f32>,
}

impl Calibration {
    /// Calibration on `runs` through the interpreter, by max |x|.
    pub fn new(runs: Vec<Vec<Tensor>>) -> Calibration {
        Calibration { runs, observe: None, method: RangeMethod::MaxAbs, scales: Default::default() }
    }
}

/// Runs `graph` on each run's inputs and hands `each` the values of `nodes`, in order, run
/// by run. An `Err` falls back to the interpreter (whatever `each` saw is discarded). It may
/// change the graph while it runs but leaves it as it found it.
pub type ObserveFn = fn(graph: &mut Graph, nodes: &[NodeId], runs: &[Vec<Tensor>], each: &mut dyn FnMut(&[Tensor])) -> Result<(), String>;

/// How a value's observed magnitudes become the range its 255 codes cover.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum RangeMethod {
    /// The largest |x| seen: nothing saturates, and one outlier coarsens every step
    /// (a symmetric min/max observer).
    #[default]
    MaxAbs,
    /// This percentile of |x| (ONNX Runtime's default is 99.999): the rarest magnitudes
    /// saturate, the rest get finer steps.
    Percentile(f64),
    /// The threshold whose 128-level quantization of the |x| histogram loses the least
    /// information (smallest KL divergence), as TensorRT's entropy calibration chooses it.
    Entropy,
}

/// Bins of the |x| histogram for the percentile and entropy methods.
const BINS: usize = 2048;
/// Levels a non-negative magnitude quantizes to (codes 0..=127).
const LEVELS: usize = 128;

/// The range `r` of every node in `nodes` over all runs (0 for a value that was never
/// observed or is all zero; NaN and infinities are ignored).
pub fn ranges(graph: &mut Graph, nodes: &[NodeId], calibration: &Calibration) -> HashMap<NodeId, f32> {
    let histograms = calibration.method != RangeMethod::MaxAbs;
    let fresh = || nodes.iter().map(|_| Magnitudes::new(histograms)).collect::<Vec<_>>();
    let mut seen = fresh();
    let observed = calibration.observe.is_some_and(|run| {
        run(graph, nodes, &calibration.runs, &mut |values| {
            for (m, t) in seen.iter_mut().zip(values) {
                m.add(t);
            }
        })
        .is_ok()
    });
    if !observed {
        seen = fresh();
        let slot: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        for inputs in &calibration.runs {
            // Calibration inputs were checked against the graph's inputs by the caller; a
            // run that fails anyway contributes no ranges rather than aborting compilation.
            interp::run_observed(graph, inputs, &mut |id, t| {
                if let Some(&i) = slot.get(&id) {
                    seen[i].add(t);
                }
            })
            .ok();
        }
    }
    nodes.iter().zip(&seen).map(|(&n, m)| (n, m.range(calibration.method))).collect()
}

/// What calibration keeps of one value: the largest finite |x|, and, for the histogram
/// methods, a histogram of the non-zero |x| over `BINS` bins of `width`. When a larger |x|
/// arrives the width doubles and bins merge in pairs, so the counts stay exact at a coarser
/// width. Exact zeros are left out: they quantize exactly at any scale, and after a ReLU they
/// are half of all values, a spike in the first bin that would pull the percentile and
/// entropy thresholds far down (the trained digits CNN lost 24 points of accuracy to it).
struct Magnitudes {
    max: f32,
    histogram: Option<(f32, Vec<u64>)>,
    /// The distinct non-zero magnitudes, while there are at most `LEVELS` of them (with
    /// the histograms only).
    distinct: Option<std::collections::HashSet<u32>>,
}

impl Magnitudes {
    fn new(histogram: bool) -> Magnitudes {
        Magnitudes { max: 0.0, histogram: histogram.then(|| (0.0, vec![0; BINS])), distinct: histogram.then(Default::default) }
    }

    fn add(&mut self, t: &Tensor) {
        let Some(values) = t.as_f32() else { return };
        let finite = || values.iter().filter(|v| v.is_finite()).map(|v| v.abs());
        self.max = finite().fold(self.max, f32::max);
        if let Some(set) = &mut self.distinct {
            // Stops at the first value past `LEVELS`: continuous data costs a few hundred
            // lookups, discrete data (pixels) one per value.
            for v in finite().filter(|&v| v != 0.0) {
                if set.insert(v.to_bits()) && set.len() > LEVELS {
                    self.distinct = None;
                    break;
                }
            }
        }
        let Some((width, counts)) = &mut self.histogram else { return };
        if self.max == 0.0 {
            return;
        }
        if *width == 0.0 {
            // The largest |x| falls in the last bin rather than at its far edge; the width
            // is never 0, even for magnitudes near the smallest subnormal, so doubling it
            // always ends.
            *width = (self.max / (BINS - 1) as f32).max(f32::from_bits(1));
        }
        while self.max >= *width * BINS as f32 {
            for i in 0..BINS / 2 {
                counts[i] = counts[2 * i] + counts[2 * i + 1];
            }
            counts[BINS / 2..].fill(0);
            *width *= 2.0;
        }
        for v in finite().filter(|&v| v != 0.0) {
            counts[((v / *width) as usize).min(BINS - 1)] += 1;
        }
    }

    fn range(&self, method: RangeMethod) -> f32 {
        let Some((width, counts)) = &self.histogram else { return self.max };
        if self.max == 0.0 || *width == 0.0 {
            return self.max;
        }
        let threshold = match method {
            RangeMethod::MaxAbs => return self.max,
            RangeMethod::Percentile(p) => percentile_bins(counts, p),
            // A value with at most `LEVELS` distinct magnitudes (pixels of a few grey levels)
            // needs no clipping; the merge-into-levels model of `entropy_bins` cannot see
            // that rounding moves an isolated spike, and would clip all but the first (the
            // digits CNN's input lost 90 points of accuracy to it).
            RangeMethod::Entropy if self.distinct.is_some() => return self.max,
            RangeMethod::Entropy => entropy_bins(counts),
        };
        (threshold as f32 * width).min(self.max)
    }
}

/// Bins up to and including the one where the cumulative count reaches `p` percent.
fn percentile_bins(counts: &[u64], p: f64) -> usize {
    let total: u64 = counts.iter().sum();
    let want = (total as f64 * p / 100.0).ceil() as u64;
    let mut cumulative = 0;
    for (i, &c) in counts.iter().enumerate() {
        cumulative += c;
        if cumulative >= want {
            return i + 1;
        }
    }
    counts.len()
}

/// The number of bins `i` (from `LEVELS` up) whose clipped distribution (the tail summed
/// into bin `i − 1`) is best approximated by its quantization to `LEVELS` levels.
fn entropy_bins(counts: &[u64]) -> usize {
    let last_used = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    if last_used <= LEVELS {
        return last_used.max(1);
    }
    let mut best = (f64::INFINITY, last_used);
    for i in LEVELS..=last_used {
        let mut p: Vec<f64> = counts[..i].iter().map(|&c| c as f64).collect();
        p[i - 1] += counts[i..].iter().sum::<u64>() as f64;
        // The first `i` bins (without the tail) merged into `LEVELS` levels, each level's
        // count spread evenly over the bins where the clipped distribution is non-zero.
        let mut q = vec![0.0; i];
        for level in 0..LEVELS {
            let (start, end) = (level * i / LEVELS, (level + 1) * i / LEVELS);
            let used = p[start..end].iter().filter(|&&pk| pk > 0.0).count();
            if used > 0 {
                let share = counts[start..end].iter().sum::<u64>() as f64 / used as f64;
                for (qk, &pk) in q[start..end].iter_mut().zip(&p[start..end]) {
                    if pk > 0.0 {
                        *qk = share;
                    }
                }
            }
        }
        let (p_total, q_total): (f64, f64) = (p.iter().sum(), q.iter().sum());
        let kl: f64 = p
            .iter()
            .zip(&q)
            .filter(|(&pk, _)| pk > 0.0)
            .map(|(&pk, &qk)| {
                let (pk, qk) = (pk / p_total, (qk / q_total).max(1e-12));
                pk * (pk / qk).ln()
            })
            .sum();
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100,000 magnitudes spread evenly over [0, 1) and one outlier at 1000.
    fn with_outlier(histogram: bool) -> Magnitudes {
        let mut m = Magnitudes::new(histogram);
        let values: Vec<f32> = (0..100_000).map(|i| if i == 7 { 1000.0 } else { (i as f32 / 100_000.0) * if i % 2 == 0 { 1.0 } else { -1.0 } }).collect();
        for chunk in values.chunks(30_000) {
            m.add(&Tensor::f32(vec![chunk.len()], chunk.to_vec()));
        }
        m
    }

    #[test]
    fn max_abs_keeps_the_outlier_and_the_others_clip_it() {
        assert_eq!(with_outlier(false).range(RangeMethod::MaxAbs), 1000.0);
        let m = with_outlier(true);
        assert_eq!(m.range(RangeMethod::MaxAbs), 1000.0);
        // One value in 100,000 lies above 1: the 99.99th percentile is about 1 (within one
        // bin, 1000/2047), the 99.9999th keeps the outlier.
        let p = m.range(RangeMethod::Percentile(99.99));
        assert!((1.0..1.0 + 1000.0 / 2047.0 + 1e-3).contains(&p), "{p}");
        assert_eq!(m.range(RangeMethod::Percentile(99.9999)), 1000.0);
        let e = m.range(RangeMethod::Entropy);
        assert!(e < 100.0, "{e}");
    }

    /// Half zeros (as after a ReLU) and the rest spread over (0, 1]: the zeros quantize
    /// exactly whatever the range, so they must not drag the thresholds towards 0.
    #[test]
    fn exact_zeros_do_not_pull_the_thresholds_down() {
        let mut m = Magnitudes::new(true);
        m.add(&Tensor::f32(vec![20_000], (0..20_000).map(|i| if i % 2 == 0 { 0.0 } else { i as f32 / 20_000.0 }).collect()));
        assert!(m.range(RangeMethod::Percentile(99.9)) > 0.99, "{}", m.range(RangeMethod::Percentile(99.9)));
        assert!(m.range(RangeMethod::Entropy) > 0.5, "{}", m.range(RangeMethod::Entropy));
    }

    /// Pixels of 17 grey levels (k/16): few distinct magnitudes quantize without merging, so
    /// entropy keeps the whole range rather than clipping at the first level.
    #[test]
    fn a_few_distinct_magnitudes_keep_their_whole_range() {
        let mut m = Magnitudes::new(true);
        m.add(&Tensor::f32(vec![17_000], (0..17_000).map(|i| (i % 17) as f32 / 16.0).collect()));
        assert_eq!(m.range(RangeMethod::Entropy), 1.0);
    }

    #[test]
    fn histograms_survive_a_growing_range_with_exact_counts() {
        let mut m = Magnitudes::new(true);
        m.add(&Tensor::f32(vec![3], vec![0.5, -1.0, f32::NAN]));
        m.add(&Tensor::f32(vec![2], vec![100.0, f32::INFINITY]));
        let (width, counts) = m.histogram.as_ref().unwrap();
        assert_eq!(counts.iter().sum::<u64>(), 3, "NaN and infinity are not counted");
        assert!(100.0 < width * BINS as f32, "{width}");
        assert_eq!(m.max, 100.0);
        assert_eq!(m.range(RangeMethod::Percentile(100.0)), 100.0);
    }

    #[test]
    fn magnitudes_near_the_smallest_subnormal_calibrate_without_hanging() {
        let mut m = Magnitudes::new(true);
        m.add(&Tensor::f32(vec![3], vec![1e-44, -1e-45, 0.0]));
        m.add(&Tensor::f32(vec![1], vec![3e-44]));
        for method in [RangeMethod::MaxAbs, RangeMethod::Percentile(99.0), RangeMethod::Entropy] {
            let r = m.range(method);
            assert!(r > 0.0 && r <= 3e-44, "{method:?}: {r}");
        }
    }

    #[test]
    fn all_zero_values_have_range_zero() {
        let mut m = Magnitudes::new(true);
        m.add(&Tensor::f32(vec![4], vec![0.0; 4]));
        for method in [RangeMethod::MaxAbs, RangeMethod::Percentile(99.0), RangeMethod::Entropy] {
            assert_eq!(m.range(method), 0.0);
        }
    }

    #[test]
    fn entropy_of_an_even_spread_keeps_nearly_all_of_it() {
        let mut m = Magnitudes::new(true);
        m.add(&Tensor::f32(vec![10_000], (0..10_000).map(|i| i as f32 / 10_000.0).collect()));
        let e = m.range(RangeMethod::Entropy);
        assert!(e > 0.9, "{e}");
    }
}
