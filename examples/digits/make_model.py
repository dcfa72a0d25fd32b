"""Trains the digits model and writes digits.onnx, test-split.json and accuracy.json.

Run with the venv python from scripts/python-env.sh:

    $(scripts/python-env.sh) examples/digits/make_model.py

The data is scikit-learn's bundled copy of the UCI handwritten digits (8x8
images, pixel values 0..16), so nothing is downloaded. The network is a
one-hidden-layer MLP; it is exported by hand with onnx.helper, using only
standard ai.onnx operators, so that every backend muon has (tract and ONNX
Runtime) can run it without the ai.onnx.ml domain.
"""

import os

# One BLAS thread: multi-threaded BLAS may sum in a different order from run to
# run, and the model must come out the same every time.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import json
import pathlib
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = pathlib.Path(__file__).resolve().parent
# ONNX IR 8 / opset 13: what both ONNX Runtime 1.32 and tract-onnx 0.23 accept.
IR_VERSION = 8
OPSET = 13


def train(x_train, y_train):
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=2000, random_state=0)
    # A model that stopped before converging is a silent quality bug: fail.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(x_train / 16.0, y_train)
    assert list(clf.classes_) == list(range(10)), clf.classes_
    return clf


def to_onnx(clf):
    """x [N,64] raw pixels -> Mul 1/16 -> Gemm -> Relu -> Gemm -> Softmax."""
    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_
    f32 = lambda a, name: numpy_helper.from_array(np.asarray(a, np.float32), name)
    initializers = [
        # 1/16 is exact in float32, so the scaling matches training bit for bit.
        f32(1.0 / 16.0, "scale"),
        f32(w1, "w1"), f32(b1, "b1"),
        f32(w2, "w2"), f32(b2, "b2"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"], name="scale"),
        helper.make_node("Gemm", ["scaled", "w1", "b1"], ["hidden_pre"], name="dense1"),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"], name="relu1"),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"], name="dense2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializers,
    )
    graph.input[0].doc_string = "8x8 digit images, row-major, raw pixel values 0..16"
    graph.output[0].doc_string = "class probabilities for the digits 0..9"
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="muon examples/digits/make_model.py",
        doc_string="MLP (64 -> 64 relu -> 10 softmax) trained on scikit-learn's load_digits()",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def shortest_f32(values):
    # The shortest decimal that reads back as the same float32, so a test can
    # compare its own float32 answers with these exactly or within a tolerance.
    return [float(str(np.float32(v))) for v in values]


def write_rows_json(path, columns):
    """JSON object of lists, a list of lists one row per line: readable diffs."""
    parts = []
    for key, rows in columns.items():
        if rows and isinstance(rows[0], list):
            lines = ",\n".join("  " + json.dumps(row) for row in rows)
            parts.append(f"{json.dumps(key)}: [\n{lines}\n]")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(rows)}")
    path.write_text("{" + ",\n".join(parts) + "}\n")


def main():
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    clf = train(x_train, y_train)
    model = to_onnx(clf)
    onnx_path = HERE / "digits.onnx"
    onnx.save(model, onnx_path)

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"x": x_test.astype(np.float32)})
    sklearn_pred = clf.predict(x_test / 16.0)
    onnx_pred = probabilities.argmax(axis=1)
    # The export must be the same function as the trained model.
    np.testing.assert_allclose(probabilities, clf.predict_proba(x_test / 16.0), atol=1e-5)
    assert (sklearn_pred == onnx_pred).all(), "ONNX and scikit-learn disagree"

    write_rows_json(HERE / "test-split.json", {
        "pixels": [[int(p) for p in row] for row in x_test],
        "labels": [int(y) for y in y_test],
        "onnxruntime_probabilities": [shortest_f32(row) for row in probabilities],
    })
    accuracy = {
        "sklearn": float((sklearn_pred == y_test).mean()),
        "onnxruntime": float((onnx_pred == y_test).mean()),
        "test_size": int(len(y_test)),
    }
    (HERE / "accuracy.json").write_text(json.dumps(accuracy, indent=2) + "\n")
    print(f"digits.onnx: {onnx_path.stat().st_size} bytes, accuracy {accuracy}")


if __name__ == "__main__":
    main()
