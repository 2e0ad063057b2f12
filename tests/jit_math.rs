//! The JIT's polynomial approximations against f64 references, over dense grids. The bounds
//! asserted here are the ones documented in `compiler/jit/kernel.rs`.

use nnc::driver::{build_graph, Source};
use nnc::jit;
use nnc_runtime::Tensor;

/// Apply `op` elementwise with the JIT (both the f32x4 body and the scalar tail run).
fn jit_apply(op: &str, xs: &[f32]) -> Vec<f32> {
    let n = xs.len();
    let src = format!("model m {{\n input x: f32[{n}]\n output y = {op}(x)\n}}");
    let g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
    let exe = jit::compile(&g, &Default::default()).unwrap();
    exe.run(&mut exe.workspace(), &[Tensor::f32(vec![n], xs.to_vec())]).unwrap().remove(0).to_f32_vec()
}

fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    // An odd count so the scalar remainder path is exercised as well.
    (0..n | 1).map(|i| lo + (hi - lo) * i as f32 / (n | 1) as f32).collect()
}

fn max_error(op: &str, xs: &[f32], reference: impl Fn(f64) -> f64, relative: bool) -> f64 {
    let got = jit_apply(op, xs);
    xs.iter().zip(got).map(|(&x, y)| {
        let r = reference(x as f64);
        let e = (y as f64 - r).abs();
        if relative { e / r.abs().max(f64::MIN_POSITIVE) } else { e }
    }).fold(0.0, f64::max)
}

#[test]
fn exp_relative_error_is_below_2e_7() {
    // Up to ln(f32::MAX): the largest inputs with a finite result.
    let e = max_error("exp", &grid(-87.0, 88.72, 200_001), f64::exp, true);
    eprintln!("exp: max relative error {e:e}");
    // Measured on 2026-11-27: 1.16e-7.
    assert!(e < 2e-7, "exp: max relative error {e:e}");
}

#[test]
fn sigmoid_tanh_erf_gelu_silu_absolute_errors() {
    let xs = grid(-20.0, 20.0, 200_001);
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let cases: [(&str, Box<dyn Fn(f64) -> f64>, f64); 4] = [
        // Measured on 2026-11-27: 8.9e-8, 1.8e-7, 4.5e-7 and 1.3e-6 (silu grows with |x|);
        // gelu 8.6e-7 since erf is Abramowitz and Stegun 7.1.28 (2026-12-06).
        ("sigmoid", Box::new(sigmoid), 2e-7),
        ("tanh", Box::new(f64::tanh), 3e-7),
        ("gelu", Box::new(|x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))), 1e-6),
        ("silu", Box::new(move |x: f64| x * sigmoid(x)), 3e-6),
    ];
    for (op, f, bound) in cases {
        let e = max_error(op, &xs, f, false);
        eprintln!("{op}: max absolute error {e:e}");
        assert!(e < bound, "{op}: max absolute error {e:e} (bound {bound:e})");
    }
}

#[test]
fn special_values() {
    let got = jit_apply("exp", &[f32::NAN, f32::NEG_INFINITY, 0.0, -0.0, 1.0, 88.73, 89.0, 1000.0, f32::INFINITY, -104.0, -1000.0]);
    assert!(got[0].is_nan());
    assert_eq!(got[1], 0.0);
    assert_eq!(&got[2..4], &[1.0, 1.0]);
    assert!((got[4] - std::f32::consts::E).abs() < 1e-6);
    // Overflow and underflow as f32 rounds them (the interpreter's results).
    assert_eq!(&got[5..9], &[f32::INFINITY; 4]);
    assert_eq!(&got[9..], &[0.0, 0.0]);
    // Subnormal results: within a few units of the last place of the smallest subnormal.
    let xs = grid(-103.0, -87.5, 10_001);
    let worst = xs.iter().zip(jit_apply("exp", &xs)).map(|(&x, y)| (y as f64 - (x as f64).exp()).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-44, "exp in the subnormal range: max absolute error {worst:e}");
    let got = jit_apply("relu", &[f32::NAN, -1.0, 2.0, -0.0, 3.0]);
    assert!(got[0].is_nan() && got[1] == 0.0 && got[2] == 2.0);
    let got = jit_apply("tanh", &[f32::INFINITY, f32::NEG_INFINITY, 0.0, 30.0, -30.0]);
    assert_eq!(got, vec![1.0, -1.0, 0.0, 1.0, -1.0]);
}
