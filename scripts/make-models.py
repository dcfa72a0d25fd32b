"""Generates the models that tests and benchmarks need but git does not keep.

    python scripts/make-models.py OUT_DIR [--heavy]

- slow.onnx: a deliberately slow model for deadline and cancellation tests;
  slow-rows.onnx: the same with a batch dimension ([N, 1024]), for the
  deadlines of requests inside a batch.
- resnet50.onnx (only with --heavy, about 100 MB): ResNet-50 with random
  weights, for timing only; resnet50-batch.onnx: the same with a batch
  dimension ([N, 3, 224, 224]), for the batching benchmark.
- half.onnx: y = 2x in float16 (x cast to float32 and back), for the
  float16 tensor path of both backends.
- external-data.onnx: a tiny model whose weight points outside its own
  directory (../../../etc/passwd), which the host must refuse at upload.
- fill.onnx: y = ReduceSum(ConstantOfShape(n)), with n given by the caller:
  a guest picks how much the backend allocates (ONNX Runtime only: tract
  needs ConstantOfShape's shape when it loads); range.onnx: the same with
  y = ReduceSum(Cast(Range(0, n, 1))), which both backends run.
- fold-*.onnx: tiny models that make a 1 GiB tensor from constants alone,
  which backends fold when they load (a constant shape, a shape computed by
  arithmetic, an outer product of two Ranges, a shape read from the
  declared shape of an input [N, 16384]). The host must refuse them.
- textgen.onnx: a character-level text generator trained on the licence
  texts of the venv's numpy and scipy wheels (scripts/textgen_model.py).
- chain.onnx: 100,000 Relu nodes in a row (tract takes minutes to load it);
  chain-<N>.onnx for N in CHAIN_LENGTHS: shorter ones, for load-time tests.

Weights are seeded, so the files are the same on every machine. A model is
skipped when it exists and its stamp (the hash of this script) matches, so a
second run costs nothing. Each model is checked by onnx.checker, run under ONNX
Runtime with one intra-op thread, and its latency printed.
"""

import argparse
import hashlib
import os
import pathlib
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from textgen_model import textgen_model

# ONNX IR 8 / opset 13: what both ONNX Runtime 1.32 and tract-onnx 0.23 accept.
IR_VERSION = 8
OPSET = 13

# 200 MatMul+Tanh layers take about 1.1-1.4 s with ONNX Runtime on one thread
# (and about as long with tract) on the 2-core x86-64 (AVX-512) development
# machine: long enough that a deadline of a few hundred milliseconds surely
# cuts it short, short enough that a test which lets it finish stays quick.
SLOW_LAYERS = 200
SLOW_SHAPE = (256, 1024)


def finish(graph, doc):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="muon scripts/make-models.py",
        doc_string=doc,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def slow_model(rows=SLOW_SHAPE[0]):
    """x [rows,1024] -> (MatMul w -> Tanh) x SLOW_LAYERS -> y [rows,1024].

    One weight matrix shared by every layer keeps the file at 4 MB. Its scale,
    1/sqrt(1024), gives each layer a gain of about one, so activations stay
    near 0.1 all the way: a smaller scale lets them shrink layer after layer
    (towards denormals, whose speed differs from CPU to CPU), a larger one
    makes the network chaotic, amplifying rounding differences until two
    backends' answers no longer agree.
    """
    rng = np.random.default_rng(0)
    n = SLOW_SHAPE[1]
    w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(SLOW_LAYERS):
        out = "y" if i == SLOW_LAYERS - 1 else f"tanh{i}"
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"matmul{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Tanh", [f"matmul{i}"], [out], name=f"tanh{i}"))
        prev = out
    shape = [rows, SLOW_SHAPE[1]]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(w, "w")],
    )
    return finish(graph, f"{SLOW_LAYERS} x (MatMul 1024x1024 + Tanh): slow on purpose, for deadline tests")


class ResNetBuilder:
    """Collects the nodes and seeded weights of a ResNet-50 graph.

    Batch normalization is taken as already folded into each convolution's
    weights and bias, as inference exporters do, so the graph is only Conv,
    Relu, Add, MaxPool, GlobalAveragePool, Flatten, Gemm and Softmax.
    """

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.weights = [], []

    def conv(self, x, c_in, c_out, kernel, stride=1, relu=True, gain=1.0):
        name = f"conv{len(self.weights) // 2}"
        # He initialization keeps the signal's scale through the Relus.
        std = gain * np.sqrt(2.0 / (c_in * kernel * kernel))
        w = self.rng.standard_normal((c_out, c_in, kernel, kernel)) * std
        b = self.rng.standard_normal(c_out) * 0.01
        self.weights += [numpy_helper.from_array(w.astype(np.float32), f"{name}.w"),
                         numpy_helper.from_array(b.astype(np.float32), f"{name}.b")]
        pad = kernel // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, f"{name}.w", f"{name}.b"], [name], name=name,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4))
        return self.relu(name) if relu else name

    def relu(self, x):
        self.nodes.append(helper.make_node("Relu", [x], [f"{x}.relu"], name=f"{x}.relu"))
        return f"{x}.relu"

    def bottleneck(self, x, c_in, width, stride):
        # ResNet v1: the stride sits on the first 1x1 convolution (v1.5, as in
        # torchvision, moves it to the 3x3; the cost is almost the same).
        h = self.conv(x, c_in, width, 1, stride)
        h = self.conv(h, width, width, 3)
        # A small gain on the block's last convolution stands in for the small
        # folded batch-norm scales of a trained network: without it the
        # residual sums grow block after block.
        h = self.conv(h, width, width * 4, 1, relu=False, gain=0.2)
        if stride != 1 or c_in != width * 4:
            x = self.conv(x, c_in, width * 4, 1, stride, relu=False)
        out = f"add{len(self.nodes)}"
        self.nodes.append(helper.make_node("Add", [h, x], [out], name=out))
        return self.relu(out)


def resnet50_model(batch=1):
    """data [batch,3,224,224] -> ResNet-50 v1 -> output [batch,1000] (softmax).

    Random weights: the model recognizes nothing. It exists to time a real
    network's shape and size (25.5 M parameters, about 4 GFLOPs) on muon's
    backends, not to classify images.
    """
    b = ResNetBuilder(seed=50)
    x = b.conv("data", 3, 64, 7, stride=2)
    b.nodes.append(helper.make_node(
        "MaxPool", [x], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
    x, c = "pool", 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            x = b.bottleneck(x, c, width, stride if i == 0 else 1)
            c = width * 4
    fc_w = b.rng.standard_normal((c, 1000)) * np.sqrt(1.0 / c)
    b.weights += [numpy_helper.from_array(fc_w.astype(np.float32), "fc.w"),
                  numpy_helper.from_array(np.zeros(1000, np.float32), "fc.b")]
    b.nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["output"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        b.nodes,
        "resnet50",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 224, 224])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 1000])],
        b.weights,
    )
    return finish(graph, "ResNet-50 v1 with random seeded weights, BN folded: for timing only")


def half_model():
    """x fp16 [1, 4] -> Cast to float -> Mul 2 -> Cast to fp16 -> y."""
    two = numpy_helper.from_array(np.full((1, 4), 2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["x32", "two"], ["y32"]),
            helper.make_node("Cast", ["y32"], ["y"], to=TensorProto.FLOAT16),
        ],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4])],
        initializer=[two],
    )
    return finish(graph, "y = 2x in float16, for the float16 tensor path")


def external_data_model():
    """y = x + w, with w stored "externally" at a path outside the model's
    directory: what a hostile upload would use to make a backend read host
    files. Not checked or run here: no backend should ever follow it."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in [("location", "../../../etc/passwd"), ("offset", "0"), ("length", "16")]:
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external_data",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


# 16384 x 16384 float32: 1 GiB, enough to show in RSS, small enough that a
# host without the checks survives folding it once.
FOLD_SIDE = 16384
CHAIN_NODES = 100_000
CHAIN_LENGTHS = (5_000, 15_000)


def hostile(nodes, inputs, outputs, initializer=()):
    """A model not checked or run here: generating or running it is the
    attack. Shapes are left to the backends."""
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializer))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def fill_model():
    """n int64 [1] -> ConstantOfShape(n, 1.0) -> ReduceSum -> y = n (float)."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    return hostile(
        [helper.make_node("ConstantOfShape", ["n"], ["ones"], name="fill", value=one),
         helper.make_node("ReduceSum", ["ones"], ["y"], name="sum", keepdims=0)],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )


def range_model():
    """n int64 [] -> Range(0, n, 1) -> Cast float -> ReduceSum -> y = n(n-1)/2."""
    scalar = lambda name, v: helper.make_node(  # noqa: E731
        "Constant", [], [name], name=name, value=helper.make_tensor(name, TensorProto.INT64, [], [v]))
    return hostile(
        [scalar("zero", 0), scalar("one", 1),
         helper.make_node("Range", ["zero", "n", "one"], ["r"], name="range"),
         helper.make_node("Cast", ["r"], ["rf"], name="cast", to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["rf"], ["y"], name="sum", keepdims=0)],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )


def folded(shape_nodes, shape_name):
    """y = x + ReduceSum(ConstantOfShape(shape)): the shape from constants."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    return hostile(
        shape_nodes + [
            helper.make_node("ConstantOfShape", [shape_name], ["ones"], name="fill", value=one),
            helper.make_node("ReduceSum", ["ones"], ["total"], name="sum", keepdims=0),
            helper.make_node("Add", ["x", "total"], ["y"], name="add"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )


def int64s(name, values):
    return helper.make_node("Constant", [], [name], name=name,
                            value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values))


def fold_constant_model():
    return folded([int64s("shape", [FOLD_SIDE, FOLD_SIDE])], "shape")


def fold_arithmetic_model():
    """The shape is 128 * 128 twice, so no constant in the file is large."""
    return folded([
        int64s("a", [128]),
        helper.make_node("Mul", ["a", "a"], ["side"], name="square"),
        helper.make_node("Concat", ["side", "side"], ["shape"], name="shape", axis=0),
    ], "shape")


def fold_outer_model():
    """Range(0, 16384) as a column times itself as a row: 16384^2 floats."""
    scalar = lambda name, v: helper.make_node(  # noqa: E731
        "Constant", [], [name], name=name, value=helper.make_tensor(name, TensorProto.FLOAT, [], [v]))
    axes = int64s("axes", [1])
    return hostile(
        [scalar("start", 0.0), scalar("limit", float(FOLD_SIDE)), scalar("delta", 1.0), axes,
         helper.make_node("Range", ["start", "limit", "delta"], ["r"], name="range"),
         helper.make_node("Unsqueeze", ["r", "axes"], ["column"], name="column"),
         helper.make_node("Mul", ["column", "r"], ["outer"], name="outer"),
         helper.make_node("ReduceSum", ["outer"], ["total"], name="sum", keepdims=0),
         helper.make_node("Add", ["x", "total"], ["y"], name="add")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )


def fold_shape_model():
    """x [N, 16384] -> ConstantOfShape([x.shape[1], x.shape[1]]): the size
    depends on no value, only on a fixed dimension, so backends fold it."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    return hostile(
        [int64s("axis1", [1]),
         helper.make_node("Shape", ["x"], ["shape_x"], name="shape_x"),
         helper.make_node("Gather", ["shape_x", "axis1"], ["side"], name="side", axis=0),
         helper.make_node("Concat", ["side", "side"], ["shape"], name="shape", axis=0),
         helper.make_node("ConstantOfShape", ["shape"], ["ones"], name="fill", value=one),
         helper.make_node("ReduceSum", ["ones"], ["total"], name="sum", keepdims=0),
         helper.make_node("ReduceSum", ["x"], ["xs"], name="xsum", keepdims=0),
         helper.make_node("Add", ["xs", "total"], ["y"], name="add")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FOLD_SIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )


def chain_model(length):
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"r{i - 1}"], ["y" if i == length - 1 else f"r{i}"])
             for i in range(length)]
    return hostile(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )


def save(model, path):
    # onnx.save would try to follow external data; write the protobuf as is.
    path.write_bytes(model.SerializeToString())


def one_thread_latency(path, runs):
    """Median seconds of one run under ONNX Runtime with one intra-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (meta,) = session.get_inputs()
    # One row of a batch dimension.
    shape = [d if isinstance(d, int) else 1 for d in meta.shape]
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    (y,) = session.run(None, {meta.name: x})  # warm-up, and a sanity check
    assert np.isfinite(y).all(), f"{path.name} produced non-finite values"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {meta.name: x})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def generate(out_dir, name, build, runs):
    path = out_dir / name
    stamp = out_dir / f"{name}.stamp"
    # The script is the model's recipe: a changed script means a changed model.
    scripts = pathlib.Path(__file__).parent
    recipe = hashlib.sha256(
        pathlib.Path(__file__).read_bytes() + (scripts / "textgen_model.py").read_bytes()
    ).hexdigest()
    if path.exists() and stamp.exists() and stamp.read_text().strip() == recipe:
        return
    tmp = path.with_suffix(".onnx.tmp")
    save(build(), tmp)
    os.replace(tmp, path)
    stamp.write_text(recipe + "\n")
    if runs == 0:
        print(f"{name}: {path.stat().st_size} bytes (not run)")
        return
    latency = one_thread_latency(path, runs)
    size = path.stat().st_size / 1e6
    print(f"{name}: {size:.1f} MB, {latency * 1000:.0f} ms per run (onnxruntime, 1 thread)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--heavy", action="store_true", help="also make resnet50.onnx (~100 MB)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    generate(args.out_dir, "slow.onnx", slow_model, runs=3)
    generate(args.out_dir, "slow-rows.onnx", lambda: slow_model("N"), runs=0)
    generate(args.out_dir, "external-data.onnx", external_data_model, runs=0)
    generate(args.out_dir, "half.onnx", half_model, runs=0)
    generate(args.out_dir, "fill.onnx", fill_model, runs=0)
    generate(args.out_dir, "range.onnx", range_model, runs=0)
    generate(args.out_dir, "fold-constant.onnx", fold_constant_model, runs=0)
    generate(args.out_dir, "fold-arithmetic.onnx", fold_arithmetic_model, runs=0)
    generate(args.out_dir, "fold-outer.onnx", fold_outer_model, runs=0)
    generate(args.out_dir, "fold-shape.onnx", fold_shape_model, runs=0)
    generate(args.out_dir, "textgen.onnx", lambda: textgen_model(finish), runs=3)
    generate(args.out_dir, "chain.onnx", lambda: chain_model(CHAIN_NODES), runs=0)
    for length in CHAIN_LENGTHS:
        generate(args.out_dir, f"chain-{length}.onnx", lambda length=length: chain_model(length), runs=0)
    if args.heavy:
        generate(args.out_dir, "resnet50.onnx", resnet50_model, runs=5)
        generate(args.out_dir, "resnet50-batch.onnx", lambda: resnet50_model("N"), runs=0)


if __name__ == "__main__":
    sys.exit(main())
