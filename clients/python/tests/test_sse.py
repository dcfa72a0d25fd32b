"""The Server-Sent Events parser, on the stream's edge cases (no server needed)."""

from __future__ import annotations

import httpx

from muon.jobs import _sse_messages


def test_sse_messages() -> None:
    body = (
        ": a comment\n"
        "id: 1\ndata: {\"a\": 1}\n\n"
        "id: 2\ndata: line one\ndata: line two\n\n"
        "data:{\"no_space\": true}\n\n"
        "event: ignored\n\n"
        "id: 4\ndata: last, with no blank line"
    )
    response = httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})
    assert list(_sse_messages(response)) == [
        (1, '{"a": 1}'),
        (2, "line one\nline two"),
        (2, '{"no_space": true}'),  # the id persists until the next one, as in the spec
        (4, "last, with no blank line"),
    ]
