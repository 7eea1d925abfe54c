"""The floor for a Python image gateway on imagegate's stack, for ``bench_gateway.py``.

One route that forwards a generation to the emulator and answers with its images, on exactly the
parts the gateway moves bytes with: uvicorn (httptools, uvloop), FastAPI, the upstream client
(``UpstreamHTTPClient`` over ``Http11Transport``), ``parse_images_body`` and ``SlicedResponse``,
with the gateway's heap and garbage-collector settings. Nothing of the gateway's own work: no
keys, budgets, ledger, audit, validation, routing, retries, pricing, metrics or logs. What the
gateway spends above this is the price of its governance and routing; what this spends above
nginx is the price of Python, its event loop and the store-and-forward of each body.

    python bench/floor_proxy.py EMULATOR_URL PORT
"""

from __future__ import annotations

import sys

import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from imagegate.server.gc_tuning import tune_collector
from imagegate.server.heap import keep_large_blocks
from imagegate.server.responses import SlicedResponse
from imagegate.upstream.image_body import parse_images_body
from imagegate.upstream.transport import Http11Transport, UpstreamHTTPClient

API_VERSION = "2025-04-01-preview"


def build(upstream: str) -> FastAPI:
    app = FastAPI()
    client = UpstreamHTTPClient(transport=Http11Transport())
    url = httpx.URL(
        f"{upstream}/openai/deployments/bench/images/generations", params={"api-version": API_VERSION}
    )
    headers = {"api-key": "emulator-key", "content-type": "application/json"}

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> Response:
        body = orjson.loads(await request.body())
        body.pop("model", None)
        sent = client.build_request(
            "POST", url, headers=headers, content=orjson.dumps(body), timeout=httpx.Timeout(60.0)
        )
        answer = await client.send(sent)
        parsed, images = parse_images_body(answer.content)
        pieces = orjson.dumps(parsed).split(b'"b64_json":""')
        if answer.status_code != 200 or len(pieces) != len(images) + 1:
            return Response(answer.content, status_code=answer.status_code, media_type="application/json")
        parts: list[bytes | memoryview] = [pieces[0]]
        for image, piece in zip(images, pieces[1:], strict=True):
            parts += [b'"b64_json":"', image, b'"', piece]
        return SlicedResponse(parts, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


if __name__ == "__main__":
    keep_large_blocks({})
    app = build(sys.argv[1])
    tune_collector({})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
