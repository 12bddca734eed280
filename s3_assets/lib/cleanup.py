"""Deleting everything under the project's prefixes, and nothing else.

What goes: every object under each root (the data prefix `<prefix>/`, and the stored outputs'
`<io_prefix>/<prefix>/` unless kept), listed with the trailing slash (so `ins_dataset_old/` is
never listed) and checked again before it is sent. Roots that are empty, do not end in '/', or
overlap each other are refused before any request is sent.

How: `DeleteObjects` batches of up to 1,000 keys, several at once, each sent as soon as its
page is listed (and checked), while the next page is listed. botocore writes a batch as
XML with ElementTree, which escapes only `& < >`: a key with a character XML 1.0 forbids (most
C0 controls, U+FFFE, U+FFFF, lone surrogates) makes the whole batch `MalformedXML`, and an XML
parser reads `\\r` as `\\n` (another key). Such keys go one at a time with `DeleteObject`, which
carries the key in the URL. A failure of a whole batch is reported as the batch's, per-key
`Errors` as that key's, and a listing after the deletes shows what is really gone.

Held: `check` (the cleanup's lock-note lease, `Hold.ensure_live`) is called right before each
delete request is sent and before each listed page is queued; once it fails nothing more is
sent or listed, and the report says what was deleted and what was not, and why.

Not its own: `foreign` (the cleanup op: another configuration's stored values or S3 copies,
recognised by name) is asked about each listed key before its page is queued; a refusal stops the
listing and the deletes there, the report says what earlier pages deleted, and keys it holds back
go only once the listing has shown they are not foreign: a value's `manifest.json` (it lists
before its version folders) once everything is listed, a key in a folder that may be a nested
configuration's prefix (`InFolders`) once the listing has left the folder or a probe of it
found no copy.

Versioned buckets: a delete without VersionId only adds a delete marker. The report says whether
the bucket is versioned; `delete_versions` removes every version and marker under the roots.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from s3_assets.lib.errors import S3_FAILURES, S3AssetsError, describe_client_error
from s3_assets.lib.listing import iter_pages, list_objects
from s3_assets.lib.text import printable

BATCH = 1000

# XML 1.0's Char production without '\r' (which a parser turns into '\n').
_BATCHABLE = re.compile("[\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


class CleanupError(S3AssetsError, RuntimeError):
    """Some objects were not deleted; the message names them (and failed batches as batches)."""

    def __init__(self, message: str, report: CleanupReport):
        super().__init__(message)
        self.report = report
        self.failed = report.failed


class OutsidePrefixError(S3AssetsError, RuntimeError):
    """A key outside the roots reached the delete path, or the roots overlap: refused before sending."""


def batchable(key: str) -> bool:
    """Whether `DeleteObjects`' XML body carries `key` unchanged."""
    return _BATCHABLE.fullmatch(key) is not None


@dataclass(frozen=True)
class Target:
    """One thing to delete: an object, or (versions) one version or delete marker of it."""

    key: str
    size: int = 0
    version_id: str | None = None

    def label(self) -> str:
        return self.key if self.version_id is None else f"{self.key} (version {self.version_id})"


@dataclass
class CleanupReport:
    bucket: str
    roots: list[str]
    dry_run: bool
    targets: list[Target] = field(default_factory=list)
    versioning: str = ""  # '' (never enabled), 'Enabled', 'Suspended', or 'unknown: <why>'
    delete_versions: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # target label -> why (escaped text)
    batch_errors: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)  # listed again after the deletes
    unconfirmed: str = ""  # why the listing after the deletes failed (escaped text), if it did
    interrupted: str = ""  # why the listing stopped after some deletes were sent (escaped text)
    stopped: str = ""  # why the cleanup stopped deleting (its lease lapsed), escaped text
    stopped_listing: bool = False  # the stop came before the roots were all listed
    not_sent: list[str] = field(default_factory=list)  # targets listed but not sent once stopped
    held_back: int = 0  # listed targets held back (`foreign`: True, InFolders) and never sent, the listing interrupted
    refused: str = ""  # why the cleanup refused to go on (a key that is not its own), escaped text

    @property
    def keys(self) -> list[str]:
        return sorted({t.key for t in self.targets})

    @property
    def bytes(self) -> int:
        return sum(t.size for t in self.targets)

    batch_failed: list[str] = field(default_factory=list)  # targets in batches that failed as a whole

    def not_deleted(self) -> set[str]:
        return set(self.failed) | set(self.remaining) | set(self.batch_failed) | set(self.not_sent)

    @property
    def count(self) -> int:
        """Targets deleted (all of them unless the run failed)."""
        return 0 if self.dry_run else len(self.targets) - len(self.not_deleted())

    @property
    def versioned(self) -> bool:
        return self.versioning in ("Enabled", "Suspended")

    def keys_under(self, root: str) -> list[str]:
        return [key for key in self.keys if key.startswith(root)]

    def versioning_note(self) -> str:
        if self.versioning.startswith("unknown"):
            return f"bucket versioning {self.versioning}"
        if not self.versioned:
            return "bucket not versioned: deleted objects are gone"
        if self.delete_versions:
            return f"bucket versioning {self.versioning}: every version and delete marker under the prefix goes"
        return (f"bucket versioning {self.versioning}: deleting only adds delete markers; the old versions stay "
                "(and are billed). Set delete_versions: true to remove them")


def check_roots(roots: Iterable[str]) -> list[str]:
    """The roots, after checking each is non-empty, ends in '/' and overlaps no other."""
    roots = list(roots)
    for root in roots:
        if not root or not root.endswith("/"):
            raise OutsidePrefixError(f"refusing to delete with prefix {root!r}: it must be non-empty and end in '/'")
    for root in roots:
        for other in roots:
            if root is not other and other.startswith(root):
                raise OutsidePrefixError(f"refusing to delete: the prefixes {root!r} and {other!r} overlap")
    return roots


def keys_to_delete(keys: list[str], root: str) -> list[str]:
    """The keys, after checking that each starts with a non-empty root ending in '/'."""
    check_roots([root])
    outside = [key for key in keys if not key.startswith(root)]
    if outside:
        raise OutsidePrefixError(
            f"refusing to delete {len(outside)} key(s) outside {root!r}, e.g. {printable(outside[0])!r}")
    return keys


def bucket_versioning(client: Any, bucket: str) -> str:
    """'' (never enabled), 'Enabled' or 'Suspended'; 'unknown: <code>' if S3 will not say."""
    try:
        return client.get_bucket_versioning(Bucket=bucket).get("Status", "")
    except ClientError as error:
        return f"unknown: {error.response.get('Error', {}).get('Code', '?')}"
    except S3_FAILURES as error:  # a network failure: the deletes' report must not be lost for it
        return f"unknown: {type(error).__name__}"


def list_targets(client: Any, bucket: str, root: str, *, versions: bool) -> list[Target]:
    """The current objects under root, or (versions) every version and delete marker."""
    if not versions:
        listing = list_objects(client, bucket, root)
        return [Target(k, int(s)) for k, s in zip(listing["key"], listing["size"], strict=True)]
    return [target for page in target_pages(client, bucket, root, versions=True) for target in page]


def target_pages(client: Any, bucket: str, root: str, *, versions: bool) -> Iterator[list[Target]]:
    """What `list_targets` lists, a page at a time as the server answers."""
    if not versions:
        for rows in iter_pages(client, bucket, root):
            yield [Target(k, int(s)) for k, s in zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True)]
        return
    try:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=root):
            yield [Target(v["Key"], int(v.get("Size", 0)), v["VersionId"]) for v in page.get("Versions", ())] + \
                [Target(m["Key"], 0, m["VersionId"]) for m in page.get("DeleteMarkers", ())]
    except S3_FAILURES as error:
        raise describe_client_error(error, bucket=bucket, key=root, endpoint=client.meta.endpoint_url) from None


def _entry(target: Target) -> dict[str, str]:
    entry = {"Key": target.key}
    if target.version_id is not None:
        entry["VersionId"] = target.version_id
    return entry


def _delete_batch(client: Any, bucket: str, batch: list[Target]) -> tuple[dict[str, str], list[Target], str | None]:
    """(per-key failures, the batch if it failed as a whole, and why)."""
    try:
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": [_entry(t) for t in batch], "Quiet": True})
    except (*S3_FAILURES, ValueError) as error:  # ValueError: a key botocore cannot encode
        reason = describe_client_error(error, bucket=bucket, endpoint=client.meta.endpoint_url)
        span = f"{printable(batch[0].key)!r} .. {printable(batch[-1].key)!r}"
        return {}, batch, f"DeleteObjects of {len(batch)} key(s) ({span}) failed as a whole: {reason}"
    failed = {}
    for item in response.get("Errors", ()):
        label = Target(item.get("Key", "?"), 0, item.get("VersionId") or None).label()
        failed[label] = printable(f"{item.get('Code', '?')}: {item.get('Message', '')}")  # the server's words
    return failed, [], None


def _delete_one(client: Any, bucket: str, target: Target) -> tuple[dict[str, str], list[Target], str | None]:
    try:
        client.delete_object(Bucket=bucket, **_entry(target))
    except (*S3_FAILURES, ValueError) as error:
        return {target.label(): str(describe_client_error(error, bucket=bucket))}, [], None
    return {}, [], None


Job = Callable[[], tuple[dict[str, str], list[Target], str | None]]


class _Stop:
    """The lease check, shared by the listing loop and the delete workers: once it fails, no
    request more is sent, and the targets of every job not sent are recorded."""

    def __init__(self, check: Callable[[str], None] | None):
        self.check, self.why = check, ""
        self.not_sent: list[str] = []
        self.lock = threading.Lock()

    def live(self, what: str) -> bool:
        """Whether deleting may go on (before `what`); the first failed check records why."""
        with self.lock:
            if self.why:
                return False
        if self.check is None:
            return True
        try:
            self.check(what)
        except S3AssetsError as error:
            with self.lock:
                self.why = self.why or str(error)
            return False
        return True

    def guard(self, targets: list[Target], job: Job) -> Job:
        def run() -> tuple[dict[str, str], list[Target], str | None]:
            span = printable(targets[0].key) + (f" .. {printable(targets[-1].key)}" if len(targets) > 1 else "")
            # Checked right before the request is sent, not when it was queued.
            if not self.live(f"deleting {len(targets)} object(s) ({span})"):
                with self.lock:
                    self.not_sent += [t.label() for t in targets]
                return {}, [], None
            return job()
        return run


@dataclass(frozen=True)
class InFolders:
    """`foreign`'s verdict on a key that lies in `folders` (prefixes ending in '/', below the
    cleaned root), one of which may be another configuration's prefix that a key listed later
    would show (its copy, `<folder>raw/train.csv`). Held back until, for each folder, the listing
    has left it, or `<folder><probe>` has been listed whole without a refusal. A folder's keys
    list together, in S3's byte order as in SeaweedFS' folder-by-folder order (which differ:
    `a/x` and `a-b/x` swap), so "left it" is "the last key listed lies outside it", true in both;
    no order between folders is assumed."""

    folders: tuple[str, ...]
    probe: str


PROBES_PER_PAGE = 8  # folders probed after a listed page at most (one LIST each)


def _probe(client: Any, bucket: str, prefixes: list[str], foreign: Foreign) -> tuple[set[str], str]:
    """Lists each prefix (one page): those listed whole without a key `foreign` refuses, and the
    first refusal (`key: why`, not yet escaped). A failed LIST settles nothing: the listing will."""
    done: set[str] = set()
    for prefix in prefixes:
        try:
            answer = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=BATCH)
        except S3_FAILURES:
            continue
        for item in answer.get("Contents", ()):
            verdict = foreign(item["Key"])
            if isinstance(verdict, str):
                return done, f"{item['Key']}: {verdict}"
        if not answer.get("IsTruncated"):
            done.add(prefix)
    return done, ""


class _Waiting:
    """Keys held back by an `InFolders` verdict, and the folders proven free of another
    configuration (`settled`: their probe listed whole without a refusal)."""

    def __init__(self) -> None:
        self.entries: list[tuple[Target, InFolders]] = []
        self.settled: set[str] = set()
        self.asked: dict[str, str] = {}  # probe prefix -> its folder, each asked once

    def hold(self, target: Target, verdict: InFolders) -> None:
        self.entries.append((target, verdict))

    def release(self, last: str) -> list[Target]:
        """The keys whose every folder the listing has left (`last`: the last key listed so far)
        or a probe settled; the others stay."""
        released: list[Target] = []
        kept: list[tuple[Target, InFolders]] = []
        for target, verdict in self.entries:
            if all(folder in self.settled or not last.startswith(folder) for folder in verdict.folders):
                released.append(target)
            else:
                kept.append((target, verdict))
        self.entries = kept
        return released

    def to_probe(self, last: str) -> list[str]:
        """The probe prefixes of the folders that still hold keys back (those that hold `last`),
        each asked once, PROBES_PER_PAGE at most."""
        wanted = {folder + verdict.probe: folder for _, verdict in self.entries for folder in verdict.folders
                  if last.startswith(folder) and folder not in self.settled}
        prefixes = [prefix for prefix in wanted if prefix not in self.asked][:PROBES_PER_PAGE]
        self.asked.update((prefix, wanted[prefix]) for prefix in prefixes)
        return prefixes

    def settle(self, prefixes: set[str]) -> None:
        self.settled |= {self.asked[prefix] for prefix in prefixes}


Foreign = Callable[[str], str | bool | InFolders | None]


def clean(client: Any, bucket: str, roots: list[str], *, dry_run: bool, delete_versions: bool = False,
          exclude: tuple[str, ...] = (), workers: int = 8, check: Callable[[str], None] | None = None,
          foreign: Foreign | None = None) -> CleanupReport:
    """Delete every object under each root except those under `exclude` (or, dry run, say what
    would go). Raises CleanupError naming what was not deleted.

    `check(what)` raises S3AssetsError when deleting must stop (the cleanup's lease lapsed):
    called, locally, before each delete request and each listed page; nothing more is sent after.

    `foreign(key)`: a text (why the key is not this cleanup's: another configuration's stored
    output, S3 copy or lock note) makes the cleanup refuse, before the page holding it is queued, and nothing more is
    listed or sent (a dry run fails the same); True holds the key back until every root is listed
    without a refusal (it may belong to something a later page shows to be foreign); `InFolders`
    until the listing has left its folders, or a probe has shown them free (a real run lists a
    folder's `probe` once, when a batch's worth of keys waits on it, so a big folder's deletes stay
    pipelined); False or None: the key is deleted as usual.

    Pipelined: each listed page's keys are checked and sent as a batch at once, while the next
    page is listed (and the versioning check runs alongside, unless it decides what is listed).
    After the last delete, the roots are listed again: that listing says what is really gone."""
    roots = check_roots(roots)
    report = CleanupReport(bucket, roots, dry_run, delete_versions=delete_versions)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="s3-delete") as pool:
        versioning: Future[str] = pool.submit(bucket_versioning, client, bucket)
        if delete_versions:
            report.versioning = versioning.result()  # versions or objects: decides what is listed
        versions = delete_versions and report.versioned
        sent: list[Future[tuple[dict[str, str], list[Target], str | None]]] = []
        held: list[Target] = []  # keys `foreign` holds back until the whole listing passed
        waiting = _Waiting()  # keys `foreign` holds back until the listing has left their folders
        stop = _Stop(None if dry_run else check)
        try:
            for root in roots:
                for page in target_pages(client, bucket, root, versions=versions):
                    if not stop.live(f"queueing the deletes of the next {len(page)} listed object(s)"):
                        report.stopped_listing = True
                        break
                    targets = [t for t in page if not t.key.startswith(exclude)]
                    keys_to_delete([t.key for t in targets], root)  # before any of the page is sent
                    verdicts = [foreign(t.key) if foreign is not None else None for t in targets]
                    why = next(((t, v) for t, v in zip(targets, verdicts, strict=True) if isinstance(v, str)), None)
                    if why is not None:
                        report.refused = printable(f"{why[0].key}: {why[1]}")
                        break
                    report.targets += targets
                    now = []
                    for target, verdict in zip(targets, verdicts, strict=True):
                        if verdict is True:
                            held.append(target)
                        elif isinstance(verdict, InFolders):
                            waiting.hold(target, verdict)
                        else:
                            now.append(target)
                    # Versions: a page's versions and delete markers come as two lists, whose order
                    # between them says nothing of where the listing is: held until the root is listed.
                    last = page[-1].key if page and not versions else None
                    now += waiting.release(last) if last is not None else []
                    if foreign is not None and last is not None and len(waiting.entries) >= BATCH and not dry_run:
                        # a batch's worth waits on folders the listing is still in: probe them
                        done, refusal = _probe(client, bucket, waiting.to_probe(last), foreign)
                        if refusal:  # before any of this page is sent
                            report.refused = printable(refusal)
                            report.not_sent += [t.label() for t in now]
                            break
                        waiting.settle(done)
                        now += waiting.release(last)
                    if not dry_run:
                        sent += [pool.submit(stop.guard(chunk, job)) for chunk, job in planned_jobs(client, bucket, now)]
                if report.stopped_listing or report.refused:
                    break
                # The root is listed whole without a refusal: every folder of it has been left.
                listed = waiting.release("")
                if listed and not dry_run:
                    sent += [pool.submit(stop.guard(chunk, job)) for chunk, job in planned_jobs(client, bucket, listed)]
            held += waiting.release("") if report.refused or report.stopped_listing else []  # never sent
            if report.refused or report.stopped_listing:
                report.not_sent += [t.label() for t in held]
            elif held and not dry_run:  # every root listed and nothing foreign: the held-back keys go too
                sent += [pool.submit(stop.guard(chunk, job)) for chunk, job in planned_jobs(client, bucket, held)]
        except S3AssetsError as error:
            if not sent or isinstance(error, OutsidePrefixError):
                raise
            report.interrupted = str(error)  # some deletes went: say which, and that the listing stopped
            unsent = [t.label() for t in held + waiting.release("")]
            report.not_sent += unsent
            report.held_back = len(unsent)
        finally:
            results = [future.result() for future in sent]  # what was sent is waited for, and reported
            report.versioning = versioning.result()
            report.stopped, report.not_sent = stop.why, report.not_sent + stop.not_sent
            for failed, batch, batch_error in results:
                report.failed.update(failed)
                report.batch_failed += [t.label() for t in batch]
                if batch_error:
                    report.batch_errors.append(batch_error)
    if report.refused:  # nothing more was listed; what was sent before is reported
        raise CleanupError(failure_message(report), report)
    if dry_run or (not report.targets and not report.stopped):
        return report
    # What is really gone: a server may answer 204 for a key it cannot name.
    try:
        left = {t.label() for root in roots for t in list_targets(client, bucket, root, versions=versions)}
    except S3AssetsError as error:  # the deletes happened: report them, and that they are unconfirmed
        left, report.unconfirmed = set(), str(error)
    report.remaining = sorted(({t.label() for t in report.targets} & left) - set(report.failed)
                              - set(report.batch_failed) - set(report.not_sent))
    if (report.failed or report.batch_errors or report.remaining or report.unconfirmed or report.interrupted
            or report.stopped):
        raise CleanupError(failure_message(report), report)
    return report


def planned_jobs(client: Any, bucket: str, targets: list[Target]) -> list[tuple[list[Target], Job]]:
    """`DeleteObjects` batches for the keys XML carries, `DeleteObject` for each other one, each
    with the targets it deletes."""
    batchable_targets = [t for t in targets if batchable(t.key)]
    chunks = [batchable_targets[i:i + BATCH] for i in range(0, len(batchable_targets), BATCH)]
    jobs: list[tuple[list[Target], Job]] = [(chunk, partial(_delete_batch, client, bucket, chunk)) for chunk in chunks]
    return jobs + [([t], partial(_delete_one, client, bucket, t)) for t in targets if not batchable(t.key)]


def failure_message(report: CleanupReport, shown: int = 10) -> str:
    where = " and ".join(f"s3://{report.bucket}/{printable(root)}" for root in report.roots)
    parts = [(f"{len(report.not_deleted())} of {len(report.targets)} object(s) under {where} "
              "were not deleted")]
    if report.refused:
        deleted = len(report.targets) - len(report.not_deleted())
        done = "Nothing was deleted" if report.dry_run or not deleted else (
            f"{deleted} object(s) listed before it was found were deleted: "
            + "; ".join(printable(t.label()) for t in report.targets[:shown] if t.label() not in report.not_deleted())
            + (" and more" if deleted > shown else ""))
        parts = [f"refusing to clean up {where}: it holds {report.refused}; nothing more was listed or deleted. "
                 f"{done}"]
    elif report.stopped:  # first what is deleted and what is not, then why
        deleted = len(report.targets) - len(report.not_deleted())
        parts = [f"the cleanup of {where} stopped before it was done: {deleted} object(s) deleted, "
                 f"{len(report.not_deleted())} of the {len(report.targets)} listed object(s) not deleted"
                 + (" (the listing stopped too: objects not yet listed were not deleted either)"
                    if report.stopped_listing else "")
                 + f". It stopped because {report.stopped}"]
        if report.not_sent:
            parts.append(f"{len(report.not_sent)} listed object(s) were not sent for deletion: "
                         + "; ".join(printable(label) for label in report.not_sent[:shown])
                         + (f" and {len(report.not_sent) - shown} more" if len(report.not_sent) > shown else ""))
    if report.interrupted:
        held = f"; {report.held_back} listed object(s) were held back (they may have been another configuration's) " \
               "and not sent" if report.held_back else ""
        parts.append(f"listing the prefix failed after {len(report.targets) - len(report.not_sent)} listed object(s) "
                     f"had been sent for deletion{held}; the rest were not listed, so not deleted: "
                     f"{report.interrupted}")
    if report.unconfirmed:
        parts.append("the server accepted the other deletes, but listing the prefix afterwards to confirm them "
                     f"failed: {report.unconfirmed}")
    if report.failed:
        items = list(report.failed.items())
        parts.append(f"{len(items)} refused by key: " + "; ".join(
            f"{printable(label)} ({why})" for label, why in items[:shown])  # `why` is escaped where it is made
            + (f" and {len(items) - shown} more" if len(items) > shown else ""))
    if report.batch_errors:
        parts.append(f"{len(report.batch_errors)} batch(es) failed as a whole (no key at fault): "
                     + "; ".join(report.batch_errors[:shown]))
    if report.remaining:
        parts.append(f"{len(report.remaining)} still listed afterwards: "
                     + "; ".join(printable(label) for label in report.remaining[:shown])
                     + (f" and {len(report.remaining) - shown} more" if len(report.remaining) > shown else ""))
    return ". ".join(parts)


def delete_prefix(client: Any, bucket: str, root: str, *, dry_run: bool, workers: int = 8) -> CleanupReport:
    """Delete every object under one root (or, dry run, only say what would go)."""
    return clean(client, bucket, [root], dry_run=dry_run, workers=workers)
