"""A fault-injecting HTTP proxy on loopback, between an S3 client and the real SeaweedFS.

Requests are forwarded unchanged (Host header included, so SigV4 signatures still verify).
A rule decides per request to pass it, answer 503 SlowDown or 500 InternalError, reset the
connection, or stall; an `answer` hook may answer a request with an S3 error of its choice
(as AWS answers a request whose ExpectedBucketOwner is not the bucket's owner). It records each
request's method, path and headers, and can call a hook when a request arrives (e.g. to SIGKILL
the server at the second multipart part), and can rewrite response bodies (e.g. to answer in
another server's XML namespace). Two rules model S3 servers without conditional requests:
`refuse_conditional` (an `answer`: 501 NotImplemented to a PUT or DELETE with If-None-Match or
If-Match, as LocalStack 4.9.2 answers on general-purpose buckets) and `strip_headers` (forwards the
request without them, as a server that ignores them; botocore signs them, so a stripped request
would fail its signature: a client that sends none passes). It serves both as the endpoint (`GET /bucket/key`) and as an
HTTP forward proxy (`GET http://host:port/bucket/key`, what HTTP_PROXY makes a client send).
"""

from __future__ import annotations

import http.client
import http.server
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CONDITIONAL_HEADERS = ("if-none-match", "if-match")


def carries_condition(headers: dict[str, str]) -> bool:
    return any(name.lower() in CONDITIONAL_HEADERS for name in headers)


def refuse_conditional(method: str, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
    """An `answer`: a server that implements no conditional write or delete."""
    return (501, "NotImplemented") if method in ("PUT", "DELETE") and carries_condition(headers) else None


ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
              "<Message>injected by the test proxy</Message></Error>")


@dataclass
class Faults:
    """Share of requests (0..1) that get each fault; the rest pass."""

    slow_down: float = 0.0
    internal_error: float = 0.0
    reset: float = 0.0
    stall: float = 0.0
    seed: int = 1
    rng: random.Random = field(init=False)

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def pick(self) -> str:
        roll = self.rng.random()
        for name in ("slow_down", "internal_error", "reset", "stall"):
            share = getattr(self, name)
            if roll < share:
                return name
            roll -= share
        return "pass"


class FaultProxy:
    def __init__(self, upstream_port: int, faults: Faults | None = None,
                 on_request: Callable[[str, str], None] | None = None, stall_seconds: float = 30,
                 rewrite: Callable[[str, str, bytes], bytes] | None = None,
                 answer: Callable[[str, str, dict[str, str]], tuple[int, str] | None] | None = None,
                 rule: Callable[[str, str], str] | None = None, strip_headers: tuple[str, ...] = ()):
        """rule(method, path) -> a fault name or 'pass': decides by request instead of by chance."""
        self.faults = faults or Faults()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.injected: list[str] = []
        self.stripped = 0  # requests forwarded without a header of strip_headers
        strip = {name.lower() for name in strip_headers}
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, dict(self.headers)))
                    fault = rule(self.command, self.path) if rule else proxy.faults.pick()
                    if fault != "pass":
                        proxy.injected.append(fault)
                if on_request:
                    on_request(self.command, self.path)
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault == "stall":
                    time.sleep(stall_seconds)
                    self.close_connection = True
                    return
                answered = answer(self.command, self.path, dict(self.headers)) if answer else None
                if answered or fault in ("slow_down", "internal_error"):
                    status, code = answered or ((503, "SlowDown") if fault == "slow_down" else (500, "InternalError"))
                    payload = ERROR_BODY.format(code=code).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                target = urlsplit(self.path)  # a forward proxy's request names the whole URL
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                try:
                    upstream.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
                    dropped = False
                    for name, value in self.headers.items():
                        if name.lower() in strip:
                            dropped = True
                        elif name.lower() != "proxy-connection":
                            upstream.putheader(name, value)
                    if dropped:
                        with proxy.lock:
                            proxy.stripped += 1
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                    if rewrite is not None:  # e.g. another server's XML namespace
                        data = rewrite(self.command, self.path, data)
                except OSError:
                    self.connection.close()
                    self.close_connection = True
                    return
                finally:
                    upstream.close()
                self.send_response_only(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                # A HEAD has no body but tells the object's size: pass that on.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
