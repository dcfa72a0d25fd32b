"""The training benchmark's Python reference: the digits MLP (64 -> 64 ReLU
-> 10, softmax cross-entropy, SGD with momentum 0.9, learning rate 0.02) in
plain numpy float32, batches of 32 over 80% of examples/datasets/digits.csv,
with one BLAS thread. Prints steps and epochs per second, and the accuracy
on the other 20% so that a broken loop shows.

    $(scripts/python-env.sh) scripts/bench-train-numpy.py [EPOCHS]

The issue asks for a PyTorch loop "for context"; PyTorch is not used here:
on PyPI, torch for Linux x86-64 depends on the CUDA wheels (several GB), and
the CPU-only builds live on PyTorch's own index, which this project's
machines cannot reach. numpy does the same arithmetic per step (two
matrix products forward, three back, an update), eagerly, as PyTorch's
eager mode does.
"""

import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
HIDDEN, BATCH, LEARNING_RATE, MOMENTUM = 64, 32, np.float32(0.02), np.float32(0.9)


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    path = ROOT / "examples" / "datasets" / "digits.csv"
    header = path.read_text().split("\n", 1)[0].split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    label = header.index("target")
    y = data[:, label].astype(np.int64)
    x = np.delete(data, label, axis=1) / np.float32(16.0)
    rng = np.random.default_rng(7)
    order = rng.permutation(len(y))
    train, test = order[: len(y) * 8 // 10], order[len(y) * 8 // 10:]
    params = {
        "w1": (rng.standard_normal((64, HIDDEN)) * np.sqrt(2 / 64)).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": (rng.standard_normal((HIDDEN, 10)) * np.sqrt(2 / HIDDEN)).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    steps = 0
    started = time.perf_counter()
    for _ in range(epochs):
        rng.shuffle(train)
        for start in range(0, len(train), BATCH):
            rows = train[start:start + BATCH]
            xb, yb = x[rows], y[rows]
            z1 = xb @ params["w1"] + params["b1"]
            h = np.maximum(z1, 0)
            logits = h @ params["w2"] + params["b2"]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            d_logits = p / np.float32(len(yb))
            d_z1 = (d_logits @ params["w2"].T) * (z1 > 0)
            grads = {"w1": xb.T @ d_z1, "b1": d_z1.sum(0), "w2": h.T @ d_logits, "b2": d_logits.sum(0)}
            for k in params:
                velocity[k] = MOMENTUM * velocity[k] + grads[k]
                params[k] -= LEARNING_RATE * velocity[k]
            steps += 1
    elapsed = time.perf_counter() - started
    logits = np.maximum(x[test] @ params["w1"] + params["b1"], 0) @ params["w2"] + params["b2"]
    accuracy = (logits.argmax(1) == y[test]).mean()
    assert accuracy > 0.9, f"the numpy MLP reached only {accuracy} test accuracy"
    print(f"numpy {np.__version__} (float32, 1 BLAS thread): digits MLP 64-{HIDDEN}-10, batch {BATCH}, "
          f"{len(train)} training rows, {epochs} epochs, {steps} steps in {elapsed:.3f} s")
    print(f"  {steps / elapsed:.0f} steps/s, {epochs / elapsed:.2f} epochs/s, {elapsed * 1e6 / steps:.1f} us/step; "
          f"test accuracy {accuracy:.4f} ({len(test)} rows)")


if __name__ == "__main__":
    main()
