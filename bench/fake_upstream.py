"""A raw-ASGI fake runtime for benchmarks: a fixed chat completion, or an SSE stream.

Streams: `"stream": true` sends `x_events` events (default 20) `x_interval_ms` apart (default 0), each
carrying its send time (`x_sent`, time.time()) so a client can measure forwarding delay.

    python bench/fake_upstream.py --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.asgi import read_body, serve_lean, serve_lifespan

COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
)
MODELS = orjson.dumps({"object": "list", "data": [{"id": "bench", "object": "model", "created": 0}]})
_JSON = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
        return
    body = await read_body(receive)
    if scope["method"] == "GET":
        payload = MODELS if scope["path"].endswith("/models") else b'{"status":"ok"}'
        await send({"type": "http.response.start", "status": 200, "headers": _JSON})
        await send({"type": "http.response.body", "body": payload})
        return
    if b'"stream":true' not in body.replace(b" ", b""):
        headers = [*_JSON, (b"content-length", str(len(COMPLETION)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": COMPLETION})
        return
    data = orjson.loads(body)
    events = int(data.get("x_events", 20))
    interval = float(data.get("x_interval_ms", 0)) / 1000
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    for index in range(events):
        if interval:
            await asyncio.sleep(interval)
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": f"t{index}"}, "finish_reason": None}],
            "x_sent": time.time(),
        }
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                "more_body": True,
            }
        )
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    # scale_bench.py runs one per loopback address (127.0.0.1-3) so a model has three endpoints.
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve_lean(app, args.host, args.port, backlog=4096)


if __name__ == "__main__":
    main()
