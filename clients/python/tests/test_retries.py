"""Retries on 429 and 503 honour Retry-After and are bounded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import muon
from conftest import Server


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next (status, Retry-After) of the server's script, then 200."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        server.times.append(time.monotonic())  # type: ignore[attr-defined]
        script = server.script  # type: ignore[attr-defined]
        status, retry_after = script.pop(0) if script else (200, None)
        code = {429: "rate_limited", 503: "overloaded"}.get(status, "ok")
        body = json.dumps({"functions": []} if status == 200 else
                          {"error": {"code": code, "message": f"scripted {status}"}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        if retry_after is not None:
            self.send_header("retry-after", retry_after)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def scripted() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.script = []  # type: ignore[attr-defined]
    httpd.times = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_429_then_200_waits_retry_after(scripted: ThreadingHTTPServer) -> None:
    scripted.script[:] = [(429, "1"), (503, "0")]  # type: ignore[attr-defined]
    with muon.Client(_url(scripted), "k", backoff=5.0) as client:
        assert client.functions.list() == []
    times = scripted.times  # type: ignore[attr-defined]
    assert len(times) == 3
    # Retry-After: 1 was waited (not the 5 s backoff), Retry-After: 0 was not.
    assert 0.95 <= times[1] - times[0] < 3
    assert times[2] - times[1] < 0.5


def test_retries_are_bounded(scripted: ThreadingHTTPServer) -> None:
    scripted.script[:] = [(429, "0")] * 10  # type: ignore[attr-defined]
    with muon.Client(_url(scripted), "k", retries=2) as client, pytest.raises(muon.TooManyRequests) as caught:
        client.functions.list()
    assert len(scripted.times) == 3  # type: ignore[attr-defined]
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (429, "rate_limited", 0.0)


def test_503_without_retry_after_backs_off(scripted: ThreadingHTTPServer) -> None:
    scripted.script[:] = [(503, None)]  # type: ignore[attr-defined]
    with muon.Client(_url(scripted), "k", backoff=0.2) as client:
        client.functions.list()
    times = scripted.times  # type: ignore[attr-defined]
    assert 0.09 <= times[1] - times[0] < 1


def test_live_rate_limit_is_retried(server: Server, client: muon.Client) -> None:
    """A tenant limited to 1 call per second: the second call gets 429 with Retry-After and succeeds after it."""
    created = client.request("POST", "/v1/tenants", json={"name": "slow", "quotas": {"requests_per_second": 1}})
    key = created["key"]["key"]
    with muon.Client(server.url, key, tenant="slow") as slow:
        slow.functions.deploy("hello", server.component("hello"), rollout="direct")
        with muon.Client(server.url, key, tenant="slow", retries=0) as impatient:
            impatient.functions.call("hello")
            with pytest.raises(muon.TooManyRequests) as caught:
                impatient.functions.call("hello")
        assert caught.value.code == "rate_limited"
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
        start = time.monotonic()
        assert slow.functions.call("hello", params={"name": "again"}).text.strip() == "hello, again!"
        assert time.monotonic() - start >= 0.5


def test_streams_are_retried_too(scripted: ThreadingHTTPServer) -> None:
    scripted.script[:] = [(503, "0")]  # type: ignore[attr-defined]
    with muon.Client(_url(scripted), "k") as client, client._transport.stream("GET", "/v1/jobs/x/events") as response:
        assert response.status_code == 200
    assert len(scripted.times) == 2  # type: ignore[attr-defined]
