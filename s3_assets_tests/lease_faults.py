"""Lock-note renewals that fail, for the fault proxy: a holder's lease lapses while the test waits
on events, never on a sleep (docs/RELIABILITY.md, "Lock notes")."""

from __future__ import annotations

import threading
import time
from urllib.parse import unquote, urlsplit

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.prefix_lock import NOTES_ROOT, PrefixLocks


class FailingRenewals:
    """A FaultProxy `rule` over the PUTs of one kind's lock notes: they pass until `refuse` is set,
    then get 503 SlowDown until it is cleared again.

    `lapsed` is set when a refused PUT arrives a whole ttl after the last PUT that passed arrived:
    the holder sent that PUT earlier still, so its note may have expired on the server, and the
    holder's lease (which counts from the sending) is over on its own clock too."""

    def __init__(self, ttl: int, kind: str = "run", refuse: bool = False):
        self.ttl, self.kind = ttl, kind
        self.refuse, self.lapsed = threading.Event(), threading.Event()
        if refuse:
            self.refuse.set()
        self.passed_again = threading.Event()  # a second PUT passed after `lapsed`
        self.lock = threading.Lock()
        self.last_passed: float | None = None
        self.refused = 0  # refused PUTs
        self.refused_before_lapse = 0
        self._passed_after_lapse = 0

    def __call__(self, method: str, path: str) -> str:
        if method != "PUT" or not unquote(urlsplit(path).path).split("/", 2)[-1].startswith(f"{NOTES_ROOT}{self.kind}."):
            return "pass"
        now = time.monotonic()
        with self.lock:
            if self.refuse.is_set():
                self.refused += 1
                if not self.lapsed.is_set():
                    self.refused_before_lapse += 1
                    if self.last_passed is not None and now - self.last_passed >= self.ttl:
                        self.lapsed.set()
                return "slow_down"
            self.last_passed = now
            if self.lapsed.is_set():
                self._passed_after_lapse += 1
                if self._passed_after_lapse >= 2:  # the holder saw the first one's answer before sending this
                    self.passed_again.set()
            return "pass"


def short_lease_prefix(ttl: int) -> type[S3Prefix]:
    """An S3Prefix whose runs and cleanups take notes of `ttl` seconds."""

    class ShortLease(S3Prefix):
        def prefix_locks(self, client):  # type: ignore[no-untyped-def]
            return PrefixLocks(client, self.resolved_bucket(), ttl_seconds=ttl, write_args=self.write_args())

    return ShortLease
