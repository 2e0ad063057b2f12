//! Parameter naming (SPEC §1.4): the names weights files are matched by.

use nnc::driver::{build_graph, Source};

fn params(src: &str) -> Vec<String> {
    let s = Source::from_string("m.nn", src);
    build_graph(&s, None, &Default::default()).unwrap_or_else(|d| panic!("{}", nnc::diagnostics::render(&d, "m.nn", src, false))).param_names()
}

fn names(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn implicit_layers_take_the_binding_name() {
    let got = params("model m {\n input x: f32[1, 3, 8, 8]\n c1 = conv2d(x, filters=4, kernel=3, bias=false)\n bn = batch_norm(c1)\n output y = dense(flatten(bn), units=2)\n}");
    assert_eq!(got, names(&["c1.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "y.weight", "y.bias"]));
}

#[test]
fn name_overrides_and_blocks_prefix_like_torchvision() {
    let src = "block basic(x, filters) {
        conv1 = conv2d(x, filters=filters, kernel=3, padding=1, bias=false)
        bn1 = batch_norm(conv1)
        proj = conv2d(x, filters=filters, kernel=1, bias=false, name=\"downsample.0\")
        return relu(bn1 + proj)
    }
    model m {
        input x: f32[1, 2, 4, 4]
        b1 = basic(x, 2)
        l = basic(b1, 2, name=\"layer1.0\")
        output y = dense(flatten(l), units=3, name=\"fc\")
    }";
    let got = params(src);
    let mut want = Vec::new();
    for p in ["b1", "layer1.0"] {
        for f in ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "downsample.0.weight"] {
            want.push(format!("{p}.{f}"));
        }
    }
    want.extend(["fc.weight".to_string(), "fc.bias".to_string()]);
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn nested_blocks_nest_prefixes_and_several_results_take_the_first_name() {
    let src = "block inner(x) {
        c = conv2d(x, filters=2, kernel=1)
        return c
    }
    block outer(x) {
        i1 = inner(x)
        return i1, relu(i1)
    }
    model m {
        input x: f32[1, 2, 4, 4]
        p, q = outer(x)
        output y = p + q
    }";
    assert_eq!(params(src), names(&["p.i1.c.weight", "p.i1.c.bias"]));
}

#[test]
fn a_layer_in_a_return_is_named_after_the_block_call() {
    let src = "block head(x) {
        return dense(x, units=4)
    }
    model m {
        input x: f32[1, 8]
        output y = head(x)
    }";
    assert_eq!(params(src), names(&["y.weight", "y.bias"]));
}

#[test]
fn a_value_holding_a_parameter_name_gives_it_up() {
    // The relu is bound as `weight` inside the block, i.e. node `y.weight`, before the dense
    // in the return creates parameter `y.weight`.
    let src = "block head(x) {
        weight = relu(x)
        return dense(weight, units=4)
    }
    model m {
        input x: f32[1, 8]
        output y = head(x)
    }";
    assert_eq!(params(src), names(&["y.weight", "y.bias"]));
}

#[test]
fn parameter_free_blocks_do_not_count_as_layers() {
    let src = "block act(x) {
        return relu(x) * 2
    }
    model m {
        input x: f32[1, 8]
        output y = dense(act(x), units=3)
    }";
    assert_eq!(params(src), names(&["y.weight", "y.bias"]));
}

#[test]
fn explicit_params_keep_their_names_and_are_scoped_in_blocks() {
    let src = "block scaled(x) {
        param s: f32[8]
        return x * s
    }
    model m {
        input x: f32[1, 8]
        param w: f32[3, 8]
        a = scaled(x)
        output y = dense(a, w, bias=false)
    }";
    assert_eq!(params(src), names(&["a.s", "w"]));
}
