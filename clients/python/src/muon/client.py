"""`muon.Client`: the entry point."""

from __future__ import annotations

import os
from typing import Any

import httpx

from . import models
from ._http import Transport
from ._util import query
from .datasets import Datasets
from .functions import Functions
from .jobs import Jobs
from .models_api import Models


class Client:
    """A client of one muon server.

        client = muon.Client("http://localhost:8080", api_key="...")
        client.functions.deploy("hello", "hello.wasm")
        client.functions.call("hello", params={"name": "muon"}).text

    The key comes from `api_key`, else `MUON_API_KEY`. `tenant` is the tenant whose
    `/fn/{tenant}/...` routes `functions.call` uses (default `MUON_TENANT` or `default`).
    Answers 429 and 503 are retried up to `retries` times, waiting what `Retry-After`
    says (at most `max_wait` seconds each); other errors raise `muon.ApiError` at once.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *, tenant: str | None = None,
                 timeout: float | httpx.Timeout = 30.0, retries: int = 3, backoff: float = 0.5,
                 max_wait: float = 30.0) -> None:
        url = url or os.environ.get("MUON_URL", "http://127.0.0.1:8080")
        self.url = url.rstrip("/")
        self.tenant = tenant or os.environ.get("MUON_TENANT", "default")
        api_key = api_key if api_key is not None else os.environ.get("MUON_API_KEY")
        self._transport = Transport(self.url, api_key, timeout=timeout, retries=retries, backoff=backoff,
                                    max_wait=max_wait)
        self.functions = Functions(self)
        self.models = Models(self)
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def usage(self, *, from_: str | int | None = None, to: str | int | None = None, function: str | None = None,
              group_by: str | None = None, tenant: str | None = None) -> models.UsageGroups:
        """Usage totals (`GET /v1/usage`); `from_` and `to` are Unix ms or `YYYY-MM-DD`."""
        params = query({"from": from_, "to": to, "function": function, "group_by": group_by, "tenant": tenant})
        return models.UsageGroups.model_validate(self._transport.json("GET", "/v1/usage", params=params))

    def alerts(self, state: str | None = None, limit: int | None = None) -> list[models.Alert]:
        """The tenant's alerts, newest first; `state` is `firing` or `resolved`."""
        params = query({"state": state, "limit": limit})
        return models.AlertList.model_validate(self._transport.json("GET", "/v1/alerts", params=params)).alerts

    def events(self, after: int | None = None, limit: int | None = None,
               kind: str | None = None) -> models.AuditEventList:
        """A page of the audit log, oldest first; pass `next_after` as `after` for the next."""
        params = query({"after": after, "limit": limit, "kind": kind})
        return models.AuditEventList.model_validate(self._transport.json("GET", "/v1/events", params=params))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any other route, as JSON (for example `client.request("GET", "/v1/tenants")`)."""
        return self._transport.json(method, path, **kwargs)
