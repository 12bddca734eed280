"""A proxy on loopback in front of SeaweedFS that behaves like a bucket which refuses SigV2:
any request without `Authorization: AWS4-HMAC-SHA256 ...` or a presigned
`X-Amz-Algorithm=AWS4-HMAC-SHA256` gets 400 InvalidRequest (as AWS answers for regions and
buckets that only take SigV4). It records every request (method, path, how it was signed,
whether it came as a forward proxy's request), so a test can count requests per object.
A `FaultProxy` with an `answer` rule.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from s3_assets_tests.fault_proxy import FaultProxy


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # without the query
    signature: str  # "sigv4", "sigv4-presigned", "sigv2" or "none"
    via_proxy: bool


def signature_of(headers: Mapping[str, str], query: str) -> str:
    auth = next((value for name, value in headers.items() if name.lower() == "authorization"), "")
    params = parse_qs(query)
    if auth.startswith("AWS4-HMAC-SHA256 "):
        return "sigv4"
    if params.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"]:
        return "sigv4-presigned"
    if auth.startswith("AWS ") or "Signature" in params:
        return "sigv2"
    return "none"


class SigV4OnlyProxy(FaultProxy):
    def __init__(self, upstream_port: int):
        self.seen: list[Seen] = []
        self.seen_lock = threading.Lock()
        super().__init__(upstream_port, answer=self._refuse_all_but_sigv4)

    def _refuse_all_but_sigv4(self, method: str, raw_path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        target = urlsplit(raw_path)
        signature = signature_of(headers, target.query)
        with self.seen_lock:  # recorded before answering: a test never races the answer
            self.seen.append(Seen(method, target.path, signature, bool(target.scheme)))
        return None if signature.startswith("sigv4") else (400, "InvalidRequest")

    def requests_for(self, bucket: str, key: str) -> list[Seen]:
        with self.seen_lock:
            return [seen for seen in self.seen if seen.path == f"/{bucket}/{key}"]
