//! Snapshots of every kind of diagnostic, rendered as a user sees them (colour off). Review
//! changes with `cargo insta review`, or re-bless with `INSTA_UPDATE=always cargo test`.

use nnc::diagnostics::render;
use nnc::driver::{build_graph, Source};

fn diagnose(source: &str) -> String {
    let src = Source::from_string("model.nn", source);
    match build_graph(&src, None, &Default::default()) {
        Ok(_) => panic!("expected diagnostics for:\n{source}"),
        Err(diags) => render(&diags, &src.name, &src.text, false),
    }
}

macro_rules! diagnostic_snapshots {
    ($($name:ident: $src:expr,)*) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), diagnose($src));
            }
        )*
    };
}

diagnostic_snapshots! {
    syntax_unexpected_token: "model m {\n  input x: f32[2]\n  y = relu(x) relu(x)\n  output y\n}\n",
    syntax_unexpected_eof: "model m {\n  input x: f32[2]\n  output y = relu(x)\n",
    syntax_several_errors_in_one_run: "model m {\n  input x: f32[2]\n  a = = relu(x)\n  b = relu(x) x\n  output = b\n  output b\n}\n",
    syntax_return_outside_block: "model m {\n  input x: f32[2]\n  return x\n}\n",
    lex_unterminated_string: "model m {\n  input x: f32[1, 1, 4, 4]\n  output y = conv2d(x, filters=1, kernel=3, padding=\"same)\n}\n",
    lex_unexpected_character: "model m {\n  input x: f32[2] $\n  output x\n}\n",
    lex_nesting_too_deep: &format!("model m {{\n  input x: f32[2]\n  output y = {}x{}\n}}\n", "(".repeat(80), ")".repeat(80)),
    undefined_name_with_suggestion: "model m {\n  input image: f32[2]\n  output y = relu(imgae)\n}\n",
    undefined_name_in_block: "block b(x) {\n  return x + bias\n}\nmodel m {\n  input x: f32[2]\n  bias = relu(x)\n  output y = b(x)\n}\n",
    rebound_name: "model m {\n  input x: f32[2]\n  y = relu(x)\n  y = tanh(x)\n  output y\n}\n",
    unknown_op_with_suggestion: "model m {\n  input x: f32[2]\n  output y = rellu(x)\n}\n",
    unknown_op: "model m {\n  input x: f32[2]\n  output y = frobnicate(x)\n}\n",
    unknown_keyword_typo: "model m {\n  input x: f32[1, 3, 8, 8]\n  output y = conv2d(x, filter=4, kernel=3)\n}\n",
    unknown_keyword: "model m {\n  input x: f32[1, 3, 8, 8]\n  output y = max_pool(x, kernel=2, dilation=2)\n}\n",
    wrong_arity: "model m {\n  input x: f32[2]\n  output y = relu(x, x)\n}\n",
    wrong_arity_too_few: "model m {\n  input x: f32[2]\n  output y = add(x)\n}\n",
    shape_mismatch_broadcast: "model m {\n  input a: f32[2, 3]\n  input b: f32[4, 3]\n  output y = a + b\n}\n",
    shape_mismatch_matmul: "model m {\n  input a: f32[2, 3]\n  input b: f32[4, 5]\n  output y = a @ b\n}\n",
    shape_mismatch_explicit_weight: "model m {\n  input x: f32[1, 3, 8, 8]\n  param w: f32[4, 2, 3, 3]\n  output y = conv2d(x, w)\n}\n",
    shape_mismatch_dense: "model m {\n  input x: f32[1, 10]\n  param w: f32[4, 12]\n  output y = dense(x, w, bias=false)\n}\n",
    groups_do_not_divide_channels: "model m {\n  input x: f32[1, 3, 8, 8]\n  output y = conv2d(x, filters=4, kernel=3, groups=2)\n}\n",
    reshape_wrong_element_count: "model m {\n  input x: f32[2, 3, 4]\n  output y = reshape(x, [5, 5])\n}\n",
    reshape_two_inferred: "model m {\n  input x: f32[2, 3, 4]\n  output y = reshape(x, [-1, -1])\n}\n",
    block_recursion: "block a(x) {\n  return b(x)\n}\nblock b(x) {\n  return a(x)\n}\nmodel m {\n  input x: f32[2]\n  output y = a(x)\n}\n",
    two_implicit_layers_in_one_statement: "model m {\n  input x: f32[1, 8]\n  output y = dense(dense(x, units=4), units=2)\n}\n",
    duplicate_parameter_name: "model m {\n  input x: f32[1, 8]\n  a = dense(x, units=4, name=\"fc\")\n  output y = dense(a, units=2, name=\"fc\")\n}\n",
    missing_block_argument: "block blk(x, filters) {\n  return conv2d(x, filters=filters, kernel=1)\n}\nmodel m {\n  input x: f32[1, 3, 4, 4]\n  output y = blk(x)\n}\n",
    unknown_block_keyword: "block blk(x, filters=2) {\n  return conv2d(x, filters=filters, kernel=1)\n}\nmodel m {\n  input x: f32[1, 3, 4, 4]\n  output y = blk(x, filter=3)\n}\n",
    block_result_count: "block two(x) {\n  return relu(x), tanh(x)\n}\nmodel m {\n  input x: f32[2]\n  y = two(x)\n  output y\n}\n",
    unbound_symbolic_dim: "model m {\n  input x: f32[N, 4]\n  output y = relu(x)\n}\n",
    unknown_dtype: "model m {\n  input x: float32[4]\n  output y = relu(x)\n}\n",
    no_input_no_output: "model m {\n  param w: f32[4]\n  y = relu(w)\n}\n",
    positional_after_keyword: "model m {\n  input x: f32[1, 3, 4, 4]\n  output y = conv2d(filters=2, x, kernel=1)\n}\n",
    tensor_as_keyword: "model m {\n  input x: f32[1, 3, 4, 4]\n  output y = conv2d(x, filters=x, kernel=1)\n}\n",
    output_twice: "model m {\n  input x: f32[2]\n  y = relu(x)\n  output y\n  output y\n}\n",
    input_in_block: "block b(x) {\n  input z: f32[2]\n  return x\n}\nmodel m {\n  input x: f32[2]\n  output y = b(x)\n}\n",
    several_models_without_choice: "model a {\n  input x: f32[2]\n  output x\n}\nmodel b {\n  input x: f32[2]\n  output x\n}\n",
    integer_operands: "model m {\n  input x: i8[2]\n  output y = relu(x)\n}\n",
    same_padding_with_stride: "model m {\n  input x: f32[1, 1, 8, 8]\n  output y = conv2d(x, filters=1, kernel=3, stride=2, padding=\"same\")\n}\n",
    kernel_does_not_fit: "model m {\n  input x: f32[1, 1, 4, 4]\n  output y = conv2d(x, filters=1, kernel=7)\n}\n",
    axis_out_of_range: "model m {\n  input x: f32[2, 3]\n  output y = softmax(x, axis=2)\n}\n",
}
