"""An HTTP proxy on loopback in front of SeaweedFS that behaves like a bucket which refuses
SigV2: any request without `Authorization: AWS4-HMAC-SHA256 ...` or a presigned
`X-Amz-Algorithm=AWS4-HMAC-SHA256` gets 400 (as AWS answers for regions and buckets that only
take SigV4). It records every request (method, path, how it was signed), so a test can count
requests per object.

It serves both ways a client may reach it: as the endpoint (`GET /bucket/key`) and as an HTTP
forward proxy (`GET http://host:port/bucket/key`, what HTTP_PROXY makes a client send); the
second are marked `via_proxy`.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

REFUSAL = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>The '
           b"authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
           b"</Message></Error>")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # without the query
    signature: str  # "sigv4", "sigv4-presigned", "sigv2" or "none"
    via_proxy: bool


def signature_of(headers: http.client.HTTPMessage, query: str) -> str:
    auth = headers.get("Authorization", "")
    params = parse_qs(query)
    if auth.startswith("AWS4-HMAC-SHA256 "):
        return "sigv4"
    if params.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"]:
        return "sigv4-presigned"
    if auth.startswith("AWS ") or "Signature" in params:
        return "sigv2"
    return "none"


class SigV4OnlyProxy:
    def __init__(self, upstream_port: int):
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = urlsplit(self.path)
                via_proxy = bool(target.scheme)
                signature = signature_of(self.headers, target.query)
                with proxy.lock:  # recorded before answering: a test never races the answer
                    proxy.seen.append(Seen(self.command, target.path, signature, via_proxy))
                if not signature.startswith("sigv4"):
                    self.send_response(400)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(REFUSAL)))
                    self.end_headers()
                    self.wfile.write(REFUSAL)
                    return
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                try:
                    upstream.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() != "proxy-connection":
                            upstream.putheader(name, value)
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response_only(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                # HEAD answers carry the object's length, not the (empty) body's
                self.send_header("Content-Length", response.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def requests_for(self, bucket: str, key: str) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if seen.path == f"/{bucket}/{key}"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
