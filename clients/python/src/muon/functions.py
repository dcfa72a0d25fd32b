"""`client.functions`: deploy, call and manage functions."""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from . import models
from ._util import query, segment

if TYPE_CHECKING:
    from .client import Client


class Functions:
    """The tenant's functions (`/v1/functions`, `/fn/{tenant}/{name}`)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._t = client._transport

    def deploy(self, name: str, path: str | os.PathLike[str] | bytes, **options: Any) -> models.FunctionVersion:
        """Deploys a component (a `.wasm` path or its bytes) as the next version of `name`.

        `options` are the query parameters of `PUT /v1/functions/{name}`: `memory_mb`,
        `timeout_ms`, `max_concurrency`, `public`, `allowed_hosts` (a list or a
        comma-separated string), `models`, `rollout`, `canary_percent`, `canary_for_s`,
        `watch_s`, `breaker_failures`, `breaker_cooldown_s`.
        """
        body = path if isinstance(path, bytes) else Path(path).read_bytes()
        answer = self._t.json("PUT", f"/v1/functions/{segment(name)}", params=query(options), content=body,
                              headers={"content-type": "application/wasm"})
        return models.FunctionVersion.model_validate(answer)

    def list(self) -> builtins.list[models.FunctionVersion]:
        """The functions with their active versions."""
        return models.FunctionList.model_validate(self._t.json("GET", "/v1/functions")).functions

    def get(self, name: str) -> models.FunctionDetail:
        """One function with all its versions and its rollout, if one is in progress."""
        return models.FunctionDetail.model_validate(self._t.json("GET", f"/v1/functions/{segment(name)}"))

    def rollback(self, name: str) -> models.FunctionVersion:
        """Makes the previous version active again; returns the version now active."""
        answer = self._t.json("POST", f"/v1/functions/{segment(name)}/rollback")
        return models.FunctionVersion.model_validate(answer)

    def delete(self, name: str) -> models.Deleted:
        """Deletes the function and all its versions."""
        return models.Deleted.model_validate(self._t.json("DELETE", f"/v1/functions/{segment(name)}"))

    def stats(self, name: str, window: str = "15m") -> models.Stats:
        """Live statistics by version over `window` (`30s`, `15m`, `2h`, `1d`)."""
        answer = self._t.json("GET", f"/v1/functions/{segment(name)}/stats", params={"window": window})
        return models.Stats.model_validate(answer)

    def invoke(self, name: str, json: Any = None, *, data: bytes | str | None = None) -> Any:
        """Calls a typed function (a preprocessor or training step) with JSON; returns its JSON answer.

        `data` sends a body that is already JSON text, as is.
        """
        path = f"/v1/functions/{segment(name)}/invoke"
        if data is not None:
            return self._t.json("POST", path, content=data, headers={"content-type": "application/json"})
        return self._t.json("POST", path, json=json)

    def call(self, name: str, path: str = "/", *, method: str = "GET", tenant: str | None = None,
             check: bool = True, **kwargs: Any) -> httpx.Response:
        """Calls a handler or `wasi:http` function at `/fn/{tenant}/{name}{path}`.

        `kwargs` go to httpx (`params`, `json`, `content`, `headers`, ...). Returns the
        response; an error status raises `ApiError` like any other route, unless
        `check` is false: then a function's own 4xx or 5xx answer is returned as it is.
        """
        tenant = tenant or self._client.tenant
        rest = "" if path in ("", "/") else "/" + path.lstrip("/")
        return self._t.request(method, f"/fn/{segment(tenant)}/{segment(name)}{rest}", check=check, **kwargs)
