"""Generates the small model fixtures the integration tests commit.

    target/py/bin/python scripts/make-fixture-models.py   (scripts/python-env.sh makes target/py)

- tests/fixtures/runtime-fails.onnx: x fp32 [1, 4] -> y fp32 [3]. The graph
  reshapes x to a shape computed from x itself (Cast(ReduceSum(x, axis 1) * 0 + 3), a
  one-element shape),
  so no backend can tell at load that it is wrong: the model loads, every
  input of the declared shape is valid, and every compute fails at run time
  (4 elements cannot become 3). For the model repair test: a backend that
  fails on healthy inputs.

The file is written deterministically (no weights, fixed names), so a second
run reproduces it byte for byte. It is checked with onnx.checker, loaded by
ONNX Runtime, and run once to see that the compute really fails.
"""

import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

# What both ONNX Runtime 1.32 and tract-onnx 0.23 accept (as scripts/make-models.py).
IR_VERSION = 8
OPSET = 13

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def runtime_fails():
    nodes = [
        helper.make_node("ReduceSum", ["x", "axis"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "three"], ["length"]),
        helper.make_node("Cast", ["length"], ["length_i64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "length_i64"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "runtime-fails",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        initializer=[
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("three", TensorProto.FLOAT, [], [3.0]),
            helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="muon scripts/make-fixture-models.py",
        doc_string="Loads, then fails every compute at run time: x [1,4] reshaped to [3].",
    )
    onnx.checker.check_model(model, full_check=False)
    return model


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = runtime_fails()
    path = OUT / "runtime-fails.onnx"
    path.write_bytes(model.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    except Exception as err:  # noqa: BLE001 - any runtime failure is what we want
        print(f"{path.name}: {path.stat().st_size} bytes; a compute fails as meant: {str(err)[:120]}", file=sys.stderr)
        return
    sys.exit(f"{path.name}: the compute succeeded; the fixture must fail at run time")


if __name__ == "__main__":
    main()
