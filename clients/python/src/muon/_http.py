"""The HTTP layer: one httpx client, the key, timeouts and retries."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .errors import error_from_response, retry_after_seconds

#: Statuses worth another try: muon sends them with `Retry-After` when a rate,
#: a quota window or a queue will free up (`rate_limited`, `overloaded`, ...).
RETRY_STATUSES = frozenset({429, 503})


class Transport:
    """Sends requests with the key, retrying 429 and 503 a bounded number of times.

    The wait before retry `n` (from 0) is the answer's `Retry-After` when it has
    one, else `backoff * 2**n` with jitter; no single wait exceeds `max_wait`.
    """

    def __init__(self, url: str, api_key: str | None, *, timeout: float | httpx.Timeout,
                 retries: int, backoff: float, max_wait: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        headers = {"user-agent": "muon-client-python"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep

    def close(self) -> None:
        self.http.close()

    def _wait(self, attempt: int, response: httpx.Response) -> float:
        after = retry_after_seconds(response)
        if after is None:
            after = self.backoff * (2**attempt) * (0.5 + random.random() / 2)
        return min(after, self.max_wait)

    def request(self, method: str, path: str, *, body: Callable[[], Any] | None = None, check: bool = True,
                **kwargs: Any) -> httpx.Response:
        """Sends the request; returns a 2xx answer or raises the `ApiError` for it.

        With `check` false an error answer (after the retries) is returned instead.

        `body`, when given, makes the request's content afresh for each attempt (a
        file read in pieces cannot be sent twice from the same iterator).
        """
        attempt = 0
        while True:
            if body is not None:
                kwargs["content"] = body()
            response = self.http.request(method, path, **kwargs)
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self.sleep(self._wait(attempt, response))
                attempt += 1
                continue
            if check and response.is_error:
                raise error_from_response(response)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed answer (Server-Sent Events), retried like `request` before its body is read."""
        attempt = 0
        while True:
            with self.http.stream(method, path, **kwargs) as response:
                if response.status_code in RETRY_STATUSES and attempt < self.retries:
                    response.read()
                    wait = self._wait(attempt, response)
                elif response.is_error:
                    response.read()
                    raise error_from_response(response)
                else:
                    yield response
                    return
            self.sleep(wait)
            attempt += 1
