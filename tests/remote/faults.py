"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the S3 emulator.

Each connection carries one request (the proxy answers ``Connection: close``).
:attr:`FaultProxy.plan` decides what happens to the next requests: ``None``
forwards them, otherwise a fault is applied to the next ``count`` requests
(``count=None``: to all of them):

- ``"503"``: answer ``503 Service Unavailable`` with an S3 error document;
- ``"slow"``: wait ``delay`` seconds before forwarding (longer than the client's timeout);
- ``"drop"``: close the connection without answering;
- ``"truncate"``: forward, then send the headers with the full ``Content-Length``
  but only half of the body, and close.

Only requests whose path contains ``match`` are faulted (default: every one).
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

_S3_503 = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>injected fault</Message></Error>"
)


@dataclass
class Plan:
    """Which fault to inject, how often, on which paths."""

    fault: str | None = None
    count: int | None = None
    delay: float = 2.0
    match: str = ""


@dataclass
class FaultProxy:
    """Forwards HTTP requests from 127.0.0.1 to ``upstream``, injecting :class:`Plan`'s faults."""

    upstream: str
    plan: Plan = field(default_factory=Plan)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, outcome
    headers_seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def set(self, fault: str | None, count: int | None = None, **kwargs: object) -> None:
        """Inject ``fault`` on the next ``count`` matching requests (all when ``None``)."""
        with self.lock:
            self.plan = Plan(fault, count, **kwargs)  # type: ignore[arg-type]
            self.seen.clear()

    def take(self, path: str) -> str | None:
        """The fault for a request to ``path`` (and use one of the plan's count)."""
        with self.lock:
            plan = self.plan
            if plan.fault is None or plan.match not in path:
                return None
            if plan.count is not None:
                if plan.count <= 0:
                    return None
                plan.count -= 1
            return plan.fault

    def faulted(self) -> int:
        """Number of requests that got a fault since the last :meth:`set`."""
        with self.lock:
            return sum(outcome != "ok" for _, _, outcome in self.seen)


def _read_request(rfile: socket.SocketIO | object) -> tuple[str, str, dict[str, str], bytes] | None:
    line = rfile.readline(65537)  # type: ignore[attr-defined]
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = rfile.readline(65537).decode("latin-1")  # type: ignore[attr-defined]
        if h in ("\r\n", "\n", ""):
            break
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    length = int(headers.get("Content-Length", headers.get("content-length", "0")) or 0)
    body = rfile.read(length) if length else b""  # type: ignore[attr-defined]
    return method, target, headers, body


def start_proxy(upstream: str) -> tuple[FaultProxy, socketserver.ThreadingTCPServer]:
    """Start a :class:`FaultProxy` on a free port of 127.0.0.1; returns it and its server."""
    proxy = FaultProxy(upstream)
    up = urlparse(upstream)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = _read_request(self.rfile)
            if request is None:
                return
            method, target, headers, body = request
            fault = proxy.take(target)
            with proxy.lock:
                proxy.seen.append((method, target, fault or "ok"))
                proxy.headers_seen.append(" ".join(f"{k}: {v}" for k, v in headers.items()))
            if fault == "drop":
                return
            if fault == "503":
                self.wfile.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                    + f"Content-Length: {len(_S3_503)}\r\nConnection: close\r\n\r\n".encode()
                    + (b"" if method == "HEAD" else _S3_503)
                )
                return
            if fault == "slow":
                time.sleep(proxy.plan.delay)
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
            try:
                fwd = {k: v for k, v in headers.items() if k.lower() != "connection"}
                conn.request(method, target, body=body or None, headers=fwd)
                resp = conn.getresponse()
                data = resp.read()
                status = f"HTTP/1.1 {resp.status} {resp.reason}\r\n".encode()
                out = [
                    f"{k}: {v}\r\n".encode()
                    for k, v in resp.getheaders()
                    if k.lower() not in ("connection", "transfer-encoding", "content-length")
                ]
                out.append(f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode())
                if fault == "truncate" and method != "HEAD" and len(data) > 1:
                    data = data[: len(data) // 2]
                self.wfile.write(status + b"".join(out) + (b"" if method == "HEAD" else data))
            except OSError:
                return
            finally:
                conn.close()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return proxy, server
