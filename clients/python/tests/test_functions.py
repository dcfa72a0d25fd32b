"""Deploy, call, list, get, rollback, delete, invoke, and the errors they raise."""

from __future__ import annotations

import pytest

import muon
from conftest import Server


def test_deploy_and_call_hello(server: Server, client: muon.Client) -> None:
    version = client.functions.deploy("hello", server.component("hello"), memory_mb=64, rollout="direct")
    assert version.name == "hello"
    assert version.kind.value == "handler"
    assert version.limits.memory_mb == 64
    response = client.functions.call("hello", params={"name": "muon"})
    assert response.status_code == 200
    assert response.text.strip() == "hello, muon!"


def test_list_get_rollback_delete(server: Server, client: muon.Client) -> None:
    first = client.functions.deploy("cycle", server.component("hello"), rollout="direct")
    second = client.functions.deploy("cycle", server.component("http-hello"), rollout="direct")
    assert second.version == first.version + 1
    assert "cycle" in [f.name for f in client.functions.list()]
    detail = client.functions.get("cycle")
    assert detail.version == second.version
    assert [v.version for v in detail.versions] == [first.version, second.version] or \
        sorted(v.version for v in detail.versions) == [first.version, second.version]
    assert client.functions.rollback("cycle").version == first.version
    assert client.functions.get("cycle").version == first.version
    client.functions.delete("cycle")
    with pytest.raises(muon.NotFound) as caught:
        client.functions.get("cycle")
    assert caught.value.code == "not_found"


def test_call_with_path_and_method(server: Server, client: muon.Client) -> None:
    client.functions.deploy("web", server.component("http-hello"), rollout="direct")
    response = client.functions.call("web", "/items/7", method="DELETE", params={"verbose": 1})
    assert response.text == "hello from wasi:http, Method::Delete /items/7?verbose=1\n"


def test_invoke_with_json_and_data(server: Server, client: muon.Client) -> None:
    client.functions.deploy("csv", server.component("preprocess-csv"), rollout="direct")
    out = client.functions.invoke("csv", json={"content_type": "text/csv", "data": "1,2,3\n4,5,6\n"})
    assert out["tensors"][0]["name"] == "input"
    same = client.functions.invoke("csv", data='{"content_type": "text/csv", "data": "1,2,3\\n4,5,6\\n"}')
    assert same == out


def test_errors_carry_status_code_and_message(server: Server, client: muon.Client) -> None:
    with pytest.raises(muon.NotFound) as not_found:
        client.functions.get("no-such-function")
    assert (not_found.value.status, not_found.value.code) == (404, "not_found")
    assert "no-such-function" in not_found.value.message

    with pytest.raises(muon.BadRequest) as bad_name:
        client.functions.deploy("Not_A_Name", server.component("hello"))
    assert (bad_name.value.status, bad_name.value.code) == (400, "bad_request")

    with pytest.raises(muon.BadRequest) as bad_option:
        client.functions.deploy("hello2", server.component("hello"), rollout="sideways")
    assert bad_option.value.code == "bad_request"

    with pytest.raises(muon.BadRequest) as not_wasm:
        client.functions.deploy("junk", b"not a component")
    assert not_wasm.value.code == "invalid_component"

    with muon.Client(server.url, "muon_not_a_key") as stranger, pytest.raises(muon.Unauthorized) as unauthorized:
        stranger.functions.list()
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
    assert isinstance(unauthorized.value, muon.ApiError)


def test_key_from_environment(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUON_API_KEY", server.admin_key)
    with muon.Client(server.url) as client:
        client.functions.list()


def test_call_without_check_returns_the_functions_own_error(server: Server, client: muon.Client) -> None:
    client.functions.deploy("transform", server.component("json-transform"), rollout="direct")
    ok = client.functions.call("transform", method="POST", json={"values": [1, 2, 3]})
    assert ok.json()["count"] == 3
    bad = client.functions.call("transform", method="POST", content=b"nope", check=False)
    assert bad.status_code == 400
    assert "expected" in bad.json()["error"]
    with pytest.raises(muon.BadRequest) as caught:
        client.functions.call("transform", method="POST", content=b"nope")
    assert caught.value.status == 400
