"""A character-level text generator, trained here from text the model venv
already holds, for the streaming example (functions/textgen).

The corpus is the licence text that the pinned numpy and scipy wheels ship
(their dist-info LICENSE.txt files, about 90 KB of English), found through
importlib.metadata, so nothing is downloaded and the same pins give the same
text. The model reads the last CONTEXT characters, each one-hot over VOCAB
(the 95 printable ASCII characters and the newline; anything else becomes a
space), and gives the logits of the next one: a one-hidden-layer MLP (a
Bengio-style neural character model), trained with Adam on cross-entropy in
numpy with a fixed seed, then written as ONNX:

    logits[1, 96] = Tanh(context[1, 8*96] @ W1 + b1) @ W2 + b2

functions/textgen feeds it its own output one character at a time.
"""

import importlib.metadata

import numpy as np
from onnx import TensorProto, helper, numpy_helper

VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
CONTEXT = 8
HIDDEN = 256
STEPS = 3000
BATCH = 256
LEARNING_RATE = 3e-3


def corpus():
    """The licence texts of the numpy and scipy wheels, in the vocabulary."""
    texts = []
    for package in ("numpy", "scipy"):
        files = importlib.metadata.distribution(package).files or []
        for file in sorted(files, key=str):
            if file.name in ("LICENSE.txt", "LICENSE") and "dist-info" in str(file.parent):
                texts.append(file.locate().read_text(encoding="utf-8", errors="replace"))
    text = "\n".join(texts)
    assert len(text) > 50_000, f"the corpus is only {len(text)} characters"
    return "".join(c if c in VOCAB else " " for c in text)


def windows(ids):
    """Every CONTEXT-character window and the character after it."""
    index = np.arange(CONTEXT)[None, :] + np.arange(len(ids) - CONTEXT)[:, None]
    return ids[index], ids[CONTEXT:]


def one_hot(contexts):
    x = np.zeros((len(contexts), CONTEXT * len(VOCAB)), np.float32)
    rows = np.repeat(np.arange(len(contexts)), CONTEXT)
    cols = (np.arange(CONTEXT) * len(VOCAB))[None, :] + contexts
    x[rows, cols.ravel()] = 1.0
    return x


def train(text, rng):
    ids = np.array([VOCAB.index(c) for c in text], np.int64)
    contexts, targets = windows(ids)
    v = len(VOCAB)
    params = [
        rng.normal(0, (CONTEXT * v) ** -0.5 * 3, (CONTEXT * v, HIDDEN)).astype(np.float32),
        np.zeros(HIDDEN, np.float32),
        rng.normal(0, HIDDEN**-0.5, (HIDDEN, v)).astype(np.float32),
        np.zeros(v, np.float32),
    ]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    for step in range(1, STEPS + 1):
        batch = rng.integers(0, len(targets), BATCH)
        x, y = one_hot(contexts[batch]), targets[batch]
        w1, b1, w2, b2 = params
        h = np.tanh(x @ w1 + b1)
        logits = h @ w2 + b2
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(BATCH), y] + 1e-9).mean()
        d_logits = p
        d_logits[np.arange(BATCH), y] -= 1
        d_logits /= BATCH
        d_h = (d_logits @ w2.T) * (1 - h * h)
        grads = [x.T @ d_h, d_h.sum(0), h.T @ d_logits, d_logits.sum(0)]
        for param, grad, (m, s) in zip(params, grads, moments):
            m[...] = 0.9 * m + 0.1 * grad
            s[...] = 0.999 * s + 0.001 * grad * grad
            m_hat, s_hat = m / (1 - 0.9**step), s / (1 - 0.999**step)
            param -= LEARNING_RATE * m_hat / (np.sqrt(s_hat) + 1e-8)
        if step % 1000 == 0:
            print(f"textgen.onnx: step {step}, loss {loss:.3f}")
    return params


def textgen_model(finish):
    """The trained model as an ONNX graph, finished by make-models.py's `finish`."""
    params = train(corpus(), np.random.default_rng(20260515))
    names = ["w1", "b1", "w2", "b2"]
    v = len(VOCAB)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["context", "w1"], ["xw"]),
            helper.make_node("Add", ["xw", "b1"], ["pre"]),
            helper.make_node("Tanh", ["pre"], ["hidden"]),
            helper.make_node("MatMul", ["hidden", "w2"], ["hw"]),
            helper.make_node("Add", ["hw", "b2"], ["logits"]),
        ],
        "textgen",
        [helper.make_tensor_value_info("context", TensorProto.FLOAT, [1, CONTEXT * v])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, v])],
        [numpy_helper.from_array(p, name) for p, name in zip(params, names)],
    )
    return finish(graph, "character-level text generator (see scripts/textgen_model.py)")
