"""The digits classifier of functions/digits, as a FastAPI + ONNX Runtime server.

The same model (examples/digits/digits.onnx: input `x` fp32 [N, 64], output
`probabilities` fp32 [N, 10]) and the same JSON contract:
`{"pixels": [64 numbers]}` answers `{"digit": d, "probabilities": [10]}`;
`{"images": [[64 numbers], ...]}` answers `{"digits": [...], "probabilities": [[10], ...]}`
from one batched run; a bad body answers 400 `{"error": {"code": "bad_request", "message": ...}}`.

Run with one worker per core, as scripts/bench-fastapi.sh does:
    DIGITS_MODEL=examples/digits/digits.onnx uvicorn app:app --workers $(nproc) --loop uvloop --http httptools
Each worker loads its own session with one intra-op thread, as muon's default
(`nn_intra_op_threads = 1`) does.
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

PIXELS = 64
CLASSES = 10

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(
    os.environ.get("DIGITS_MODEL", "examples/digits/digits.onnx"), options, providers=["CPUExecutionProvider"]
)

app = FastAPI()


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pixels: list[float] | None = None
    images: list[list[float]] | None = None


def bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "bad_request", "message": message}}, status_code=400)


@app.post("/fn/default/digits")
async def digits(request: Request) -> JSONResponse:
    # The body is JSON whatever its content type, as for the muon function.
    try:
        body = Input.model_validate_json(await request.body())
    except ValidationError as err:
        return bad_request(f"the body is not the expected JSON: {err}")
    if body.pixels is not None and body.images is None:
        images, batch = [body.pixels], False
    elif body.pixels is None and body.images:
        images, batch = body.images, True
    else:
        return bad_request('send either {"pixels": [64 numbers]} or {"images": [[64 numbers], ...]}')
    for i, image in enumerate(images):
        if len(image) != PIXELS or any(not 0.0 <= p <= 16.0 for p in image):
            return bad_request(f"image {i} must have exactly {PIXELS} pixels, each from 0 to 16")
    (probabilities,) = session.run(["probabilities"], {"x": np.asarray(images, dtype=np.float32)})
    rows = probabilities.tolist()
    # argmax keeps the first of equal maxima, as the muon function does.
    found = [int(d) for d in np.argmax(probabilities, axis=1)]
    if batch:
        return JSONResponse({"digits": found, "probabilities": rows})
    return JSONResponse({"digit": found[0], "probabilities": rows[0]})
