"""A tiny threaded TCP forwarder: pods (in their own network namespaces) cannot reach the
host's loopback, where the apiserver listens, so the process node forwards its bridge address
to it. TLS passes through untouched; the apiserver's cert lists the bridge addresses."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpForwarder:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self._sock = socket.create_server(listen, reuse_port=False)
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"fwd-{listen[0]}:{listen[1]}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                done = src in self._conns and dst not in self._conns
                self._conns.discard(src)
            if done:
                src.close()
                dst.close()

    def close(self) -> None:
        self._closed.set()
        # shutdown() wakes a thread blocked in accept(); close() alone may not.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()
