"""Why the router has its own upstream client: the same minimal raw-ASGI proxy on uvicorn (uvloop,
httptools) with httpx, with aiohttp, and localmodel-router (its pooled asyncio-protocol client),
measured with wrk against bench/fake_upstream.py. Prints a table; writes bench/results/router_clients.json.

    .cache/venv/bin/python bench/router_clients.py [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_bench import BODY, PYTHON, ROOT, free_port, process, wait_http, wrk_one_and_many

from tests.support.asgi import read_body, serve_lean, serve_lifespan


def minimal_proxy(kind: str, upstream: str) -> Any:
    """A raw-ASGI proxy doing what the router's hot path must: read the body, parse it, forward it."""
    state: dict[str, Any] = {}

    def open_client() -> None:
        if kind == "httpx":
            import httpx

            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
            state["client"] = httpx.AsyncClient(limits=limits)
        else:
            import aiohttp

            state["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send, on_startup=open_client)
            return
        if scope["method"] == "GET":  # readiness probe of this script
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = await read_body(receive)
        orjson.loads(body)
        client = state["client"]
        headers = {"content-type": "application/json"}
        if kind == "httpx":
            response = await client.post(upstream, content=body, headers=headers)
            data, status = response.content, response.status_code
        else:
            async with client.post(upstream, data=body, headers=headers) as response:
                data, status = await response.read(), response.status
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": data})

    return app


def serve_minimal(kind: str, port: int, upstream: str) -> None:
    serve_lean(minimal_proxy(kind, upstream), "127.0.0.1", port)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve_minimal(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="router-clients-"))
    script = tmp / "post.lua"
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n"
    )
    up = free_port()
    upstream = f"http://127.0.0.1:{up}/v1/chat/completions"
    table = tmp / "table.yaml"
    table.write_text(f"models:\n  - name: bench\n    endpoints: ['127.0.0.1:{up}']\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "router")}
    results: dict[str, dict[str, float]] = {}
    with process(
        [PYTHON, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(up)], tmp / "up.log", env=env
    ):
        wait_http(f"http://127.0.0.1:{up}/v1/models", 30)
        candidates: dict[str, list[str]] = {}
        for kind in ("httpx", "aiohttp"):
            candidates[kind] = [PYTHON, __file__, "--serve", kind]
        candidates["localmodel-router"] = [PYTHON, "-m", "localmodel_router.main", "--host", "127.0.0.1"]
        for name, command in candidates.items():
            port = free_port()
            if name == "localmodel-router":
                command = [
                    *command,
                    "--port",
                    str(port),
                    "--local-table",
                    str(table),
                    "--log-level",
                    "warning",
                ]
            else:
                command = [*command, str(port), upstream]
            with process(command, tmp / f"{name}.log", env=env):
                wait_http(f"http://127.0.0.1:{port}/healthz", 30)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                row = wrk_one_and_many(url, args.duration, script)
                results[name] = {key: row[key] for key in ("p50_c1_ms", "rps_c1", "p50_c64_ms", "rps_c64")}
    out = ROOT / "bench" / "results" / "router_clients.json"
    out.write_text(json.dumps({"load_avg_at_end": os.getloadavg(), "results": results}, indent=2) + "\n")
    print(f"{'client':<18} {'p50@1 ms':>9} {'rps@1':>8} {'p50@64 ms':>10} {'rps@64':>8}")
    for name, row in results.items():
        single = f"{row['p50_c1_ms']:>9.3f} {row['rps_c1']:>8.0f}"
        print(f"{name:<18} {single} {row['p50_c64_ms']:>10.2f} {row['rps_c64']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
