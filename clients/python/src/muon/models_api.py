"""`client.models`: ONNX models for wasi-nn."""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import models
from ._util import query, segment

if TYPE_CHECKING:
    from .client import Client


class Models:
    """The tenant's models (`/v1/models`)."""

    def __init__(self, client: Client) -> None:
        self._t = client._transport

    def push(self, name: str, path: str | os.PathLike[str] | bytes, backend: str | None = None,
             target: str | None = None, encoding: str | None = None) -> models.Model:
        """Uploads an ONNX model as the next version of `name`.

        `backend` is `tract` or `onnxruntime`, `target` `cpu` or `gpu`; the server picks when None.
        """
        body = path if isinstance(path, bytes) else Path(path).read_bytes()
        params = query({"backend": backend, "target": target, "encoding": encoding})
        answer = self._t.json("PUT", f"/v1/models/{segment(name)}", params=params, content=body,
                              headers={"content-type": "application/octet-stream"})
        return models.Model.model_validate(answer)

    def list(self) -> builtins.list[models.Model]:
        """The tenant's models."""
        return models.ModelList.model_validate(self._t.json("GET", "/v1/models")).models

    def get(self, name: str) -> models.Model:
        """One model: its signature, backend and target."""
        return models.Model.model_validate(self._t.json("GET", f"/v1/models/{segment(name)}"))

    def delete(self, name: str) -> models.Deleted:
        """Deletes the model."""
        return models.Deleted.model_validate(self._t.json("DELETE", f"/v1/models/{segment(name)}"))

    def stats(self, name: str, window: str = "15m") -> models.Stats:
        """Live statistics of the model's compute over `window`."""
        answer = self._t.json("GET", f"/v1/models/{segment(name)}/stats", params={"window": window})
        return models.Stats.model_validate(answer)
