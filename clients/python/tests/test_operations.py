"""Models, statistics, usage, alerts and the audit log."""

from __future__ import annotations

import time

import pytest

import muon
from conftest import REPO, Server


def test_models_push_and_list(client: muon.Client) -> None:
    model = client.models.push("digits", REPO / "examples" / "digits" / "digits.onnx", backend="tract", target="cpu")
    assert model.name == "digits"
    assert model.backend.value == "tract"
    assert [i.name for i in model.inputs]
    assert "digits" in [m.name for m in client.models.list()]
    with pytest.raises(muon.BadRequest) as caught:
        client.models.push("junk", b"not onnx")
    assert caught.value.code == "invalid_model"


def test_stats_usage_alerts_events(server: Server, client: muon.Client) -> None:
    client.functions.deploy("counted", server.component("hello"), rollout="direct")
    for _ in range(5):
        client.functions.call("counted")
    stats = client.functions.stats("counted", window="30s")
    assert stats.name == "counted"
    assert sum(v.requests for v in stats.versions) == 5
    with pytest.raises(muon.BadRequest):
        client.functions.stats("counted", window="5y")

    usage = client.usage(function="counted")
    assert usage.groups[0].requests == 5
    by_day = client.usage(group_by="day")
    assert by_day.groups

    assert isinstance(client.alerts(), list)
    assert client.alerts(state="firing") == [a for a in client.alerts() if a.state.value == "firing"]
    with pytest.raises(muon.BadRequest):
        client.alerts(state="sleeping")

    page = client.events()
    deploys = [e for e in page.events if e.kind == "deploy" and e.subject == "counted"]
    assert deploys
    assert client.events(after=page.next_after).events == []


def test_a_bad_deploy_is_rolled_back_with_an_alert(server: Server, client: muon.Client) -> None:
    """A watched deploy that traps: the calls raise `trap`, muon rolls it back, and the alert and event show it."""
    client.functions.deploy("svc", server.component("hello"), rollout="direct")
    for _ in range(60):
        client.functions.call("svc")
    bad = client.functions.deploy("svc", server.component("fixture-flaky"))  # watched, the default
    assert bad.version == 2
    traps = 0
    deadline = time.monotonic() + 40
    while client.functions.get("svc").version == 2 and time.monotonic() < deadline:
        for _ in range(20):
            try:
                client.functions.call("svc", params={"fail_percent": 60})
            except muon.ServerError as err:
                assert (err.status, err.code) == (500, "trap")
                traps += 1
    assert traps > 0
    assert client.functions.get("svc").version == 1, "the bad version was rolled back"
    stats = client.functions.stats("svc", window="30s")
    v2 = next(v for v in stats.versions if v.version == 2)
    assert v2.outcomes["trap"].root > 0

    # The alert is written after the rollback, by the monitor's own task.
    about_svc: list[muon.models.Alert] = []
    deadline = time.monotonic() + 15
    while not about_svc and time.monotonic() < deadline:
        about_svc = [a for a in client.alerts() if a.labels.function == "svc"]
        time.sleep(0.2)
    assert about_svc and about_svc[0].labels.version == 2, client.alerts()
    rollbacks = client.events(kind="rollback").events
    assert any(e.subject == "svc" and e.detail.get("automatic") for e in rollbacks), rollbacks
