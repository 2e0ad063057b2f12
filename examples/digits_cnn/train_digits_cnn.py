#!/usr/bin/env python3
"""Train a small CNN on scikit-learn's bundled 8x8 digits in plain NumPy and export it for nnc.

Run from anywhere:  python3 examples/digits_cnn/train_digits_cnn.py
Needs: numpy, scikit-learn, safetensors (no network access: load_digits() is bundled).

The model is digits_cnn.nn: conv(1->8, 3x3, pad 1) - batch_norm - relu - conv(8->16, 3x3,
pad 1) - batch_norm - relu - max_pool 2 - dense(256->10). Training uses batch statistics in
the batch norms (and keeps PyTorch-style running averages for inference), cross-entropy on
the logits, Adam, in float64; the export is float32.

Writes next to this script:
    digits_cnn.safetensors  c1.weight [8,1,3,3], c1.bias, b1.{weight,bias,running_mean,running_var},
                            c2.weight [16,8,3,3], c2.bias, b2.*, logits.weight [10,256], logits.bias
    test_x.npy              f32 [N, 1, 8, 8], the held-out split (the digits MLP's split), pixels / 16
    test_y.npy              int64 [N], its labels
    calib_x.npy             f32 [360, 1, 8, 8], the first 360 training images: calibration data
                            for `--quantize int8` that the test split never saw
    accuracy.json           {"test_accuracy", "correct", "n"} from a NumPy float32 inference
                            forward pass with the exported weights (argmax of the logits)
"""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
EPS = 1e-5
MOMENTUM = 0.1


def im2col(x, k=3, p=1):
    """[N, C, H, W] -> [N*H*W, C*k*k] patches of a stride-1, 'same' convolution."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = np.empty((n, c, k, k, h, w), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + h, j:j + w]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * h * w, c * k * k)


def col2im(dcols, shape, k=3, p=1):
    """The adjoint of im2col: patch gradients summed back into the image."""
    n, c, h, w = shape
    d = dcols.reshape(n, h, w, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=dcols.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + h, j:j + w] += d[:, :, i, j]
    return dxp[:, :, p:p + h, p:p + w]


def conv(x, w, b):
    n, _, h, wd = x.shape
    cols = im2col(x)
    y = cols @ w.reshape(w.shape[0], -1).T + b
    return y.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def conv_back(dy, cols, x_shape, w):
    f = w.shape[0]
    dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, f)
    dw = (dy2.T @ cols).reshape(w.shape)
    db = dy2.sum(axis=0)
    dx = col2im(dy2 @ w.reshape(f, -1), x_shape)
    return dx, dw, db


def bn_train(x, gamma, beta, stats):
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    count = x.size / x.shape[1]
    stats["running_mean"] = (1 - MOMENTUM) * stats["running_mean"] + MOMENTUM * mean
    stats["running_var"] = (1 - MOMENTUM) * stats["running_var"] + MOMENTUM * var * count / (count - 1)
    inv = 1.0 / np.sqrt(var + EPS)
    xhat = (x - mean[None, :, None, None]) * inv[None, :, None, None]
    return gamma[None, :, None, None] * xhat + beta[None, :, None, None], (xhat, inv)


def bn_back(dy, gamma, cache):
    xhat, inv = cache
    m = dy.size / dy.shape[1]
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    dxhat = dy * gamma[None, :, None, None]
    dx = (inv[None, :, None, None] / m) * (m * dxhat - dxhat.sum(axis=(0, 2, 3))[None, :, None, None]
                                           - xhat * (dxhat * xhat).sum(axis=(0, 2, 3))[None, :, None, None])
    return dx, dgamma, dbeta


def pool(x):
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2)
    y = blocks.max(axis=(3, 5))
    mask = blocks == y[:, :, :, None, :, None]
    # One winner per window (the first), as the gradient of max.
    first = np.cumsum(mask.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4), axis=-1) == 1
    first = first.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5) & mask
    return y, first


def pool_back(dy, first):
    return (first * dy[:, :, :, None, :, None]).reshape(first.shape[0], first.shape[1], first.shape[2] * 2, first.shape[4] * 2)


def init(rng):
    def he(shape, fan_in):
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    p = {
        "c1.weight": he((8, 1, 3, 3), 9), "c1.bias": np.zeros(8),
        "b1.weight": np.ones(8), "b1.bias": np.zeros(8),
        "c2.weight": he((16, 8, 3, 3), 72), "c2.bias": np.zeros(16),
        "b2.weight": np.ones(16), "b2.bias": np.zeros(16),
        "logits.weight": rng.standard_normal((10, 256)) / 16.0, "logits.bias": np.zeros(10),
    }
    stats = {b: {"running_mean": np.zeros(c), "running_var": np.ones(c)} for b, c in (("b1", 8), ("b2", 16))}
    return p, stats


def train_step(p, stats, x, y):
    """Forward with batch statistics, cross-entropy, and every parameter's gradient."""
    c1, cols1 = conv(x, p["c1.weight"], p["c1.bias"])
    b1, bn1 = bn_train(c1, p["b1.weight"], p["b1.bias"], stats["b1"])
    r1 = np.maximum(b1, 0)
    c2, cols2 = conv(r1, p["c2.weight"], p["c2.bias"])
    b2, bn2 = bn_train(c2, p["b2.weight"], p["b2.bias"], stats["b2"])
    r2 = np.maximum(b2, 0)
    pooled, first = pool(r2)
    flat = pooled.reshape(len(x), -1)
    logits = flat @ p["logits.weight"].T + p["logits.bias"]
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(len(y)), y]).mean()
    g = {}
    dlogits = prob
    dlogits[np.arange(len(y)), y] -= 1
    dlogits /= len(y)
    g["logits.weight"] = dlogits.T @ flat
    g["logits.bias"] = dlogits.sum(axis=0)
    dr2 = pool_back((dlogits @ p["logits.weight"]).reshape(pooled.shape), first) * (b2 > 0)
    dc2, g["b2.weight"], g["b2.bias"] = bn_back(dr2, p["b2.weight"], bn2)
    dr1, g["c2.weight"], g["c2.bias"] = conv_back(dc2, cols2, r1.shape, p["c2.weight"])
    dc1, g["b1.weight"], g["b1.bias"] = bn_back(dr1 * (b1 > 0), p["b1.weight"], bn1)
    _, g["c1.weight"], g["c1.bias"] = conv_back(dc1, cols1, x.shape, p["c1.weight"])
    return loss, g


def forward_f32(x, w):
    """digits_cnn.nn in float32 NumPy, inference form (running statistics)."""
    def bn(v, b):
        scale = w[f"{b}.weight"] / np.sqrt(w[f"{b}.running_var"] + np.float32(EPS))
        return (v - w[f"{b}.running_mean"][None, :, None, None]) * scale[None, :, None, None] + w[f"{b}.bias"][None, :, None, None]
    c1, _ = conv(x, w["c1.weight"], w["c1.bias"])
    r1 = np.maximum(bn(c1, "b1"), np.float32(0))
    c2, _ = conv(r1, w["c2.weight"], w["c2.bias"])
    r2 = np.maximum(bn(c2, "b2"), np.float32(0))
    pooled, _ = pool(r2)
    return pooled.reshape(len(x), -1) @ w["logits.weight"].T + w["logits.bias"]


def main():
    digits = load_digits()
    x = (digits.data / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

    rng = np.random.default_rng(0)
    p, stats = init(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(val) for k, val in p.items()}
    step, (b1, b2) = 0, (0.9, 0.999)
    for epoch in range(30):
        lr = 3e-3 if epoch < 20 else 1e-3
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            loss, g = train_step(p, stats, x_train[batch], y_train[batch])
            losses.append(loss)
            step += 1
            for k in p:
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                p[k] -= lr * (m[k] / (1 - b1 ** step)) / (np.sqrt(v[k] / (1 - b2 ** step)) + 1e-8)
        if epoch % 5 == 4:
            print(f"epoch {epoch + 1}: mean loss {np.mean(losses):.4f}")

    w = {k: np.ascontiguousarray(val, dtype=np.float32) for k, val in p.items()}
    for b in ("b1", "b2"):
        for s in ("running_mean", "running_var"):
            w[f"{b}.{s}"] = stats[b][s].astype(np.float32)
    xt = np.ascontiguousarray(x_test, dtype=np.float32)
    logits = forward_f32(xt, w)
    pred = logits.argmax(axis=1)
    correct = int((pred == y_test).sum())
    n = int(len(y_test))
    top2 = np.sort(logits, axis=1)[:, -2:]
    min_margin = float((top2[:, 1] - top2[:, 0]).min())
    print(f"f32 NumPy forward: {correct}/{n} = {correct / n:.4f}; min top-2 logit margin {min_margin:.4g}")
    assert min_margin > 1e-3, "a test sample is too close to a tie for an exact-count check"

    save_file(w, str(HERE / "digits_cnn.safetensors"))
    np.save(HERE / "test_x.npy", xt)
    np.save(HERE / "test_y.npy", np.ascontiguousarray(y_test, dtype=np.int64))
    np.save(HERE / "calib_x.npy", np.ascontiguousarray(x_train[:len(x_test)], dtype=np.float32))
    (HERE / "accuracy.json").write_text(json.dumps({"test_accuracy": correct / n, "correct": correct, "n": n}, indent=2) + "\n")


if __name__ == "__main__":
    main()
