#!/usr/bin/env python3
"""Train a small MLP on scikit-learn's bundled 8x8 digits and export it for nnc.

Run from anywhere:  python3 examples/digits/train_digits.py
Needs: numpy, scikit-learn, safetensors (no network access: load_digits() is bundled).

Writes next to this script:
    digits.safetensors   h.weight [64, 64], h.bias [64], logits.weight [10, 64], logits.bias [10] (f32)
    test_x.npy           f32 [N, 64], the held-out split, pixels scaled by 1/16
    test_y.npy           int64 [N], its labels
    accuracy.json        {"test_accuracy", "correct", "n"} from a plain NumPy float32
                         forward pass with the exported f32 weights (argmax of logits),
                         so a test can check that nnc reproduces exactly this count.

The model is digits.nn:
    h = dense(x, units=64); output logits = dense(relu(h), units=10)
which is exactly sklearn's MLPClassifier(hidden_layer_sizes=(64,), activation="relu")
up to its final softmax (argmax is unchanged).
"""

import json
import warnings
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = Path(__file__).resolve().parent


def forward_f32(x, w):
    """The digits.nn model in float32 NumPy: logits = relu(x W1^T + b1) W2^T + b2."""
    h = x @ w["h.weight"].T + w["h.bias"]
    return np.maximum(h, np.float32(0)) @ w["logits.weight"].T + w["logits.bias"]


def main():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y)

    clf = MLPClassifier(hidden_layer_sizes=(64,), activation="relu", solver="adam",
                        alpha=1e-4, max_iter=500, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    assert list(clf.classes_) == list(range(10))

    w = {
        "h.weight": np.ascontiguousarray(clf.coefs_[0].T, dtype=np.float32),       # [64, 64]
        "h.bias": clf.intercepts_[0].astype(np.float32),                          # [64]
        "logits.weight": np.ascontiguousarray(clf.coefs_[1].T, dtype=np.float32),  # [10, 64]
        "logits.bias": clf.intercepts_[1].astype(np.float32),                     # [10]
    }

    logits = forward_f32(x_test, w)
    pred = logits.argmax(axis=1)
    correct = int((pred == y_test).sum())
    n = int(len(y_test))
    acc = correct / n

    # Sanity: the f32 export predicts what sklearn (float64) predicts, and no test
    # sample is so close to a tie that an f32 summation-order difference could flip it.
    sk_pred = clf.predict(x_test)
    top2 = np.sort(logits, axis=1)[:, -2:]
    min_margin = float((top2[:, 1] - top2[:, 0]).min())
    print(f"sklearn test accuracy {clf.score(x_test, y_test):.4f}, iterations {clf.n_iter_}")
    print(f"f32 NumPy forward: {correct}/{n} = {acc:.4f}; "
          f"agrees with sklearn on {int((pred == sk_pred).sum())}/{n}; min top-2 logit margin {min_margin:.4g}")
    assert min_margin > 1e-3, "a test sample is too close to a tie for an exact-count check"

    save_file(w, str(HERE / "digits.safetensors"))
    np.save(HERE / "test_x.npy", np.ascontiguousarray(x_test, dtype=np.float32))
    np.save(HERE / "test_y.npy", np.ascontiguousarray(y_test, dtype=np.int64))
    (HERE / "accuracy.json").write_text(json.dumps(
        {"test_accuracy": acc, "correct": correct, "n": n}, indent=2) + "\n")


if __name__ == "__main__":
    main()
