"""Datasets from a DataFrame and a file, a small train-linear job followed, waited on and reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import muon
from conftest import Server


def linear_frame(rows: int, seed: int = 3) -> pd.DataFrame:
    """`y = 2 x1 - 3 x2 + 0.5 x3 + 1`, without noise (the same law as the Rust job tests)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(rows, 3))
    y = x @ np.array([2.0, -3.0, 0.5]) + 1.0
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y}).round(6)


@pytest.fixture(scope="module")
def linear(server: Server) -> muon.Client:
    client = server.client()
    client.functions.deploy("train-linear", server.component("train-linear"), rollout="direct")
    report = client.datasets.push("linear", linear_frame(400), label="y", split="0.8,0.1,0.1", seed=3)
    assert report.name == "linear"
    return client


def test_dataset_from_dataframe(linear: muon.Client) -> None:
    report = linear.datasets.get("linear")
    assert report.rows.kept == 400
    assert "linear" in [d.name for d in linear.datasets.list()]


def test_dataset_from_file_with_progress(linear: muon.Client, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "more.csv"
    linear_frame(50, seed=5).to_csv(path, index=False)
    report = linear.datasets.push("more", path, label="y", split=(0.8, 0.1, 0.1))
    assert report.rows.kept == 50
    assert "more.csv" in capsys.readouterr().err  # the tqdm bar


def test_dataset_errors(linear: muon.Client) -> None:
    with pytest.raises(muon.BadRequest) as caught:
        linear.datasets.push("broken", linear_frame(10), label="no_such_column")
    assert caught.value.status in (400, 422)


def test_job_runs_follows_waits_and_reports(linear: muon.Client) -> None:
    job = linear.jobs.run({
        "function": "train-linear", "dataset": "linear", "epochs": 3, "batch_size": 16, "seed": 7,
        "config": {"features": 3}, "hyper": {"learning_rate": 0.1},
    })
    events = list(job.follow(progress=True))
    epochs = [e for e in events if isinstance(e, muon.models.JobEvent1)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert all("loss" in e.metrics for e in epochs)
    assert isinstance(events[-1], muon.models.JobEvent3) and events[-1].state.value == "succeeded"

    # Following a finished job replays its stream from the start.
    assert list(job.follow()) == events

    finished = job.wait(timeout=60)
    assert finished.state.value == "succeeded"
    curves = job.report()
    assert isinstance(curves, pd.DataFrame)
    assert list(curves["epoch"]) == [1, 2, 3]
    assert curves["loss"].iloc[-1] < curves["loss"].iloc[0]
    assert job.model is None  # the spec exports nothing
    assert job.id in [j.id for j in linear.jobs.list()]


def test_job_spec_error_names_the_field(linear: muon.Client) -> None:
    with pytest.raises(muon.BadRequest) as caught:
        linear.jobs.run({"function": "train-linear", "dataset": "nope", "epochs": 1})
    assert caught.value.code == "bad_request"
    assert "dataset" in caught.value.message
