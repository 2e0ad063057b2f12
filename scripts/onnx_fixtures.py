#!/usr/bin/env python3
"""Write the ONNX fixtures that tests/onnx.rs imports (tests/fixtures/onnx/), with reference
outputs from ONNX Runtime. Not run by CI: the fixtures are committed; rerun this after
changing it (needs `pip install onnx onnxruntime numpy`).

Each model is built with onnx.helper in the node patterns PyTorch's exporter writes (its
decomposed GELU and layer norm, shape subgraphs around Reshape, MatMul+Add for Linear, Gemm
with transB, Pad before Conv, Clip(0, 6)), since the machine that wrote them has no PyTorch.
For every fixture NAME: NAME.onnx, NAME.in.K.npy (input K, declaration order) and
NAME.out.K.npy (output K, from ONNX Runtime).
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx")
rng = np.random.default_rng(20261205)


def weight(name, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    s = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
    return numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), name)


def const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def torch_name(module_path):
    """A parameter prefix as PyTorch's state_dict writes it: /layer1/layer1.0/conv1 → layer1.0.conv1."""
    segs = module_path.strip("/").split("/")
    return ".".join(s for i, s in enumerate(segs) if not (i + 1 < len(segs) and segs[i + 1].startswith(s + ".")))


class Graph:
    """Nodes named the way torch.onnx.export names them (/module/Op), outputs `<name>_output_0`."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def init(self, t):
        self.inits.append(t)
        return t.name

    def op(self, op_type, inputs, name, n_out=1, **attrs):
        outs = [f"{name}_output_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def linear(self, x, name, fin, fout):
        """nn.Linear on a 3-D input: MatMul by the transposed weight, then Add of the bias."""
        w = self.init(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(weight("w", fout, fin)).T), f"onnx::MatMul_{name.replace('/', '_')}"))
        b = self.init(weight(f"{torch_name(name)}.bias", fout))
        y = self.op("MatMul", [x, w], f"{name}/MatMul")
        return self.op("Add", [b, y], f"{name}/Add")

    def gelu(self, x, name):
        sqrt2 = self.init(const(f"{name}/Constant", np.sqrt(2.0)))
        one = self.init(const(f"{name}/Constant_1", 1.0))
        half = self.init(const(f"{name}/Constant_2", 0.5))
        d = self.op("Div", [x, sqrt2], f"{name}/Div")
        e = self.op("Erf", [d], f"{name}/Erf")
        a = self.op("Add", [e, one], f"{name}/Add")
        m = self.op("Mul", [x, a], f"{name}/Mul")
        return self.op("Mul", [m, half], f"{name}/Mul_1")

    def layer_norm_decomposed(self, x, name, d, opset):
        axes = [-1]
        if opset >= 18:
            ax = self.init(const(f"{name}/axes", axes, np.int64))
            mean = self.op("ReduceMean", [x, ax], f"{name}/ReduceMean", keepdims=1)
        else:
            mean = self.op("ReduceMean", [x], f"{name}/ReduceMean", axes=axes, keepdims=1)
        c = self.op("Sub", [x, mean], f"{name}/Sub")
        two = self.init(const(f"{name}/Constant", 2.0))
        p = self.op("Pow", [c, two], f"{name}/Pow")
        if opset >= 18:
            var = self.op("ReduceMean", [p, ax], f"{name}/ReduceMean_1", keepdims=1)
        else:
            var = self.op("ReduceMean", [p], f"{name}/ReduceMean_1", axes=axes, keepdims=1)
        eps = self.init(const(f"{name}/Constant_1", 1e-5))
        ve = self.op("Add", [var, eps], f"{name}/Add")
        s = self.op("Sqrt", [ve], f"{name}/Sqrt")
        n = self.op("Div", [c, s], f"{name}/Div")
        g = self.init(numpy_helper.from_array((1 + 0.1 * rng.standard_normal(d)).astype(np.float32), f"{torch_name(name)}.weight"))
        b = self.init(numpy_helper.from_array((0.1 * rng.standard_normal(d)).astype(np.float32), f"{torch_name(name)}.bias"))
        m = self.op("Mul", [n, g], f"{name}/Mul")
        return self.op("Add", [m, b], f"{name}/Add_1")

    def batch_norm(self, x, name, c):
        prefix = torch_name(name)
        ins = [x, self.init(numpy_helper.from_array((1 + 0.1 * rng.standard_normal(c)).astype(np.float32), f"{prefix}.weight")),
               self.init(numpy_helper.from_array((0.1 * rng.standard_normal(c)).astype(np.float32), f"{prefix}.bias")),
               self.init(numpy_helper.from_array((0.1 * rng.standard_normal(c)).astype(np.float32), f"{prefix}.running_mean")),
               self.init(numpy_helper.from_array((0.5 + rng.random(c)).astype(np.float32), f"{prefix}.running_var"))]
        return self.op("BatchNormalization", ins, f"{name}/BatchNormalization", epsilon=1e-5)

    def conv(self, x, name, cin, cout, k, stride=1, pad=0, group=1, bias=True):
        prefix = torch_name(name)
        ins = [x, self.init(weight(f"{prefix}.weight", cout, cin // group, k, k))]
        if bias:
            ins.append(self.init(weight(f"{prefix}.bias", cout)))
        return self.op("Conv", ins, f"{name}/Conv", kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group, dilations=[1, 1])

    def model(self, name, inputs, outputs, opset):
        g = helper.make_graph(self.nodes, "main_graph", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_empty_tensor_value_info(n) for n in outputs], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="nnc scripts/onnx_fixtures.py")
        m.ir_version = 10 if opset >= 21 else 8
        # Output types as the exporter declares them: inferred.
        inferred = onnx.shape_inference.infer_shapes(m)
        known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for o in m.graph.output:
            if o.name in known and known[o.name].type.HasField("tensor_type"):
                o.type.CopyFrom(known[o.name].type)
        onnx.checker.check_model(m)
        return m


def resnet_block():
    """A torchvision BasicBlock with a downsampling shortcut, the stem's max pool before it,
    and the classifier head after (GlobalAveragePool, Flatten, Gemm with transB)."""
    g = Graph()
    x = g.conv("image", "/conv1", 3, 8, 3, stride=1, pad=1, bias=False)
    x = g.op("Relu", [g.batch_norm(x, "/bn1", 8)], "/relu/Relu")
    x = g.op("MaxPool", [x], "/maxpool/MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = g.conv(x, "/layer1/layer1.0/conv1", 8, 16, 3, stride=2, pad=1, bias=False)
    y = g.op("Relu", [g.batch_norm(y, "/layer1/layer1.0/bn1", 16)], "/layer1/layer1.0/relu/Relu")
    y = g.batch_norm(g.conv(y, "/layer1/layer1.0/conv2", 16, 16, 3, pad=1, bias=False), "/layer1/layer1.0/bn2", 16)
    s = g.batch_norm(g.conv(x, "/layer1/layer1.0/downsample/downsample.0", 8, 16, 1, stride=2, bias=False), "/layer1/layer1.0/downsample/downsample.1", 16)
    y = g.op("Relu", [g.op("Add", [y, s], "/layer1/layer1.0/Add")], "/layer1/layer1.0/relu_1/Relu")
    y = g.op("GlobalAveragePool", [y], "/avgpool/GlobalAveragePool")
    y = g.op("Flatten", [y], "/Flatten", axis=1)
    w, b = g.init(weight("fc.weight", 10, 16)), g.init(weight("fc.bias", 10))
    g.nodes.append(helper.make_node("Gemm", [y, w, b], ["logits"], name="/fc/Gemm", alpha=1.0, beta=1.0, transB=1))
    return g.model("resnet_block", [("image", [1, 3, 16, 16])], ["logits"], 17), {"image": rng.standard_normal((1, 3, 16, 16))}


def transformer_layer(opset=17):
    """nn.TransformerEncoderLayer(d=32, heads=2, ff=64, gelu, post-norm) at batch 1, sequence 8,
    with the exporter's head reshapes computed from Shape → Gather → Unsqueeze → Concat."""
    g = Graph()
    d, heads, seq = 32, 2, 8
    dh = d // heads
    x = "x"
    q = g.linear(x, "/self_attn/q", d, d)
    k = g.linear(x, "/self_attn/k", d, d)
    v = g.linear(x, "/self_attn/v", d, d)

    def split_heads(t, tag):
        shape = g.op("Shape", [t], f"/self_attn/Shape_{tag}")
        i0 = g.init(const(f"/self_attn/Constant_{tag}_0", 0, np.int64))
        i1 = g.init(const(f"/self_attn/Constant_{tag}_1", 1, np.int64))
        b = g.op("Gather", [shape, i0], f"/self_attn/Gather_{tag}_0", axis=0)
        s = g.op("Gather", [shape, i1], f"/self_attn/Gather_{tag}_1", axis=0)
        ax = g.init(const(f"/self_attn/axes_{tag}", [0], np.int64))
        bu = g.op("Unsqueeze", [b, ax], f"/self_attn/Unsqueeze_{tag}_0")
        su = g.op("Unsqueeze", [s, ax], f"/self_attn/Unsqueeze_{tag}_1")
        rest = g.init(const(f"/self_attn/Constant_{tag}_2", [heads, dh], np.int64))
        target = g.op("Concat", [bu, su, rest], f"/self_attn/Concat_{tag}", axis=0)
        r = g.op("Reshape", [t, target], f"/self_attn/Reshape_{tag}")
        return g.op("Transpose", [r], f"/self_attn/Transpose_{tag}", perm=[0, 2, 1, 3])

    qh, kh, vh = split_heads(q, "q"), split_heads(k, "k"), split_heads(v, "v")
    kt = g.op("Transpose", [kh], "/self_attn/Transpose_kt", perm=[0, 1, 3, 2])
    scores = g.op("MatMul", [qh, kt], "/self_attn/MatMul")
    scale = g.init(const("/self_attn/Constant_scale", np.sqrt(dh)))
    scores = g.op("Div", [scores, scale], "/self_attn/Div")
    p = g.op("Softmax", [scores], "/self_attn/Softmax", axis=-1)
    o = g.op("MatMul", [p, vh], "/self_attn/MatMul_1")
    o = g.op("Transpose", [o], "/self_attn/Transpose_o", perm=[0, 2, 1, 3])
    flat = g.init(const("/self_attn/Constant_flat", [1, seq, d], np.int64))
    o = g.op("Reshape", [o, flat], "/self_attn/Reshape_o")
    o = g.linear(o, "/self_attn/out_proj", d, d)
    h = g.op("Add", [x, o], "/Add")
    h = g.layer_norm_decomposed(h, "/norm1", d, opset)
    f = g.gelu(g.linear(h, "/linear1", d, 64), "/activation")
    f = g.linear(f, "/linear2", 64, d)
    y = g.op("Add", [h, f], "/Add_1")
    ln = [y, g.init(numpy_helper.from_array((1 + 0.1 * rng.standard_normal(d)).astype(np.float32), "norm2.weight")),
          g.init(numpy_helper.from_array((0.1 * rng.standard_normal(d)).astype(np.float32), "norm2.bias"))]
    g.nodes.append(helper.make_node("LayerNormalization", ln, ["y"], name="/norm2/LayerNormalization", axis=-1, epsilon=1e-5))
    name = "transformer_layer" if opset == 17 else f"transformer_layer_opset{opset}"
    return g.model(name, [("x", [1, seq, d])], ["y"], opset), {"x": rng.standard_normal((1, seq, d))}


def small_ops():
    """The remaining operators in one model (opset 13): Pad folded into Conv, depthwise Conv,
    Clip(0, 6), LeakyRelu, Sigmoid, Tanh, Exp, Sqrt, Abs, Neg, AveragePool with padding,
    Concat, Slice, Squeeze/Unsqueeze, Transpose, Softmax over channels, Gemm without transB
    but with alpha/beta, arithmetic with initializers, Identity and Dropout."""
    g = Graph()
    pads = g.init(const("pads", [0, 0, 1, 1, 0, 0, 1, 1], np.int64))
    x = g.op("Pad", ["image", pads], "/pad/Pad", mode="constant")
    x = g.conv(x, "/conv", 4, 8, 3)
    x = g.op("Clip", [x, g.init(const("zero", 0.0)), g.init(const("six", 6.0))], "/relu6/Clip")
    dw = g.conv(x, "/dw", 8, 8, 3, pad=1, group=8)
    a = g.op("LeakyRelu", [dw], "/LeakyRelu", alpha=0.2)
    b = g.op("Sigmoid", [x], "/Sigmoid")
    c = g.op("Concat", [a, b], "/Concat", axis=1)
    c = g.op("AveragePool", [c], "/AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)
    starts, ends, axes, steps = (g.init(const(n, v, np.int64)) for n, v in [("starts", [2, 0]), ("ends", [14, 9223372036854775807]), ("slice_axes", [1, 3]), ("steps", [1, 2])])
    s = g.op("Slice", [c, starts, ends, axes, steps], "/Slice")
    t = g.op("Tanh", [s], "/Tanh")
    e = g.op("Exp", [g.op("Neg", [g.op("Abs", [t], "/Abs")], "/Neg")], "/Exp")
    sq = g.op("Sqrt", [g.op("Add", [e, g.init(const("one", 1.0))], "/Add")], "/Sqrt")
    sc = g.op("Mul", [sq, g.init(numpy_helper.from_array(rng.standard_normal((12, 1, 1)).astype(np.float32), "channel_scale"))], "/Mul")
    sc = g.op("Sub", [sc, g.init(const("shift", 0.25))], "/Sub")
    sc = g.op("Div", [sc, g.init(const("two", 2.0))], "/Div")
    sm = g.op("Softmax", [sc], "/Softmax", axis=1)
    sm = g.op("Identity", [g.op("Dropout", [sm], "/Dropout")], "/Identity")
    flat = g.op("Flatten", [sm], "/Flatten", axis=1)
    feats = 12 * 7 * 4
    w = g.init(weight("head.weight_t", feats, 6))
    hb = g.init(weight("head.bias", 6))
    y = g.op("Gemm", [flat, w, hb], "/head/Gemm", alpha=0.5, beta=2.0)
    u = g.op("Unsqueeze", [y, g.init(const("unsq_axes", [1], np.int64))], "/Unsqueeze")
    u = g.op("Transpose", [u], "/Transpose", perm=[1, 0, 2])
    out = g.op("Squeeze", [u, g.init(const("sq_axes", [0], np.int64))], "/Squeeze")
    g.nodes[-1].output[0] = "scores"
    return g.model("small_ops", [("image", [1, 4, 14, 14])], ["scores"], 13), {"image": rng.standard_normal((1, 4, 14, 14))}


def opset20_ops():
    """Opset 20's Gelu and LayerNormalization without a bias, MatMul by a weight without a
    bias, and a MatMul of two computed values."""
    g = Graph()
    w = g.init(weight("proj.weight_t", 16, 16))
    h = g.op("MatMul", ["x", w], "/proj/MatMul")
    h = g.op("Gelu", [h], "/Gelu")
    ln = g.init(numpy_helper.from_array((1 + 0.1 * rng.standard_normal(16)).astype(np.float32), "ln.weight"))
    h = g.op("LayerNormalization", [h, ln], "/ln/LayerNormalization", axis=-1, epsilon=1e-6)
    ht = g.op("Transpose", [h], "/Transpose", perm=[0, 2, 1])
    out = g.op("MatMul", [h, ht], "/MatMul")
    g.nodes[-1].output[0] = "gram"
    return g.model("opset20_ops", [("x", [2, 5, 16])], ["gram"], 20), {"x": rng.standard_normal((2, 5, 16))}


def lstm():
    """torch.nn.LSTM(12, 10) as its exporter writes it: ONNX LSTM (gates i, o, f, c) with zero
    initial state, Y squeezed to [T, N, H], and the last hidden state as a second output."""
    g = Graph()
    hsz, isz = 10, 12
    w = g.init(weight("onnx::LSTM_W", 1, 4 * hsz, isz))
    r = g.init(weight("onnx::LSTM_R", 1, 4 * hsz, hsz))
    b = g.init(weight("onnx::LSTM_B", 1, 8 * hsz))
    g.nodes.append(helper.make_node("LSTM", ["x", w, r, b], ["/lstm/Y", "h_n"], name="/lstm/LSTM", hidden_size=hsz))
    g.nodes.append(helper.make_node("Squeeze", ["/lstm/Y", g.init(const("lstm_axes", [1], np.int64))], ["y"], name="/lstm/Squeeze"))
    return g.model("lstm", [("x", [6, 2, isz])], ["y", "h_n"], 14), {"x": rng.standard_normal((6, 2, isz))}


def mlp_opset11():
    """A batch-symbolic MLP at opset 11 (Clip with min/max inputs, Squeeze with attributes):
    imported with `--dim batch=3`."""
    g = Graph()
    w1, b1 = g.init(weight("fc1.weight", 20, 12)), g.init(weight("fc1.bias", 20))
    h = g.op("Gemm", ["x", w1, b1], "/fc1/Gemm", transB=1)
    h = g.op("Clip", [h, g.init(const("min", 0.0)), g.init(const("max", 6.0))], "/Clip")
    w2, b2 = g.init(weight("fc2.weight", 4, 20)), g.init(weight("fc2.bias", 4))
    h = g.op("Gemm", [h, w2, b2], "/fc2/Gemm", transB=1)
    g.nodes[-1].output[0] = "logits"
    m = g.model("mlp_opset11", [("x", ["batch", 12])], ["logits"], 11)
    return m, {"x": rng.standard_normal((3, 12))}


def qdq_cnn_float():
    """The float CNN that ONNX Runtime's static quantizer turns into `qdq_cnn`."""
    g = Graph()
    x = g.op("Relu", [g.conv("image", "/conv1", 1, 8, 3, pad=1)], "/relu1/Relu")
    x = g.op("MaxPool", [x], "/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Relu", [g.conv(x, "/conv2", 8, 16, 3, pad=1)], "/relu2/Relu")
    x = g.op("Flatten", [x], "/Flatten", axis=1)
    w, b = g.init(weight("fc.weight", 10, 16 * 4 * 4)), g.init(weight("fc.bias", 10))
    g.nodes.append(helper.make_node("Gemm", [x, w, b], ["logits"], name="/fc/Gemm", transB=1))
    return g.model("qdq_cnn", [("image", [1, 1, 8, 8])], ["logits"], 17)


def qdq_cnn(path):
    """`qdq_cnn_float` quantized by onnxruntime.quantization.quantize_static in the QDQ format:
    symmetric int8 activations (one scale per tensor), int8 weights per channel, calibrated by
    MinMax on 32 seeded images. Also writes NAME.step.npy: the scale of the output's
    quantization (one step of it bounds the test's difference from ONNX Runtime)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    float_path = path + ".float.onnx"
    onnx.save(qdq_cnn_float(), float_path)
    images = [rng.standard_normal((1, 1, 8, 8)).astype(np.float32) for _ in range(32)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": i} for i in images])

        def get_next(self):
            return next(self.it, None)

    quantize_static(float_path, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    os.remove(float_path)
    m = onnx.load(path)
    # The scale of the DequantizeLinear that writes the output: ONNX Runtime's logits are
    # multiples of it.
    scales = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "logits")
    step = float(scales[dq.input[1]])
    return m, {"image": rng.standard_normal((1, 1, 8, 8))}, step


def attention_opset23():
    """Opset 23's Attention (causal, an explicit scale) on heads split from linear
    projections, one of them through SiLU as PyTorch writes it (Sigmoid, Mul)."""
    g = Graph()
    d, heads, seq = 16, 2, 6

    def heads_of(t, tag):
        shape = g.init(const(f"/{tag}/shape", [1, seq, heads, d // heads], np.int64))
        return g.op("Transpose", [g.op("Reshape", [t, shape], f"/{tag}/Reshape")], f"/{tag}/Transpose", perm=[0, 2, 1, 3])

    q = g.linear("x", "/q", d, d)
    q = g.op("Mul", [q, g.op("Sigmoid", [q], "/q_act/Sigmoid")], "/q_act/Mul")
    k, v = g.linear("x", "/k", d, d), g.linear("x", "/v", d, d)
    a = g.op("Attention", [heads_of(q, "qh"), heads_of(k, "kh"), heads_of(v, "vh")], "/attn/Attention", is_causal=1, scale=0.3)
    a = g.op("Transpose", [a], "/attn/Transpose", perm=[0, 2, 1, 3])
    g.op("Reshape", [a, g.init(const("/attn/shape", [1, seq, d], np.int64))], "/attn/Reshape")
    g.nodes[-1].output[0] = "y"
    m = g.model("attention_opset23", [("x", [1, seq, d])], ["y"], 23)
    return m, {"x": rng.standard_normal((1, seq, d))}


def unsupported():
    """Operators nnc lacks, for the error that lists them all."""
    g = Graph()
    a = g.op("Resize", ["x", "", g.init(const("scales", [1.0, 1.0, 2.0, 2.0]))], "/up/Resize", mode="nearest")
    b = g.op("Relu", [a], "/Relu")
    c = g.op("Resize", [b, "", g.init(const("scales2", [1.0, 1.0, 0.5, 0.5]))], "/down/Resize", mode="nearest")
    d = g.op("ReduceMax", [c], "/ReduceMax", keepdims=1, axes=[1])
    e = g.op("HardSwish", [d], "/HardSwish")
    g.nodes[-1].output[0] = "y"
    return g.model("unsupported", [("x", [1, 2, 4, 4])], ["y"], 14), None


def resnet18(path):
    """torchvision's ResNet-18 at 224x224 (random weights), for timing `nnc import` on a real
    model size; written where asked, not committed (45 MB)."""
    g = Graph()
    x = g.op("Relu", [g.batch_norm(g.conv("image", "/conv1", 3, 64, 7, stride=2, pad=3, bias=False), "/bn1", 64)], "/relu/Relu")
    x = g.op("MaxPool", [x], "/maxpool/MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, cout in enumerate([64, 128, 256, 512], start=1):
        for block in range(2):
            p = f"/layer{stage}/layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            y = g.op("Relu", [g.batch_norm(g.conv(x, f"{p}/conv1", cin, cout, 3, stride=stride, pad=1, bias=False), f"{p}/bn1", cout)], f"{p}/relu/Relu")
            y = g.batch_norm(g.conv(y, f"{p}/conv2", cout, cout, 3, pad=1, bias=False), f"{p}/bn2", cout)
            s = x if stride == 1 and cin == cout else g.batch_norm(g.conv(x, f"{p}/downsample/downsample.0", cin, cout, 1, stride=stride, bias=False), f"{p}/downsample/downsample.1", cout)
            x = g.op("Relu", [g.op("Add", [y, s], f"{p}/Add")], f"{p}/relu_1/Relu")
            cin = cout
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x], "/avgpool/GlobalAveragePool")], "/Flatten", axis=1)
    g.nodes.append(helper.make_node("Gemm", [x, g.init(weight("fc.weight", 1000, 512)), g.init(weight("fc.bias", 1000))], ["logits"], name="/fc/Gemm", transB=1))
    onnx.save(g.model("resnet18", [("image", [1, 3, 224, 224])], ["logits"], 17), path)
    image = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    np.save(path + ".in.npy", image)
    np.save(path + ".out.npy", ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"image": image})[0])
    print(f"{path}: {os.path.getsize(path)} bytes; input and ONNX Runtime output beside it (.in.npy, .out.npy)")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--resnet18":
        return resnet18(sys.argv[2])
    os.makedirs(OUT, exist_ok=True)
    fixtures = [("resnet_block", resnet_block), ("transformer_layer", transformer_layer), ("transformer_layer_opset18", lambda: transformer_layer(18)),
                ("small_ops", small_ops), ("opset20_ops", opset20_ops), ("lstm", lstm), ("mlp_opset11", mlp_opset11), ("unsupported", unsupported)]
    # Appended after the others, so that adding a fixture leaves their seeded values alone.
    for name, build in fixtures + [("qdq_cnn", None), ("attention_opset23", attention_opset23)]:
        path = os.path.join(OUT, f"{name}.onnx")
        if build is None:
            model, inputs, step = qdq_cnn(path)
            np.save(os.path.join(OUT, f"{name}.step.npy"), np.float32(step))
        else:
            model, inputs = build()
        onnx.save(model, path)
        if inputs is None:
            print(f"{name}: {os.path.getsize(path)} bytes (no reference)")
            continue
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = {k: v.astype(np.float32) for k, v in inputs.items()}
        outs = sess.run(None, feed)
        for k, i in enumerate(sess.get_inputs()):
            np.save(os.path.join(OUT, f"{name}.in.{k}.npy"), feed[i.name])
        for k, o in enumerate(outs):
            np.save(os.path.join(OUT, f"{name}.out.{k}.npy"), o.astype(np.float32))
        print(f"{name}: {os.path.getsize(path)} bytes, outputs {[o.shape for o in outs]}")


if __name__ == "__main__":
    sys.exit(main())
