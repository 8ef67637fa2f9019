"""The program behind the test images `localmodel.test/podprog` and `localmodel.test/httpserver`
on the process node (tests/support/processnode.py). Standalone on purpose: it runs inside a pod's
namespaces as `python podprog.py CMD ...`, with nothing from the project imported.

  serve [PORT]        HTTP on 0.0.0.0:PORT (8080): GET / -> JSON (name, ip, env),
                      GET /file?path=P -> that file's bytes (what the pod sees at P),
                      POST any path -> an OpenAI-like chat completion whose content is the pod name
                      (after `sleep` seconds when the JSON body has that key)
  exit CODE [SECS]    sleep SECS (0), then exit with CODE
  write PATH TEXT     write TEXT to PATH (init containers), then exit 0
  sleep [SECS]        sleep (forever)
  apicheck            GET the pod's namespace's pods from the apiserver the in-cluster way
                      (KUBERNETES_SERVICE_HOST/PORT, the projected token and CA); exit 0 when
                      the token authenticates (200, or 403 for a ServiceAccount without rights)
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/file":
            path = urllib.parse.parse_qs(url.query).get("path", [""])[0]
            try:
                body, status = Path(path).read_bytes(), 200
            except OSError as e:
                body, status = str(e).encode(), 404
        else:
            info = {
                "hostname": socket.gethostname(),
                "pod": os.environ.get("HOSTNAME", ""),
                "pid": os.getpid(),
                "env": dict(os.environ),
            }
            body, status = json.dumps(info).encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """A tiny OpenAI-like answer naming the pod that served it (for router tests)."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            request = {}
        pod = os.environ.get("HOSTNAME", "")
        if isinstance(request, dict) and isinstance(request.get("sleep"), int | float):
            time.sleep(min(float(request["sleep"]), 60.0))  # a slow model, for load tests
        answer = {
            "id": "podprog",
            "object": "chat.completion",
            "model": request.get("model") if isinstance(request, dict) else None,
            "path": self.path,
            "pod": pod,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": pod}, "finish_reason": "stop"}
            ],
        }
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _apicheck() -> int:
    sa = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    ns = (sa / "namespace").read_text()
    req = urllib.request.Request(
        f"https://{host}:{port}/api/v1/namespaces/{ns}/pods",
        headers={"Authorization": f"Bearer {(sa / 'token').read_text()}"},
    )
    ctx = ssl.create_default_context(cafile=str(sa / "ca.crt"))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            code = resp.status
    except urllib.error.HTTPError as e:
        code = e.code
    print(f"apiserver answered {code}", flush=True)
    return 0 if code in (200, 403) else 1


def main(argv: list[str]) -> int:
    cmd, rest = (argv[0], argv[1:]) if argv else ("sleep", [])
    # Exit promptly on SIGTERM like a well-behaved server (the node's graceful stop).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if cmd == "serve":
        port = int(rest[0]) if rest else 8080
        server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _Handler)
        server.serve_forever()
    elif cmd == "exit":
        time.sleep(float(rest[1]) if len(rest) > 1 else 0)
        return int(rest[0])
    elif cmd == "write":
        Path(rest[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(rest[0]).write_text(rest[1])
    elif cmd == "apicheck":
        return _apicheck()
    elif cmd == "sleep":
        time.sleep(float(rest[0]) if rest else 1e9)
    else:
        print(f"podprog: unknown command {cmd!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
