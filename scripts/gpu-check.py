"""Checks muon's CUDA path on a GPU machine and times it against CPU.

    python3 scripts/gpu-check.py URL ADMIN_KEY GUEST_DIR MODELS_DIR

Against a running muon whose ONNX Runtime library has the CUDA execution
provider: pushes the digits model with target=gpu and checks its accuracy
through HTTP; pushes ResNet-50 (MODELS_DIR/resnet50.onnx, from
scripts/make-models.py --heavy) for cpu and for gpu; times per-request
latency and throughput with 1 and 8 clients for each; reads the usage
records to show GPU compute metered on its own. Prints a table.
"""

import base64
import concurrent.futures
import json
import pathlib
import statistics
import sys
import time

import numpy as np
import requests

url, key, guest, models = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
repo = pathlib.Path(__file__).resolve().parent.parent
auth = {"authorization": f"Bearer {key}"}
http = requests.Session()
http.headers.update(auth)


def put(path, body, content_type):
    response = http.put(f"{url}{path}", data=body, headers={"content-type": content_type})
    assert response.status_code == 201, f"{path}: {response.status_code} {response.text}"
    return response.json()


def push(name, file, query):
    out = put(f"/v1/models/{name}?{query}", file.read_bytes(), "application/octet-stream")
    print(f"pushed {name}: backend {out['backend']}, target {out['target']}")
    return out


put("/v1/functions/digits?models=digits", (guest / "digits.wasm").read_bytes(), "application/wasm")
put("/v1/functions/probe", (guest / "fixture_nn_probe.wasm").read_bytes(), "application/wasm")

# Digits on the GPU: the same accuracy as on CPU, through HTTP.
gpu = push("digits", repo / "examples/digits/digits.onnx", "backend=onnxruntime&target=gpu")
assert gpu["target"] == "gpu", gpu
split = json.loads((repo / "examples/digits/test-split.json").read_text())
out = http.post(f"{url}/fn/default/digits", json={"images": split["pixels"]}).json()
accuracy = np.mean(np.array(out["digits"]) == np.array(split["labels"]))
reference = json.loads((repo / "examples/digits/accuracy.json").read_text())["onnxruntime"]
diff = np.abs(np.array(out["probabilities"]) - np.array(split["onnxruntime_probabilities"])).max()
print(f"digits on GPU: accuracy {accuracy:.4f} (original {reference:.4f}), max |p - p_onnxruntime_cpu| {diff:.2e}")

# ResNet-50 on CPU and GPU.
x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
payload = {"name": "data", "type": "fp32", "dims": [1, 3, 224, 224], "data_base64": base64.b64encode(x.tobytes()).decode()}
for target in ["cpu", "gpu"]:
    push(f"resnet-{target}", models / "resnet50.onnx", f"backend=onnxruntime&target={target}")


def call(session, model):
    started = time.perf_counter()
    response = session.post(f"{url}/fn/default/probe", json={"model": model, "inputs": [payload]})
    body = response.json()
    assert response.status_code == 200 and body["ok"], body
    return time.perf_counter() - started


def throughput(model, clients, seconds):
    def worker(_):
        session = requests.Session()
        session.headers.update(auth)
        done, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            call(session, model)
            done += 1
        return done
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(worker, range(clients))) / seconds


print(f"{'resnet50 (onnxruntime)':<24} {'p50 ms':>8} {'mean ms':>8} {'1 client/s':>11} {'8 clients/s':>12}")
for target in ["cpu", "gpu"]:
    model = f"resnet-{target}"
    for _ in range(5):
        call(http, model)
    times = [call(http, model) for _ in range(30)]
    one, eight = throughput(model, 1, 8), throughput(model, 8, 8)
    print(f"{target:<24} {statistics.median(times) * 1e3:>8.1f} {statistics.mean(times) * 1e3:>8.1f} {one:>11.1f} {eight:>12.1f}")

records = http.get(f"{url}/v1/usage/records?limit=1000").json()["records"]
gpu_us = sum(r["nn_gpu_us"] for r in records)
cpu_us = sum(r["nn_cpu_us"] for r in records)
print(f"usage records: {len(records)} (first page), wasi-nn compute {cpu_us / 1e3:.0f} ms on CPU, {gpu_us / 1e3:.0f} ms on GPU")
assert gpu_us > 0, "GPU compute is metered"
