//! `add`, `sub`, `mul` and `div` as calls (SPEC §1.5: "the operators `+ - * /` as calls")
//! take what the operators take: tensors, broadcast rows and number literals on either side.
//! Each form is checked against values computed here, independently of nnc, and then on every
//! executor against the interpreter.

use nnc::driver::{build_graph, Source};
use nnc::interp;
use nnc::testing::differential::{check, compare, random_inputs, Plan, Tolerance};
use nnc_runtime::Tensor;

/// The model `y = <expr>` over inputs `x: f32[2, 3, 4]` and `r: f32[4]`.
fn model(expr: &str) -> String {
    format!("model m {{\n input x: f32[2, 3, 4]\n input r: f32[4]\n output y = {expr}\n}}\n")
}

#[test]
fn arithmetic_calls_accept_numbers_on_either_side_and_broadcast() {
    type F = fn(f32, f32) -> f32;
    let ops: [(&str, &str, F); 4] = [("add", "+", |a, b| a + b), ("sub", "-", |a, b| a - b), ("mul", "*", |a, b| a * b), ("div", "/", |a, b| a / b)];
    for (name, symbol, f) in ops {
        // (call, the operator form, the value of element i given x and r)
        let forms: Vec<(String, String, Box<dyn Fn(&[f32], &[f32], usize) -> f32>)> = vec![
            (format!("{name}(x, 2.0)"), format!("x {symbol} 2.0"), Box::new(move |x, _, i| f(x[i], 2.0))),
            (format!("{name}(2.0, x)"), format!("2.0 {symbol} x"), Box::new(move |x, _, i| f(2.0, x[i]))),
            (format!("{name}(x, 3)"), format!("x {symbol} 3"), Box::new(move |x, _, i| f(x[i], 3.0))),
            (format!("{name}(-0.5, x)"), format!("-0.5 {symbol} x"), Box::new(move |x, _, i| f(-0.5, x[i]))),
            (format!("{name}(x, x)"), format!("x {symbol} x"), Box::new(move |x, _, i| f(x[i], x[i]))),
            (format!("{name}(x, r)"), format!("x {symbol} r"), Box::new(move |x, r, i| f(x[i], r[i % 4]))),
            (format!("{name}(r, x)"), format!("r {symbol} x"), Box::new(move |x, r, i| f(r[i % 4], x[i]))),
            // Two numbers fold at compile time, as `2 + 3` does.
            (format!("x + {name}(6.0, 1.5)"), format!("x + (6.0 {symbol} 1.5)"), Box::new(move |x, _, i| x[i] + f(6.0, 1.5))),
        ];
        for (call, operator, want) in forms {
            for expr in [&call, &operator] {
                let source = model(expr);
                let graph = build_graph(&Source::from_string("m.nn", source.clone()), None, &Default::default())
                    .unwrap_or_else(|d| panic!("`{expr}` is refused: {}", nnc::diagnostics::render(&d, "m.nn", &source, false)));
                let inputs = random_inputs(&graph, 5);
                let (x, r) = (inputs[0].to_f32_vec(), inputs[1].to_f32_vec());
                let expected = Tensor::f32(vec![2, 3, 4], (0..24).map(|i| want(&x, &r, i)).collect());
                let got = interp::run(&graph, &inputs).unwrap();
                compare(&got, &[expected], &Tolerance::relative(1e-6)).unwrap_or_else(|e| panic!("`{expr}` on the interpreter: {e}"));
                // Every executor (JIT at every level, accelerator) agrees with the interpreter.
                let checked = check(&source, 5, &Plan { int8: Vec::new(), ..Plan::full() }).unwrap_or_else(|f| panic!("`{expr}`: {f}"));
                assert!(!checked.out_of_range);
            }
        }
    }
}

#[test]
fn arithmetic_calls_refuse_what_the_operators_refuse() {
    for (expr, message) in [
        ("add(x)", "add takes 2 tensor arguments (a and b), but 1 was given"),
        ("add(x, r, x)", "add takes 2 tensor arguments (a and b), but 3 were given"),
        ("sub(x, \"s\")", "found a constant (a string)"),
        ("mul(x, [1, 2])", "found a constant (a list)"),
        ("div(x, true)", "found a constant (a boolean)"),
        ("matmul(x, 2.0)", "found a constant (a number)"),
        ("add(x, y=2.0)", "add takes 2 tensor arguments"),
    ] {
        let source = model(expr);
        let diags = build_graph(&Source::from_string("m.nn", source.clone()), None, &Default::default()).err().unwrap_or_else(|| panic!("`{expr}` is accepted"));
        let text = nnc::diagnostics::render(&diags, "m.nn", &source, false);
        assert!(text.contains(message), "`{expr}`: {text}");
    }
}
