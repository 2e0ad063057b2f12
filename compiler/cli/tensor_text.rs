//! Printing tensors for people: NumPy-style nesting, long axes elided in the middle.

use nnc_runtime::Tensor;

/// Past this many elements, every axis shows only its first and last `EDGE_ITEMS` entries.
const SUMMARY_THRESHOLD: usize = 1000;
const EDGE_ITEMS: usize = 3;
/// Values per line along the last axis.
const PER_LINE: usize = 8;

pub fn format_tensor(t: &Tensor) -> String {
    let values = t.to_f32_vec();
    let shape = t.shape();
    let summarize = values.len() > SUMMARY_THRESHOLD;
    let scientific = values.iter().any(|v| v.is_finite() && *v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e5));
    // Integer tensors (int8 codes, int32 accumulators) print as integers.
    let integer = !t.dtype().is_float();
    let fmt = |v: f32| if integer { format!("{v:>11}") } else if scientific { format!("{v:>13.6e}") } else { format!("{v:>10.6}") };
    let mut out = String::new();
    write_axis(&values, shape, 0, summarize, &fmt, &mut out);
    out
}

fn write_axis(values: &[f32], shape: &[usize], depth: usize, summarize: bool, fmt: &dyn Fn(f32) -> String, out: &mut String) {
    if shape.is_empty() {
        out.push_str(fmt(values[0]).trim_start());
        return;
    }
    let n = shape[0];
    let inner: usize = shape[1..].iter().product();
    let shown: Vec<Option<usize>> = if summarize && n > 2 * EDGE_ITEMS {
        (0..EDGE_ITEMS).map(Some).chain([None]).chain((n - EDGE_ITEMS..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    out.push('[');
    for (k, item) in shown.iter().enumerate() {
        if k > 0 {
            if shape.len() == 1 && k % PER_LINE == 0 {
                out.push_str(",\n");
                out.push_str(&" ".repeat(depth + 1));
            } else if shape.len() == 1 {
                out.push_str(", ");
            } else {
                out.push_str(",\n");
                out.push_str(&" ".repeat(depth + 1));
            }
        }
        match item {
            None => out.push_str("..."),
            Some(i) if shape.len() == 1 => out.push_str(&fmt(values[*i])),
            Some(i) => write_axis(&values[i * inner..(i + 1) * inner], &shape[1..], depth + 1, summarize, fmt, out),
        }
    }
    out.push(']');
}
