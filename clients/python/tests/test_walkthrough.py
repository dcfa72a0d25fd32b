"""examples/python/walkthrough.py, run as a user would: data in, a job, the exported model served and called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import muon
from conftest import REPO, Server


def test_walkthrough_trains_and_serves_digits(server: Server, client: muon.Client) -> None:
    # Its own tenant, so that its `digits` model is not the one other tests push.
    created = client.request("POST", "/v1/tenants", json={"name": "walk"})
    env = {**os.environ, "MUON_URL": server.url, "MUON_API_KEY": created["key"]["key"], "MUON_TENANT": "walk",
           "MUON_GUESTS": str(server.guests), "WALKTHROUGH_EPOCHS": "8"}
    result = subprocess.run([sys.executable, str(REPO / "examples" / "python" / "walkthrough.py")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch 8:" in result.stdout
    served = [line for line in result.stdout.splitlines() if line.startswith("served model:")]
    right, total = served[0].split()[2].split("/")
    assert int(right) / int(total) >= 0.85, result.stdout


def test_quickstart(server: Server, client: muon.Client) -> None:
    created = client.request("POST", "/v1/tenants", json={"name": "quick"})
    env = {**os.environ, "MUON_URL": server.url, "MUON_API_KEY": created["key"]["key"], "MUON_TENANT": "quick",
           "MUON_GUESTS": str(server.guests)}
    result = subprocess.run([sys.executable, str(REPO / "examples" / "python" / "quickstart.py")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["hello, muon!", "succeeded"], result.stdout


def test_notebook_cells_run_in_order(server: Server, client: muon.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/python/walkthrough.ipynb: its code cells, run top to bottom in one namespace as a kernel would.

    (No Jupyter kernel is needed for that; the cells use nothing IPython-specific.)
    """
    created = client.request("POST", "/v1/tenants", json={"name": "notebook"})
    for name, value in {"MUON_URL": server.url, "MUON_API_KEY": created["key"]["key"], "MUON_TENANT": "notebook",
                        "MUON_GUESTS": str(server.guests)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO / "examples" / "python")
    notebook = json.loads((REPO / "examples" / "python" / "walkthrough.ipynb").read_text())
    namespace: dict[str, Any] = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"walkthrough.ipynb#{cell['id']}", "exec"), namespace)
    assert [e.epoch for e in namespace["epochs"]] == list(range(1, 9))
    assert namespace["accuracy"] >= 0.85
