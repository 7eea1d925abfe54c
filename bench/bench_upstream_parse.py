"""CPU per image response on the upstream path: what imagegate does with a ~2 MB body versus the
peer-gateway habit DESIGN.md measured (parse, decode, re-encode, re-serialise for logging).

* ``imagegate classify``: orjson parse once, read format/size from the first 64 KB of base64,
  keep the base64 as received (what the gateway can pass on without re-encoding).
* ``imagegate + decode``: the above plus decoding the image once (what ``result.save`` needs).
* ``baseline``: ``json.loads``, base64-decode, base64-encode again, ``json.dumps`` the whole body
  (a log line), all measured in this run.

    .venv/bin/python bench/bench_upstream_parse.py [--runs 30] [--mb 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import time
from collections.abc import Callable

import httpx
import orjson

from imagegate.upstream.azure import Payload, classify


def body(mb: float) -> bytes:
    raw = (
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR\x00\x00\x04\x00\x00\x00\x04\x00\x08\x02\x00\x00\x00"
        + os.urandom(int(mb * 1024 * 1024))
    )
    usage = {"input_tokens": 6, "output_tokens": 4160, "total_tokens": 4166}
    return orjson.dumps(
        {"created": 1, "data": [{"b64_json": base64.b64encode(raw).decode()}], "usage": usage}
    )


def ours(content: bytes) -> None:
    out = classify("bench", httpx.Response(200, content=content))
    assert isinstance(out, Payload)


def ours_decoded(content: bytes) -> None:
    out = classify("bench", httpx.Response(200, content=content))
    assert isinstance(out, Payload)
    assert out.images[0].data


def baseline(content: bytes) -> None:
    parsed = json.loads(content)
    for item in parsed["data"]:
        item["b64_json"] = base64.b64encode(base64.b64decode(item["b64_json"])).decode()
    assert json.dumps(parsed)


def median_ms(fn: Callable[[bytes], None], content: bytes, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.process_time()
        fn(content)
        samples.append((time.process_time() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--mb", type=float, default=2.0)
    args = parser.parse_args()
    content = body(args.mb * 0.75)  # base64 grows the image by 4/3: the body is about --mb
    base = median_ms(baseline, content, args.runs)
    print(f"body {len(content) / 1e6:.2f} MB, {args.runs} runs, median CPU ms per response")
    print(f"  baseline (json + decode + re-encode + dumps)  {base:8.2f} ms   1.00x")
    for name, fn in (("imagegate classify", ours), ("imagegate classify + decode", ours_decoded)):
        ms = median_ms(fn, content, args.runs)
        print(f"  {name:<44} {ms:8.2f} ms   {ms / base:.2f}x of baseline")


if __name__ == "__main__":
    main()
