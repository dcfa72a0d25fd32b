"""Models, statistics, usage, alerts and the audit log."""

from __future__ import annotations

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
