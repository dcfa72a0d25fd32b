"""Writes the digits MLP's training graphs into examples/training/ and checks them.

    $(scripts/python-env.sh) scripts/make-training-graphs.py [--check-only]

The MLP is 64 pixels -> H hidden (ReLU) -> 10 classes (softmax), trained with
softmax cross-entropy by SGD with momentum. Three ONNX graphs, written by
hand with onnx.helper from standard ai.onnx operators only (IR 8, opset 13,
what both ONNX Runtime 1.32 and tract-onnx 0.23 accept):

- digits-mlp-train.onnx, one training step. Inputs: the parameters `w1`
  [64, H], `b1` [H], `w2` [H, 10], `b2` [10]; their momentum velocities
  `optimizer.w1`, `optimizer.b1`, `optimizer.w2`, `optimizer.b2` (same
  shapes; optimizer state, kept between steps like the parameters but not
  part of the model); a batch `x` fp32 [N, 64] of raw pixels 0..16 and `y`
  i64 [N] of class indices; `learning_rate` and `momentum` fp32 [1].
  Outputs: every parameter and velocity updated, named `<input>.next`
  (`w1.next`, `optimizer.w1.next`, ...), and the batch's `loss` and
  `accuracy` fp32 [1] before the update. The update is PyTorch's SGD:
  v <- momentum * v + grad; p <- p - learning_rate * v (momentum 0 is plain
  SGD). H is symbolic, so one graph trains any hidden width.
- digits-mlp-eval.onnx: the parameters, `x` and `y` -> `loss` and
  `accuracy` fp32 [1] and `predictions` i64 [N] (the argmax class per row).
- digits-mlp-template.onnx: the inference graph that functions/digits
  serves unchanged: `x` fp32 [N, 64] raw pixels -> `probabilities` fp32
  [N, 10]. Its only initializers are `w1`, `b1`, `w2`, `b2` for H = 64,
  all zeros: the host writes trained values into them by name (the pixel
  scale is a Constant node, not an initializer, so that every initializer is
  a parameter).

Every graph divides the pixels by 16 itself, so the dataset's raw values go
in as they are. The backward pass is written out by hand; this script checks
it against numpy: the step's gradients against central finite differences
of the loss in float64, a whole step (momentum included) against a numpy
step, and the evaluation and the template against a numpy forward pass.

Then it trains with the train-step graph alone on ONNX Runtime, on
examples/datasets/digits.csv split in the proportions of muon's default
split (80% train, 10% validation, 10% test, after a numpy shuffle seeded
per run: the same fractions, not muon's own row order), to show that the
graphs reach the issue's bar of 0.95 test accuracy. The numbers the job tests use:

    hidden 64, batch 32, learning_rate 0.02, momentum 0.9, 20 epochs,
    He-initialised parameters (std sqrt(2 / fan_in)), zero biases

Over 16 seeds (each its own split, initialisation and batch order) the test
accuracy ranged 0.939-0.989, mean 0.970, 15 of 16 at 0.95 or more: the test
split is only 180 rows, so one seed's figure moves by a point or two. Nearby
settings measured the same way (mean, worst of 8 or 16 seeds): 0.03/0.9/20
epochs 0.974, 0.950; 0.02/0.9/30 epochs 0.968, 0.934; plain SGD at 0.3 for
20 epochs 0.975, 0.956; 0.05/0.9/10 epochs is too hot (0.934 worst of 5).
The script trains seeds 0..4 and fails if their mean is under 0.95 or any
is under 0.93. --check-only skips writing the files and checks the
committed ones.
"""

import argparse
import os

# One BLAS thread: multi-threaded BLAS may sum in another order from run to
# run, and the checks compare to tight tolerances.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "examples" / "training"
DIGITS_CSV = ROOT / "examples" / "datasets" / "digits.csv"

# ONNX IR 8 / opset 13: what both ONNX Runtime 1.32 and tract-onnx 0.23 accept.
IR_VERSION = 8
OPSET = 13

FEATURES = 64
CLASSES = 10
TEMPLATE_HIDDEN = 64
PARAMETERS = ["w1", "b1", "w2", "b2"]
# Optimizer state carries this prefix: the host's template export
# (host/src/nn/template.rs) leaves such tensors out of the served model.
OPTIMIZER_PREFIX = "optimizer."

# The settings the docstring records, and the job tests use.
HIDDEN = 64
BATCH = 32
LEARNING_RATE = 0.02
MOMENTUM = 0.9
EPOCHS = 20
ACCURACY_BAR = 0.95


def parameter_shapes(hidden):
    return {"w1": [FEATURES, hidden], "b1": [hidden], "w2": [hidden, CLASSES], "b2": [CLASSES]}


def value(name, elem, shape, doc=""):
    info = helper.make_tensor_value_info(name, elem, shape)
    info.doc_string = doc
    return info


class Graph:
    """Collects nodes; each helper returns its output's name."""

    def __init__(self):
        self.nodes = []

    def op(self, op_type, inputs, name, **attributes):
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name

    def const(self, name, array):
        tensor = numpy_helper.from_array(np.asarray(array), name)
        return self.op("Constant", [], name, value=tensor)

    def forward(self):
        """x (raw pixels) -> scaled pixels, pre-activations z1, hidden h, logits."""
        # 1/16 is exact in float32, so scaling here equals scaling the data.
        scale = self.const("pixel_scale", np.float32(1.0 / 16.0))
        xs = self.op("Mul", ["x", scale], "x_scaled")
        z1 = self.op("Add", [self.op("MatMul", [xs, "w1"], "x_w1"), "b1"], "z1")
        h = self.op("Relu", [z1], "h")
        logits = self.op("Add", [self.op("MatMul", [h, "w2"], "h_w2"), "b2"], "logits")
        return xs, z1, h, logits

    def loss_and_accuracy(self, logits, loss="loss", accuracy="accuracy"):
        """Mean cross-entropy and accuracy over the batch (both fp32 [1]), the
        one-hot targets, and the predicted classes."""
        log_p = self.op("LogSoftmax", [logits], "log_p", axis=1)
        y_column = self.op("Unsqueeze", ["y", self.const("axis_1", np.array([1], np.int64))], "y_column")
        classes = self.const("classes", np.arange(CLASSES, dtype=np.int64).reshape(1, CLASSES))
        # One-hot by comparison with [0..9]: no OneHot operator, whose output
        # size the host's bounds checker would have to take from a value.
        one_hot = self.op("Cast", [self.op("Equal", [y_column, classes], "is_class")], "one_hot",
                          to=TensorProto.FLOAT)
        picked = self.op("ReduceSum", [self.op("Mul", [one_hot, log_p], "one_hot_log_p"),
                                       self.const("axes_1", np.array([1], np.int64))],
                         "log_likelihood", keepdims=0)
        self.op("Neg", [self.op("ReduceMean", [picked], "mean_log_likelihood", keepdims=1)], loss)
        predicted = self.op("ArgMax", [logits], "predicted", axis=1, keepdims=0)
        correct = self.op("Cast", [self.op("Equal", [predicted, "y"], "is_correct")], "correct",
                          to=TensorProto.FLOAT)
        self.op("ReduceMean", [correct], accuracy, keepdims=1)
        return log_p, one_hot, predicted


def parameter_inputs(shapes):
    return [value(name, TensorProto.FLOAT, shape) for name, shape in shapes.items()]


def batch_inputs():
    return [
        value("x", TensorProto.FLOAT, ["N", FEATURES], "8x8 digit images, row-major, raw pixel values 0..16"),
        value("y", TensorProto.INT64, ["N"], "class indices 0..9"),
    ]


def finish(g, name, inputs, outputs, doc, initializers=()):
    graph = helper.make_graph(g.nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="muon scripts/make-training-graphs.py",
        doc_string=doc,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def train_graph():
    g = Graph()
    xs, z1, h, logits = g.forward()
    log_p, one_hot, _ = g.loss_and_accuracy(logits)
    # d loss / d logits = (softmax - one_hot) / N for the mean cross-entropy.
    rows = g.op("Cast", [g.op("Shape", ["y"], "y_shape")], "rows", to=TensorProto.FLOAT)
    p = g.op("Exp", [log_p], "p")
    d_logits = g.op("Div", [g.op("Sub", [p, one_hot], "p_minus_one_hot"), rows], "d_logits")
    axes_0 = g.const("axes_0", np.array([0], np.int64))
    grads = {
        "w2": g.op("MatMul", [g.op("Transpose", [h], "h_t"), d_logits], "grad_w2"),
        "b2": g.op("ReduceSum", [d_logits, axes_0], "grad_b2", keepdims=0),
    }
    d_h = g.op("MatMul", [d_logits, g.op("Transpose", ["w2"], "w2_t")], "d_h")
    # ReLU passes the gradient where its input was positive.
    active = g.op("Cast", [g.op("Greater", [z1, g.const("zero", np.float32(0.0))], "is_active")], "active",
                  to=TensorProto.FLOAT)
    d_z1 = g.op("Mul", [d_h, active], "d_z1")
    grads["w1"] = g.op("MatMul", [g.op("Transpose", [xs], "x_scaled_t"), d_z1], "grad_w1")
    grads["b1"] = g.op("ReduceSum", [d_z1, axes_0], "grad_b1", keepdims=0)
    outputs = []
    for name in PARAMETERS:
        velocity = OPTIMIZER_PREFIX + name
        v_next = g.op("Add", [g.op("Mul", ["momentum", velocity], f"{velocity}.decayed"), grads[name]],
                      f"{velocity}.next")
        g.op("Sub", [name, g.op("Mul", ["learning_rate", v_next], f"{name}.delta")], f"{name}.next")
    shapes = parameter_shapes("H")
    for name in PARAMETERS:
        outputs.append(value(f"{name}.next", TensorProto.FLOAT, shapes[name], f"`{name}` after the step"))
    for name in PARAMETERS:
        velocity = OPTIMIZER_PREFIX + name
        outputs.append(value(f"{velocity}.next", TensorProto.FLOAT, shapes[name], f"`{velocity}` after the step"))
    outputs += [
        value("loss", TensorProto.FLOAT, [1], "mean cross-entropy of the batch before the step"),
        value("accuracy", TensorProto.FLOAT, [1], "accuracy on the batch before the step"),
    ]
    velocities = [value(OPTIMIZER_PREFIX + name, TensorProto.FLOAT, shape, f"momentum velocity of `{name}`")
                  for name, shape in shapes.items()]
    hyper = [
        value("learning_rate", TensorProto.FLOAT, [1]),
        value("momentum", TensorProto.FLOAT, [1], "0 for plain SGD"),
    ]
    inputs = parameter_inputs(shapes) + velocities + batch_inputs() + hyper
    return finish(g, "digits_mlp_train", inputs, outputs,
                  "One SGD-with-momentum step of a 64 -> H (ReLU) -> 10 MLP on softmax cross-entropy")


def eval_graph():
    g = Graph()
    _, _, _, logits = g.forward()
    g.loss_and_accuracy(logits)
    # ArgMax's output renamed as the graph output `predictions`.
    g.op("Identity", ["predicted"], "predictions")
    outputs = [
        value("loss", TensorProto.FLOAT, [1], "mean cross-entropy of the batch"),
        value("accuracy", TensorProto.FLOAT, [1], "share of rows whose predicted class is y"),
        value("predictions", TensorProto.INT64, ["N"], "the predicted class of each row"),
    ]
    inputs = parameter_inputs(parameter_shapes("H")) + batch_inputs()
    return finish(g, "digits_mlp_eval", inputs, outputs, "Loss, accuracy and predictions of the digits MLP")


def template_graph():
    g = Graph()
    _, _, _, logits = g.forward()
    g.op("Softmax", [logits], "probabilities", axis=1)
    zeros = [numpy_helper.from_array(np.zeros(shape, np.float32), name)
             for name, shape in parameter_shapes(TEMPLATE_HIDDEN).items()]
    inputs = [batch_inputs()[0]]
    outputs = [value("probabilities", TensorProto.FLOAT, ["N", CLASSES], "class probabilities for the digits 0..9")]
    return finish(g, "digits_mlp", inputs, outputs,
                  f"Digits MLP (64 -> {TEMPLATE_HIDDEN} relu -> 10 softmax), parameters w1, b1, w2, b2 "
                  "as zeros, to be filled with trained values", zeros)


# ---- numpy reference ------------------------------------------------------

def np_forward(params, x):
    xs = x / 16.0
    z1 = xs @ params["w1"] + params["b1"]
    h = np.maximum(z1, 0.0)
    logits = h @ params["w2"] + params["b2"]
    return xs, z1, h, logits


def np_log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_loss(params, x, y):
    log_p = np_log_softmax(np_forward(params, x)[3])
    return -log_p[np.arange(len(y)), y].mean()


def np_grads(params, x, y):
    xs, z1, h, logits = np_forward(params, x)
    d_logits = np.exp(np_log_softmax(logits))
    d_logits[np.arange(len(y)), y] -= 1.0
    d_logits /= len(y)
    d_z1 = (d_logits @ params["w2"].T) * (z1 > 0)
    return {"w1": xs.T @ d_z1, "b1": d_z1.sum(0), "w2": h.T @ d_logits, "b2": d_logits.sum(0)}


def he_init(rng, hidden):
    """He initialisation for the ReLU layer (and the same scale for the
    output layer), zero biases: what functions/train-digits' init makes."""
    return {
        "w1": (rng.standard_normal((FEATURES, hidden)) * np.sqrt(2.0 / FEATURES)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.standard_normal((hidden, CLASSES)) * np.sqrt(2.0 / hidden)).astype(np.float32),
        "b2": np.zeros(CLASSES, np.float32),
    }


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def step_feed(params, velocities, x, y, learning_rate, momentum):
    feed = dict(params)
    feed.update({OPTIMIZER_PREFIX + k: v for k, v in velocities.items()})
    feed.update(x=x.astype(np.float32), y=y.astype(np.int64),
                learning_rate=np.array([learning_rate], np.float32), momentum=np.array([momentum], np.float32))
    return feed


def run_step(train, params, velocities, x, y, learning_rate, momentum):
    names = [o.name for o in train.get_outputs()]
    out = dict(zip(names, train.run(None, step_feed(params, velocities, x, y, learning_rate, momentum))))
    new_params = {k: out[f"{k}.next"] for k in PARAMETERS}
    new_velocities = {k: out[f"{OPTIMIZER_PREFIX}{k}.next"] for k in PARAMETERS}
    return new_params, new_velocities, float(out["loss"][0]), float(out["accuracy"][0])


def check_gradients(train, x, y):
    """The graph's gradients (one step at learning rate 1, momentum 0, zero
    velocity: the new velocity is the gradient) against central finite
    differences of the float64 loss, on a sample of coordinates."""
    rng = np.random.default_rng(1)
    params = he_init(rng, 16)
    params["b1"] += rng.standard_normal(16).astype(np.float32) * 0.1
    params["b2"] += rng.standard_normal(CLASSES).astype(np.float32) * 0.1
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    _, grads, _, _ = run_step(train, params, zeros, x, y, 1.0, 0.0)
    exact = np_grads({k: v.astype(np.float64) for k, v in params.items()}, x.astype(np.float64), y)
    eps = 1e-6
    worst = 0.0
    for name in PARAMETERS:
        np.testing.assert_allclose(grads[name], exact[name], rtol=1e-4, atol=1e-6, err_msg=f"grad {name}")
        flat = params[name].astype(np.float64).ravel()
        for index in rng.choice(flat.size, size=min(flat.size, 12), replace=False):
            def loss_at(delta):
                moved = {k: v.astype(np.float64) for k, v in params.items()}
                moved[name] = flat.copy()
                moved[name][index] += delta
                moved[name] = moved[name].reshape(params[name].shape)
                return np_loss(moved, x.astype(np.float64), y)
            numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
            graph = float(grads[name].ravel()[index])
            assert abs(numeric - graph) <= 1e-4 + 1e-3 * abs(numeric), (name, index, numeric, graph)
            worst = max(worst, abs(numeric - graph))
    print(f"gradients match finite differences (worst absolute difference {worst:.2e})")


def check_step(train, x, y):
    """A whole step with momentum against numpy."""
    rng = np.random.default_rng(2)
    params = he_init(rng, 32)
    velocities = {k: (rng.standard_normal(v.shape) * 0.01).astype(np.float32) for k, v in params.items()}
    new_params, new_velocities, loss, accuracy = run_step(train, params, velocities, x, y, 0.05, 0.9)
    grads = np_grads({k: v.astype(np.float64) for k, v in params.items()}, x.astype(np.float64), y)
    for name in PARAMETERS:
        v = 0.9 * velocities[name] + grads[name]
        np.testing.assert_allclose(new_velocities[name], v, rtol=1e-4, atol=1e-6, err_msg=f"velocity {name}")
        np.testing.assert_allclose(new_params[name], params[name] - 0.05 * v, rtol=1e-4, atol=1e-6, err_msg=name)
    logits = np_forward(params, x)[3]
    np.testing.assert_allclose(loss, np_loss(params, x, y), rtol=1e-5)
    np.testing.assert_allclose(accuracy, (logits.argmax(1) == y).mean(), rtol=1e-6)
    print("a step with momentum matches numpy")


def check_eval_and_template(evaluate, template_path, params, x, y):
    loss, accuracy, predictions = evaluate.run(None, dict(params, x=x.astype(np.float32), y=y.astype(np.int64)))
    logits = np_forward(params, x.astype(np.float32))[3]
    np.testing.assert_allclose(loss[0], np_loss(params, x, y), rtol=1e-5)
    assert np.array_equal(predictions, logits.argmax(1)), "eval predictions differ from numpy"
    np.testing.assert_allclose(accuracy[0], (predictions == y).mean(), rtol=1e-6)
    # The template filled with the same parameters predicts the same classes.
    model = onnx.load(str(template_path))
    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(params[tensor.name], tensor.name))
    filled = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (probabilities,) = filled.run(None, {"x": x.astype(np.float32)})
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    assert np.array_equal(probabilities.argmax(1), predictions), "the filled template predicts other classes"
    print("evaluation and the filled template match numpy")
    return float(accuracy[0])


def load_digits_csv():
    data = np.loadtxt(DIGITS_CSV, delimiter=",", skiprows=1, dtype=np.float64)
    header = DIGITS_CSV.read_text().split("\n", 1)[0].split(",")
    label = header.index("target")
    y = data[:, label].astype(np.int64)
    x = np.delete(data, label, axis=1).astype(np.float32)
    assert x.shape[1] == FEATURES, x.shape
    return x, y


def split(x, y, seed):
    """80/10/10 after a seeded shuffle, as muon's default split."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_train, n_val = int(0.8 * len(y)), int(0.1 * len(y))
    parts = np.split(order, [n_train, n_train + n_val])
    return [(x[p], y[p]) for p in parts]


def train_digits(train, evaluate, x, y, seed, hidden=HIDDEN, batch=BATCH, learning_rate=LEARNING_RATE,
                 momentum=MOMENTUM, epochs=EPOCHS):
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = split(x, y, seed)
    rng = np.random.default_rng(seed)
    params = he_init(rng, hidden)
    velocities = {k: np.zeros_like(v) for k, v in params.items()}
    for epoch in range(epochs):
        order = rng.permutation(len(y_tr))
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            params, velocities, _, _ = run_step(train, params, velocities, x_tr[rows], y_tr[rows],
                                                learning_rate, momentum)
    val = evaluate.run(None, dict(params, x=x_val, y=y_val))[1][0]
    test = evaluate.run(None, dict(params, x=x_te, y=y_te))[1][0]
    return params, float(val), float(test), (x_te, y_te)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-only", action="store_true", help="check the committed graphs, write nothing")
    args = parser.parse_args()
    paths = {name: OUT / f"digits-mlp-{name}.onnx" for name in ("train", "eval", "template")}
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in (("train", train_graph), ("eval", eval_graph), ("template", template_graph)):
        made = make().SerializeToString()
        if args.check_only:
            # The graphs are a pure function of this script: what is
            # committed must be what it makes.
            assert paths[name].read_bytes() == made, f"{paths[name]} differs from what this script makes"
        else:
            paths[name].write_bytes(made)
            print(f"wrote {paths[name].relative_to(ROOT)} ({len(made)} bytes)")
    train, evaluate = session(paths["train"]), session(paths["eval"])

    x, y = load_digits_csv()
    check_gradients(train, x[:48], y[:48])
    check_step(train, x[:32], y[:32])
    accuracies = []
    for seed in range(5):
        params, val, test, (x_te, y_te) = train_digits(train, evaluate, x, y, seed)
        if seed == 0:
            assert abs(check_eval_and_template(evaluate, paths["template"], params, x_te, y_te) - test) < 1e-6
        print(f"seed {seed}: hidden {HIDDEN}, batch {BATCH}, learning_rate {LEARNING_RATE}, momentum {MOMENTUM}, "
              f"{EPOCHS} epochs: validation accuracy {val:.4f}, test accuracy {test:.4f}")
        accuracies.append(test)
    mean = sum(accuracies) / len(accuracies)
    print(f"mean test accuracy {mean:.4f}, worst {min(accuracies):.4f}")
    if mean < ACCURACY_BAR or min(accuracies) < ACCURACY_BAR - 0.02:
        sys.exit(f"test accuracy: mean {mean:.4f}, worst {min(accuracies):.4f}; want {ACCURACY_BAR} on average")


if __name__ == "__main__":
    main()
