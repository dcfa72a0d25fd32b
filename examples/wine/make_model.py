"""Trains the wine model and writes wine.onnx, test-split.csv and accuracy.json.

Run with the venv python from scripts/python-env.sh:

    $(scripts/python-env.sh) examples/wine/make_model.py

The data is scikit-learn's bundled copy of the UCI wine recognition set (13
chemical measurements, 3 cultivars), so nothing is downloaded. The model is a
standardization (mean and standard deviation of the training split) followed by
a multinomial logistic regression, exported by hand with onnx.helper using only
standard ai.onnx operators, so both of muon's backends (tract and ONNX Runtime)
run it: x -> Sub mean -> Div std -> Gemm -> Softmax.
"""

import os

# One BLAS thread: the fit must come out the same on every run.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import csv
import json
import pathlib
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = pathlib.Path(__file__).resolve().parent
# ONNX IR 8 / opset 13: what both ONNX Runtime 1.32 and tract-onnx 0.23 accept.
IR_VERSION = 8
OPSET = 13
FEATURES = 13
CLASSES = 3


def train(x_train, y_train):
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    # A model that stopped before converging is a silent quality bug: fail.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        pipeline.fit(x_train, y_train)
    assert list(pipeline.classes_) == list(range(CLASSES)), pipeline.classes_
    return pipeline


def to_onnx(pipeline):
    """x [N,13] raw measurements -> (x - mean) / std -> Gemm -> Softmax."""
    scaler, logistic = pipeline[0], pipeline[1]
    f32 = lambda a, name: numpy_helper.from_array(np.asarray(a, np.float32), name)
    initializers = [
        f32(scaler.mean_, "mean"),
        f32(scaler.scale_, "std"),
        # Gemm wants B as [in, out]; scikit-learn stores coef_ as [out, in].
        f32(logistic.coef_.T, "weights"),
        f32(logistic.intercept_, "bias"),
    ]
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centered"], name="center"),
        helper.make_node("Div", ["centered", "std"], ["standardized"], name="scale"),
        helper.make_node("Gemm", ["standardized", "weights", "bias"], ["logits"], name="linear"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "wine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", CLASSES])],
        initializers,
    )
    graph.input[0].doc_string = "the 13 features of load_wine(), in its feature_names order, unscaled"
    graph.output[0].doc_string = "probabilities of the cultivars class_0, class_1, class_2"
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="muon examples/wine/make_model.py",
        doc_string="standardization + multinomial logistic regression on scikit-learn's load_wine()",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_csv(path, feature_names, x, y):
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow([*feature_names, "class"])
        for row, label in zip(x, y):
            # Shortest decimal that reads back as the same float64 (14.23, 1065).
            values = [np.format_float_positional(v, trim="-") for v in row]
            out.writerow([*values, int(label)])


def main():
    wine = load_wine()
    x_train, x_test, y_train, y_test = train_test_split(
        wine.data, wine.target, test_size=0.2, random_state=0, stratify=wine.target
    )
    pipeline = train(x_train, y_train)
    onnx_path = HERE / "wine.onnx"
    onnx.save(to_onnx(pipeline), onnx_path)

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"x": x_test.astype(np.float32)})
    sklearn_pred = pipeline.predict(x_test)
    onnx_pred = probabilities.argmax(axis=1)
    # The export must be the same function as the trained pipeline.
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(x_test), atol=1e-4)
    assert (sklearn_pred == onnx_pred).all(), "ONNX and scikit-learn disagree"

    write_csv(HERE / "test-split.csv", wine.feature_names, x_test, y_test)
    accuracy = {
        "sklearn": float((sklearn_pred == y_test).mean()),
        "onnxruntime": float((onnx_pred == y_test).mean()),
        "test_size": int(len(y_test)),
    }
    (HERE / "accuracy.json").write_text(json.dumps(accuracy, indent=2) + "\n")
    print(f"wine.onnx: {onnx_path.stat().st_size} bytes, accuracy {accuracy}")


if __name__ == "__main__":
    main()
