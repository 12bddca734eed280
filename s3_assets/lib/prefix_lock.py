"""Runs that write a prefix and cleanups that delete it exclude each other, across processes,
machines and Dagster instances, with notes in the bucket itself (protocol: docs/RELIABILITY.md,
"Lock notes").

Where: every note of a bucket lives in one folder, `.s3-assets-locks/v1/`, that depends on no
setting (data and IO prefixes may not overlap it), so two configurations that reach the same
data through different IO prefixes still see each other.

Names: each party writes a note of its own, never another's, named by everything a LIST must
tell: `<kind>.<ttl seconds>.<owner run id>.<token>.<roots>`, roots being the base64url of the
normalised prefixes the holder writes or deletes (`@` when too long for a key: then in the body).
So one LIST answers who holds what without a GET; bodies (JSON: the same fields plus host and
pid) are read only of notes that conflict, to name their process, and are validated like the keys.

Steps (Dekker's order, no conditional request): PUT the own note, then LIST the folder. S3 lists
what was written before (strong list-after-write consistency), so of a run and a cleanup that
overlap at least one sees the other and backs off, deleting its note; two cleanups may both
back off (safe). Runs never exclude runs.

Expiry: a note counts while it is younger than its ttl on the server's clock (LastModified
against the LIST response's Date); its holder renews it every third of that and deletes it at
its end. A cleanup's Dagster instance may say that a run is finished: its note then stops
counting at once. Notes expired for a whole ttl more are swept (deleted) by whoever lists them.

Lease: the holder itself counts its note live for ttl - 1 s from the sending of its last
successful PUT, and every write or delete under its roots first checks that, locally
(`Hold.ensure_live`): a holder whose renewals failed past it is told, by name, and stops.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import re
import secrets
import socket
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import ClientError

from s3_assets.lib.errors import S3_FAILURES, S3AssetsError, describe_client_error
from s3_assets.lib.text import printable

LOCKS_FOLDER = ".s3-assets-locks/"
NOTES_ROOT = LOCKS_FOLDER + "v1/"
DEFAULT_TTL = 120
MAX_TTL = 3600
MAX_BODY_BYTES = 16 * 1024
KEY_BUDGET = 1000  # S3 keys hold 1024 bytes
KINDS = ("run", "cleanup")
OWNER = re.compile(r"[A-Za-z0-9_-]{1,100}")
TOKEN = re.compile(r"[0-9a-f]{16}")
B64URL = re.compile(r"[A-Za-z0-9_-]+")
ROOTS_IN_BODY = "@"
CLOCK_STEP = 1.0  # seconds: LastModified and Date are whole seconds, so a note may count 1 s less


class PrefixBusyError(S3AssetsError, RuntimeError):
    """The prefix is held by the other side (a cleanup, or runs that use it); the message names it."""


class LeaseLapsedError(S3AssetsError, RuntimeError):
    """A hold's note was not renewed in time: the other side may have proceeded, so the holder
    writes or deletes nothing more; the message names the note, its holder and its last renewal."""


class NoteError(S3AssetsError):
    """A note in the locks folder is not one this project writes; the message names its key."""


def overlap_form(root: str) -> str:
    """The form prefixes are compared in: NFKC and case-folded, so that a server which folds case
    or Unicode forms cannot make two names of one folder look apart (only over-refuses)."""
    return unicodedata.normalize("NFKC", root).casefold()


def roots_overlap(a: str, b: str) -> bool:
    """True if one normalised root ('' or ending in '/') contains the other."""
    fa, fb = overlap_form(a), overlap_form(b)
    return fa.startswith(fb) or fb.startswith(fa)


FOLDER_MARKER_SUFFIXES = ("/", "$folder$")


def is_folder_marker(key: str) -> bool:
    """A key that only stands for a folder, as tools make them: ending in `/` (an S3 console's
    "Create folder", `aws s3api put-object --key dir/`) or in `$folder$` (Hadoop's s3n/EMRFS
    `dir_$folder$`, also `_$folder$` inside a folder). No note of ours ends so: a note's name
    holds neither `/` nor `$` after the notes folder."""
    return key.endswith(FOLDER_MARKER_SUFFIXES)


def holder_name(kind: str, owner: str) -> str:
    """A note's holder as the messages name it: `run <id>` or `cleanup run <id>` (a run of the
    cleanup job)."""
    return f"run {owner}" if kind == "run" else f"cleanup run {owner}"


def conflicts(kind_a: str, kind_b: str) -> bool:
    """Runs exclude cleanups and cleanups exclude each other; runs never exclude runs."""
    return "cleanup" in (kind_a, kind_b)


@dataclass(frozen=True)
class Note:
    key: str
    kind: str
    ttl: int
    owner: str
    roots: tuple[str, ...] | None  # None: in the body
    written: datetime  # the server's LastModified

    @property
    def expires(self) -> datetime:
        return self.written + timedelta(seconds=self.ttl)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def note_key(kind: str, ttl: int, owner: str, token: str, roots: Sequence[str]) -> str:
    key = f"{NOTES_ROOT}{kind}.{ttl}.{owner}.{token}.{_b64(chr(10).join(roots))}"
    return key if len(key.encode()) <= KEY_BUDGET else f"{NOTES_ROOT}{kind}.{ttl}.{owner}.{token}.{ROOTS_IN_BODY}"


def _valid_roots(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not 1 <= len(value) <= 8:
        return None
    for root in value:
        if not (isinstance(root, str) and root.endswith("/") and "\\" not in root and "//" not in root
                and not re.search(r"[\x00-\x1f\x7f]", root) and len(root.encode()) <= 1024):
            return None
    return tuple(value)


class PrefixLocks:
    """The notes of one bucket, written and read through one boto3 client."""

    def __init__(self, client: Any, bucket: str, *, ttl_seconds: int = DEFAULT_TTL,
                 write_args: dict[str, str] | None = None):
        """write_args: extra PutObject arguments (server-side encryption), as on every write."""
        if not (isinstance(ttl_seconds, int) and 0 <= ttl_seconds <= MAX_TTL):
            raise ValueError(f"ttl_seconds={ttl_seconds!r}: use whole seconds from 0 to {MAX_TTL}")
        self.client, self.bucket, self.ttl = client, bucket, ttl_seconds
        self.write_args = dict(write_args or {})

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{printable(key)}"

    def _failed(self, error: Exception, key: str) -> S3AssetsError:
        return describe_client_error(error, bucket=self.bucket, key=key,
                                     endpoint=self.client.meta.endpoint_url)

    # -- reading notes (everything read is validated) ------------------------------------------
    def parse_key(self, key: str, written: datetime) -> Note:
        name = key.removeprefix(NOTES_ROOT)
        parts = name.split(".")
        if not key.startswith(NOTES_ROOT) or len(parts) != 5:
            raise self._malformed(key, "its name is not <kind>.<ttl>.<owner>.<token>.<roots>")
        kind, ttl, owner, token, encoded = parts
        if kind not in KINDS:
            raise self._malformed(key, "unknown kind")
        if not (ttl.isascii() and ttl.isdigit() and len(ttl) <= 4 and int(ttl) <= MAX_TTL):
            raise self._malformed(key, f"ttl is not a whole number of seconds up to {MAX_TTL}")
        if not OWNER.fullmatch(owner) or not TOKEN.fullmatch(token):
            raise self._malformed(key, "owner or token is not one this project writes")
        roots: tuple[str, ...] | None = None
        if encoded != ROOTS_IN_BODY:
            try:  # base64's decoder skips characters outside its alphabet: refuse them first
                roots = _valid_roots(_unb64(encoded).split("\n")) if B64URL.fullmatch(encoded) else None
            except (binascii.Error, UnicodeDecodeError, ValueError):
                roots = None
            if roots is None:
                raise self._malformed(key, "its roots are not base64url of prefixes")
        return Note(key, kind, int(ttl), owner, roots, written)

    def read_body(self, note: Note) -> dict[str, Any]:
        """The note's body, checked field by field against its name."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=note.key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                return {}  # released meanwhile
            raise self._failed(error, note.key) from None
        except S3_FAILURES as error:
            raise self._failed(error, note.key) from None
        with response["Body"] as stream:
            if int(response.get("ContentLength") or 0) > MAX_BODY_BYTES:
                raise self._malformed(note.key, f"its body is larger than {MAX_BODY_BYTES} bytes")
            raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise self._malformed(note.key, f"its body is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw, parse_constant=lambda name: math.nan)
        except (ValueError, RecursionError):
            raise self._malformed(note.key, "its body is not JSON") from None
        if not isinstance(body, dict):
            raise self._malformed(note.key, "its body is not a JSON object")
        ttl = body.get("ttl_seconds")
        checks = {
            "kind": body.get("kind") == note.kind,
            "owner": body.get("owner") == note.owner,
            "ttl_seconds": (isinstance(ttl, int | float) and not isinstance(ttl, bool) and math.isfinite(ttl)
                            and ttl == note.ttl),
            "roots": _valid_roots(body.get("roots")) is not None
                     and (note.roots is None or tuple(body["roots"]) == note.roots),
            "host": isinstance(body.get("host"), str) and len(body["host"]) <= 255,
            "pid": isinstance(body.get("pid"), int) and not isinstance(body.get("pid"), bool)
                   and 0 <= body["pid"] < 2**32,
        }
        wrong = [field for field, ok in checks.items() if not ok]
        if wrong:
            raise self._malformed(note.key, "missing or invalid " + ", ".join(wrong))
        return body

    def _malformed(self, key: str, why: str) -> NoteError:
        return NoteError(f"lock note {self._where(key)} is not one this project writes ({why}); nothing was "
                         f"changed. If no s3-assets process wrote it, delete it and run again")

    def list_notes(self) -> tuple[list[tuple[str, datetime]], datetime]:
        """Every note's key and LastModified, and the server's time of the listing (its Date).

        Folder markers (`is_folder_marker`: `.s3-assets-locks/v1/` itself, a console's
        `sub/`, Hadoop's `_$folder$`) are no notes: left out, never read, never swept. So is any
        zero-byte object (s3fs-fuse's `sub`, `application/x-directory`): a note always has a body."""
        items: list[tuple[str, datetime]] = []
        now: datetime | None = None
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": NOTES_ROOT}
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                date = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
                if now is None and date:
                    try:
                        now = parsedate_to_datetime(date)
                    except (TypeError, ValueError):
                        now = None
                items += [(item["Key"], item["LastModified"]) for item in page.get("Contents", ())
                          if not is_folder_marker(item["Key"]) and item.get("Size") != 0]
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
                kwargs["ContinuationToken"] = token
        except S3_FAILURES as error:
            raise self._failed(error, NOTES_ROOT) from None
        # A server without a Date header: this machine's clock (skew then matters).
        return items, (now if now is not None and now.tzinfo else datetime.now(UTC))

    # -- writing notes -----------------------------------------------------------------------
    def _put(self, key: str, body: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                                   **self.write_args)
        except S3_FAILURES as error:
            raise self._failed(error, key) from None

    def _delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) not in ("NoSuchKey", "404"):
                raise self._failed(error, key) from None
        except S3_FAILURES as error:
            raise self._failed(error, key) from None

    # -- holding -------------------------------------------------------------------------------
    def hold(self, kind: str, owner: str, roots: Sequence[str], *, what: str,
             is_finished: Callable[[str], bool | None] | None = None) -> Hold:
        """Put this process's note, then list: refuse (taking the note back) while a live note
        that conflicts with it covers an overlapping root. The hold renews the note until released.

        `is_finished(run_id)`: True/False if the run is known to the caller's Dagster instance,
        else None; a finished run's note no longer counts. Without it (no instance to ask) a
        refusal says that no instance was asked, not that the holder is unknown to one."""
        if kind not in KINDS or not OWNER.fullmatch(owner) or _valid_roots(list(roots)) is None:
            raise ValueError(f"cannot hold {kind!r} for {owner!r} on {list(roots)!r}")
        token = secrets.token_hex(8)
        key = note_key(kind, self.ttl, owner, token, roots)
        body = json.dumps({"kind": kind, "ttl_seconds": self.ttl, "owner": owner, "roots": list(roots),
                           "host": socket.gethostname()[:255], "pid": os.getpid()}).encode()
        sent = time.monotonic()  # the lease counts from the PUT's sending, not its answer
        self._put(key, body)
        refused = True
        try:
            self._refuse_conflicts(key, kind, owner, tuple(roots), what, is_finished)
            refused = False
        finally:
            if refused:  # take the own note back; if that fails too, it expires by itself after ttl
                with contextlib.suppress(S3AssetsError):
                    self._delete(key)
        return Hold(self, key, body, kind=kind, owner=owner, roots=tuple(roots), sent=sent)

    def _refuse_conflicts(self, own: str, kind: str, owner: str, roots: tuple[str, ...], what: str,
                          is_finished: Callable[[str], bool | None] | None) -> None:
        items, now = self.list_notes()
        live: list[tuple[Note, bool | None]] = []
        for key, written in items:
            if key == own:
                continue
            note = self.parse_key(key, written)
            finished = is_finished(note.owner) if is_finished is not None and note.owner != owner else None
            if finished or now >= note.expires + timedelta(seconds=note.ttl):
                self._sweep(note)
                continue
            if now >= note.expires or not conflicts(kind, note.kind):
                continue
            note_roots = note.roots if note.roots is not None else tuple(self.read_body(note).get("roots", ()))
            if any(roots_overlap(a, b) for a in roots for b in note_roots):
                live.append((note, finished))
        if not live:
            return
        described = "; ".join(self._describe(note, finished, now, asked=is_finished is not None)
                              for note, finished in live)
        if kind == "run":
            raise PrefixBusyError(f"{what} is being cleaned up by {described}: this run ({owner}) does not touch "
                                  "it; run it again after the cleanup")
        runs = [note for note, _ in live if note.kind == "run"]
        raise PrefixBusyError(
            f"{what} is in use by {len(live)} holder(s) ({len(runs)} run(s), {len(live) - len(runs)} other "
            f"cleanup(s)): {described}. Nothing was deleted; run the cleanup again when they are done")

    def _sweep(self, note: Note) -> None:
        """A dead holder's note (expired a whole ttl ago, or of a finished run): deleted."""
        try:
            self._delete(note.key)
        except S3AssetsError:  # noqa: S110 - the next party that lists tries again
            pass

    def _describe(self, note: Note, finished: bool | None, now: datetime, *, asked: bool) -> str:
        """What the holder is (a run or a cleanup run; running in the asking Dagster instance,
        unknown to it, or no instance asked) and until when its live note holds what."""
        body = self.read_body(note)
        process = f"host {printable(str(body['host']))}, pid {body['pid']}" if body else "its note was just released"
        roots = ", ".join(f"s3://{self.bucket}/{printable(root)}" for root in body.get("roots", note.roots or ()))
        left = max(0, int((note.expires - now).total_seconds()))
        text = (f"{holder_name(note.kind, note.owner)} ({process}) holding {roots}: its note is live until "
                f"{note.expires:%Y-%m-%d %H:%M:%S} UTC on the server's clock ({left} s from now) unless its process "
                f"renews it, every {note.ttl // 3} s while it lives (note {self._where(note.key)})")
        if finished is False and note.kind == "cleanup":
            return (text + " (a cleanup running in this Dagster instance: wait for it to end; if its process is "
                    "dead the hold ends by itself at that time, and 'Force termination' in the Dagster UI (Runs, "
                    "then the run) marks it canceled at once)")
        if finished is False:
            return (text + " (running in this Dagster instance: if its process is dead the hold ends by itself "
                    "at that time; to end it now, terminate the run in the Dagster UI (Runs, then the run, then "
                    "Terminate; 'Force termination' marks a run whose process is gone as canceled)")
        if asked:
            return text + (" (not known to this Dagster instance: wait for its note to expire, or end it in the "
                           "Dagster instance that launched it)")
        return text + (" (no Dagster instance was asked about it here: wait for its note to expire, or end it in "
                       "the Dagster instance that launched it)")

    def hold_for_run(self, run_id: str, roots: Sequence[str], *, what: str,
                     is_finished: Callable[[str], bool | None] | None = None) -> Hold:
        """A run's hold on the roots it writes (data and stored outputs)."""
        return self.hold("run", run_id, roots, what=what, is_finished=is_finished)

    @contextmanager
    def cleanup(self, run_id: str, roots: Sequence[str], *, what: str,
                is_finished: Callable[[str], bool | None] | None = None) -> Iterator[Hold]:
        """Hold the roots a cleanup deletes: refuse (naming them) while runs or cleanups hold any
        overlapping root; the note goes when the block ends, failed or not."""
        hold = self.hold("cleanup", run_id, roots, what=what, is_finished=is_finished)
        try:
            yield hold
        finally:
            with contextlib.suppress(S3AssetsError):  # a note not deleted expires by itself after its ttl
                hold.release()


class Hold:
    """One note of this process, renewed every third of its ttl on a daemon thread until released.

    The lease: the note counts for others until `ttl` seconds after its last renewal landed on
    the server, judged on whole seconds (LastModified and Date), so for the holder it lasts
    `ttl - 1` seconds from the moment the last successful PUT was *sent* (an earlier moment
    than the server's). `ensure_live` checks that locally, with no request, before each write
    or delete: past it the other side may have proceeded, and the holder stops. A renewal that
    fails is retried soon (every eighth of the interval), not a whole interval later."""

    def __init__(self, locks: PrefixLocks, key: str, body: bytes, *, kind: str = "run", owner: str = "",
                 roots: tuple[str, ...] = (), sent: float | None = None):
        self.locks, self.key, self._body = locks, key, body
        self.kind, self.owner, self.roots = kind, owner, roots
        self._stop = threading.Event()
        self.interval = max(locks.ttl / 3, 0.001)
        self.retry = self.interval / 8
        self.lease = locks.ttl - CLOCK_STEP
        self.margin = locks.ttl / 4
        self._guard = threading.Lock()
        self._last_sent = time.monotonic() if sent is None else sent
        self._failures, self._last_error = 0, ""
        self._broken = ""  # why the lease was lost for good (a renewal answered after it ended)
        self._released = False
        self._thread = threading.Thread(target=self._renew, name="s3-assets-lock-heartbeat", daemon=True)
        if locks.ttl:
            self._thread.start()

    def _renew(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            sent = time.monotonic()
            try:
                self.locks._put(self.key, self._body)  # noqa: SLF001 - the note's own writer
            except S3AssetsError as error:  # the lease shortens; ensure_live tells the writers when it ends
                with self._guard:
                    self._failures += 1
                    self._last_error = str(error)
                delay = self.retry
            else:
                answered = time.monotonic()
                with self._guard:
                    if not self._broken and answered > self._last_sent + self.lease:
                        # The note may have expired before this PUT landed: another party may have
                        # started meanwhile and will not look again. The lease is lost for good.
                        self._broken = (f"a renewal was answered {answered - self._last_sent:.1f} s after the "
                                        f"previous successful one was sent, after the note may have expired")
                    self._last_sent, self._failures, self._last_error = sent, 0, ""
                delay = max(0.0, sent + self.interval - time.monotonic())
            if self._stop.is_set():  # released while this PUT was under way: take the late note back
                with contextlib.suppress(S3AssetsError):
                    self.locks._delete(self.key)  # noqa: SLF001

    def left(self) -> float:
        """Seconds of the lease left on this process's monotonic clock (negative: lapsed)."""
        with self._guard:
            return self._last_sent + self.lease - time.monotonic()

    def ensure_live(self, margin: float | None = None, *, before: str = "") -> None:
        """Raise LeaseLapsedError unless more than `margin` seconds (default: a quarter of the
        ttl) of the lease are left. Local: no request. `before`: what is about to be done."""
        margin = self.margin if margin is None else margin
        now = time.monotonic()
        with self._guard:
            last_sent, failures, last_error = self._last_sent, self._failures, self._last_error
            left = last_sent + self.lease - now
            if left <= 0 and not self._broken:
                self._broken = "no renewal succeeded in time"
            broken, released = self._broken, self._released
        if left >= margin and not broken and not released:
            return
        raise LeaseLapsedError(self._lapsed_message(now - last_sent, left, margin, failures, last_error,
                                                    "" if released else broken, released, before))

    def check_before(self, what: str) -> None:
        """`ensure_live` with the default margin, before `what` (a write or a delete)."""
        self.ensure_live(before=what)

    def _lapsed_message(self, ago: float, left: float, margin: float, failures: int, last_error: str,
                        broken: str, released: bool, before: str) -> str:
        other = "a cleanup may be deleting" if self.kind == "run" else "a run may be writing"
        roots = ", ".join(f"s3://{self.locks.bucket}/{printable(root)}" for root in self.roots) or "its prefixes"
        if released:
            state = "was already released"
        elif broken:
            state = f"has lapsed ({broken})"
        elif left <= 0:
            state = "has lapsed"
        else:
            state = f"is about to lapse ({left:.1f} s left, less than the safety margin of {margin:.1f} s)"
        if failures:
            failed = f"; {failures} renewal(s) failed since, the last: {last_error}"
        elif released:
            failed = ""
        elif self._stop.is_set():
            failed = "; it is no longer renewed (stopped)"
        else:
            failed = "; no renewal was answered since (one may be under way, or this process was paused)"
        return (f"the hold of {holder_name(self.kind, self.owner)} (this process: host "
                f"{printable(socket.gethostname()[:255])}, pid {os.getpid()}) on {roots} {state}: its lock note "
                f"{self.locks._where(self.key)} was last renewed successfully {ago:.1f} s ago (a note counts "
                f"{self.locks.ttl} s after its last renewal; renewed every {self.interval:g} s){failed}. "
                f"{other.capitalize()} {roots} now, so this {self.kind} stops"
                + (f" before {printable(before)}" if before else "") + ": nothing more is "
                + ("written" if self.kind == "run" else "deleted")
                + ". Check that S3 is reachable and not throttling, then run it again")

    def stop(self) -> None:
        """Stop renewing (the note then expires by itself); `release` also deletes it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.locks.client.meta.config.read_timeout or 60)

    def release(self) -> None:
        """Stop renewing and delete the note; raises S3AssetsError if the delete failed (the
        note then expires by itself after its ttl)."""
        self.stop()
        with self._guard:
            self._released = True
        self.locks._delete(self.key)  # noqa: SLF001
