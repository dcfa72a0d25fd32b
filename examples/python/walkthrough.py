"""The Python client from data to a served model: the walk-through the tests run.

    MUON_URL=http://127.0.0.1:8080 MUON_API_KEY=... python examples/python/walkthrough.py

Pushes the 8x8 digits as a DataFrame, trains the digits MLP through wasi-nn
with a job (following its epochs), exports the best parameters into the
template model, deploys `functions/digits` and asks it for the test split's
digits. Guests come from MUON_GUESTS (default target/wasm32-wasip2/guest).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

import muon

REPO = Path(__file__).resolve().parents[2]
GUESTS = Path(os.environ.get("MUON_GUESTS", REPO / "target" / "wasm32-wasip2" / "guest"))
EPOCHS = int(os.environ.get("WALKTHROUGH_EPOCHS", "8"))


def main() -> float:
    client = muon.Client(os.environ.get("MUON_URL", "http://127.0.0.1:8080"))

    # 1. The data: a DataFrame in, the dataset report out.
    digits = pd.read_csv(REPO / "examples" / "datasets" / "digits.csv")
    report = client.datasets.push("digits", digits, label="target", categorical="target", stratify=True, seed=1)
    print(f"dataset: {report.rows.kept} rows kept of {report.rows.read}")

    # 2. The training step's graphs and the template the trained values go into.
    for name in ["digits-mlp-train", "digits-mlp-eval", "digits-mlp-template"]:
        client.models.push(name, REPO / "examples" / "training" / f"{name}.onnx")
    client.functions.deploy("train-digits", GUESTS / "train_digits.wasm", rollout="direct")

    # 3. A job: follow its epochs, then read the curves and the exported model.
    job = client.jobs.run({
        "function": "train-digits", "dataset": "digits", "epochs": EPOCHS, "batch_size": 32, "seed": 0,
        "config": {"hidden": 64}, "hyper": {"learning_rate": 0.02, "momentum": 0.9},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "export": {"model": "digits", "template": "digits-mlp-template"},
    })
    for event in job.follow():
        if isinstance(event, muon.models.JobEvent1):
            print(f"epoch {event.epoch}: val_accuracy {event.metrics.get('val_accuracy', float('nan')):.3f}")
    assert job.wait().state.value == "succeeded"
    print(job.report().tail(3))
    exported = job.model
    assert exported is not None and exported.model == "digits"

    # 4. Serve the model and call it with the test split.
    client.functions.deploy("digits", GUESTS / "digits.wasm", rollout="direct")
    rows = client.request("GET", "/v1/datasets/digits/rows", params={"split": "test", "limit": 1000})["rows"]
    pixels = [c for c in digits.columns if c != "target"]
    images = [[float(row[c]) for c in pixels] for row in rows]
    answer = client.functions.call("digits", method="POST", json={"images": images}).json()
    correct = sum(int(p) == int(row["target"]) for p, row in zip(answer["digits"], rows))
    accuracy = correct / len(rows)
    print(f"served model: {correct}/{len(rows)} test digits right ({accuracy:.1%})")
    return accuracy


if __name__ == "__main__":
    main()
