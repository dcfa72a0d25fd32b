"""The muon side of scripts/bench-train.sh: the digits MLP trained by a job
on a running muon server, every step a sandboxed call of functions/train-digits
that runs the train-step graph through wasi-nn (ONNX Runtime, CPU).

Uploads examples/datasets/digits.csv (split 0.98/0.01/0.01, so that the
per-epoch validation is one call), the train-step and evaluation graphs, and
the component; runs one job of EPOCHS epochs with batches of BATCH rows
(default 32) and a hidden layer HIDDEN wide (default 64); and prints
the training steps and epochs per second over the job's wall time (the
report's), which includes the tiny validation and the host's checkpoints.

    python bench-train-muon.py URL ADMIN_KEY_FILE COMPONENT.wasm EPOCHS [BATCH [HIDDEN]]
"""

import json
import math
import sys
import time
import urllib.request


def call(url, key, method, path, body=None, content_type=None):
    request = urllib.request.Request(url + path, data=body, method=method)
    request.add_header("authorization", f"Bearer {key}")
    if content_type:
        request.add_header("content-type", content_type)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def main():
    url, key_file, component, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 32
    hidden = int(sys.argv[6]) if len(sys.argv) > 6 else 64
    key = open(key_file).read().strip()
    with open("examples/datasets/digits.csv", "rb") as f:
        query = "label=target&categorical=target&split=0.98,0.01,0.01&seed=0"
        dataset = call(url, key, "PUT", f"/v1/datasets/digits?{query}", f.read(), "text/csv")
    for name in ["digits-mlp-train", "digits-mlp-eval"]:
        with open(f"examples/training/{name}.onnx", "rb") as f:
            call(url, key, "PUT", f"/v1/models/{name}?backend=onnxruntime", f.read())
    with open(component, "rb") as f:
        call(url, key, "PUT", "/v1/functions/train-digits", f.read())
    spec = {
        "function": "train-digits", "dataset": "digits", "epochs": epochs, "batch_size": batch, "seed": 0,
        "config": {"hidden": hidden}, "hyper": {"learning_rate": 0.02, "momentum": 0.9},
        "objective": {"metric": "val_accuracy", "mode": "max"},
    }
    job = call(url, key, "POST", "/v1/jobs", json.dumps(spec).encode(), "application/json")["id"]
    while call(url, key, "GET", f"/v1/jobs/{job}")["state"] in ("queued", "running"):
        time.sleep(0.05)
    report = call(url, key, "GET", f"/v1/jobs/{job}/report")
    if report["state"] != "succeeded":
        sys.exit(f"the job ended {report['state']}: {report}")
    rows = dataset["splits"]["train"]
    steps = epochs * math.ceil(rows / batch)
    wall = report["wall_time_s"]
    accuracy = report["test"]["metrics"]["accuracy"]
    last_loss = report["trials"][0]["curves"]["loss"][-1]
    print(f"muon job (train-digits through wasi-nn, ONNX Runtime CPU): {rows} training rows, {epochs} epochs, "
          f"{steps} steps in {wall:.3f} s")
    print(f"  {steps / wall:.0f} steps/s, {epochs / wall:.2f} epochs/s, {wall * 1e6 / steps:.1f} us/step; "
          f"guest CPU {report['cpu_time_s']:.3f} s, wasi-nn compute {report['nn_cpu_time_s']:.3f} s; "
          f"last epoch's loss {last_loss:.6f}, test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
