"""Small helpers shared by the resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def segment(name: str) -> str:
    """A path segment, percent-encoded (names are validated by the server)."""
    return quote(str(name), safe="")


def query(options: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters as muon names them: booleans as `true`/`false`, lists comma-joined, None left out."""
    params: dict[str, str] = {}
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            params[key] = ",".join(str(v) for v in value)
        elif hasattr(value, "value"):  # a generated Enum
            params[key] = str(value.value)
        else:
            params[key] = str(value)
    return params

