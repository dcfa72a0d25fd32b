"""Typed exceptions for muon's error answers.

Every error muon sends is a status and `{"error": {"code", "message"}}`. The
client raises the subclass of `ApiError` for the status family, so callers can
catch `NotFound` or match on `err.code`, never on the message's text.
"""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """An error answer from muon: `status`, `code` (e.g. `not_found`) and `message`."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.request_id = request_id


class BadRequest(ApiError):
    """400 and the other 4xx answers that say the request itself is wrong (413, 415, 422, ...)."""


class Unauthorized(ApiError):
    """401: no valid API key."""


class Forbidden(ApiError):
    """403: the key may not do this (an admin-only route)."""


class NotFound(ApiError):
    """404: no such object, or one of another tenant."""


class Conflict(ApiError):
    """409: the object already exists or the state forbids it."""


class TooManyRequests(ApiError):
    """429: a quota or rate limit (`quota_exceeded`, `rate_limited`), after the client's retries."""


class ServerError(ApiError):
    """5xx: the function failed (`trap`, `timeout`, ...) or muon is unavailable or overloaded."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: TooManyRequests,
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (muon sends delta-seconds), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for a non-2xx answer; tolerates bodies that are not muon's JSON."""
    code, message = "unknown", response.reason_phrase or "error"
    try:
        body: Any = response.json()
        detail = body["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()
        if text:
            message = text[:500]
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    return cls(status, code, message, retry_after=retry_after_seconds(response),
               request_id=response.headers.get("x-muon-request-id"))
