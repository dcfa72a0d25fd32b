"""A Python client for muon, the serverless WebAssembly platform.

    import muon
    client = muon.Client("http://localhost:8080")   # key from MUON_API_KEY
    client.functions.deploy("hello", "hello.wasm")
    print(client.functions.call("hello", params={"name": "muon"}).text)

The request and response types in `muon.models` are generated from the server's
OpenAPI document by `scripts/generate.py`.
"""

from . import models
from .client import Client
from .errors import (ApiError, BadRequest, Conflict, Forbidden, NotFound, ServerError, TooManyRequests,
                     Unauthorized)
from .jobs import Job

__all__ = [
    "ApiError", "BadRequest", "Client", "Conflict", "Forbidden", "Job", "NotFound", "ServerError",
    "TooManyRequests", "Unauthorized", "models",
]
__version__ = "0.1.0"
