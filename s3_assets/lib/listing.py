"""Listing every object under a prefix into a table, however many there are, in parallel.

The notebook's single `list_objects_v2` call stops at 1,000 keys; here every page is walked.

Fast path: botocore spends most of a listing turning each page's XML into per-object dicts and
datetimes, so a `before-parse` hook takes the `<Contents>` elements (in any XML namespace, or
none) out of the raw body and reads them straight into Arrow columns; botocore still signs,
retries, raises errors and parses the rest of the page. A page is taken on the fast path only
when it is self-consistent (KeyCount = rows + common prefixes, IsTruncated with a token), and
botocore's parse of the rest agrees; otherwise botocore's own parser reads the page. The hook is
registered only while a listing runs, and acts only in the threads of that listing.

Parallel: one request per page is one round trip per 1,000 objects. Past the first page the key
space is split into ranges started with `StartAfter` (at sub-prefixes found with a delimiter
where keys have them, at character boundaries where they do not) and listed concurrently. A
range stops at the first key that another range already listed: from there on that range has
listed (or will list) what follows, so together the ranges cover the listing in the server's
own order, whatever that order is (SeaweedFS lists a directory's subtree at its name: `a/x`
before `a-b`). A range not started yet that another has gone past is dropped. The table is
sorted by key, each key once.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from botocore.compat import unquote_str

from s3_assets.lib.errors import S3_FAILURES, S3AssetsError, S3OperationError, describe_client_error
from s3_assets.lib.text import printable

RAW_SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("last_modified", pa.timestamp("us", tz="UTC")),
                        ("etag", pa.string()), ("storage_class", pa.dictionary(pa.int8(), pa.string()))])
LISTING_COLUMNS = [
    "key", "size", "last_modified", "etag", "storage_class", "is_folder",
    "depth", "name", "extension", "uri",
]
EVENT = "before-parse.s3.ListObjectsV2"
_HOOK_ID = "s3_assets.listing.fast_path"
_hook_lock = threading.Lock()  # botocore's unique-id counter is not atomic
_thread = threading.local()  # .active: this thread's ListObjectsV2 calls are ours; .taken: the page's rows


def page_batch(keys, sizes, modified, etags, classes) -> pa.RecordBatch:
    """One page as Arrow columns; Arrow parses the ISO 8601 LastModified strings."""
    stamps = pa.array(modified).cast(pa.timestamp("us", tz="UTC"))
    return pa.RecordBatch.from_arrays([
        pa.array(keys, pa.string()), pa.array(sizes, pa.int64()), stamps, pa.array(etags, pa.string()),
        pa.array(classes, pa.string()).dictionary_encode().cast(pa.dictionary(pa.int8(), pa.string())),
    ], schema=RAW_SCHEMA)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_page_fast(body: bytes) -> tuple[pa.RecordBatch, bytes] | None:
    """(rows, the body without its <Contents>) of a ListObjectsV2 page, in any namespace; None
    when the page is not plainly consistent, so that botocore's parser reads it instead."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    if _local(root.tag) != "ListBucketResult":
        return None
    contents: list[ET.Element] = []
    rest: list[ET.Element] = []
    for child in root:
        (contents if _local(child.tag) == "Contents" else rest).append(child)
    fields = {_local(child.tag): (child.text or "").strip() for child in rest if len(child) == 0}
    prefixes = len([child for child in rest if _local(child.tag) == "CommonPrefixes"])
    truncated = fields.get("IsTruncated", "").lower()
    if (not fields.get("KeyCount", "").isdigit() or int(fields["KeyCount"]) != len(contents) + prefixes
            or truncated not in ("true", "false") or (truncated == "true" and not fields.get("NextContinuationToken"))):
        return None
    url_encoded = fields.get("EncodingType") == "url"
    keys, sizes, modified, etags, classes = [], [], [], [], []
    for item in contents:
        values = {_local(child.tag): child.text for child in item}
        key, size, stamp = values.get("Key"), values.get("Size") or "", values.get("LastModified")
        if key is None or not size.strip().isdigit() or not stamp:
            return None
        keys.append(unquote_str(key) if url_encoded else key)
        sizes.append(int(size))
        modified.append(stamp.strip())
        etags.append((values.get("ETag") or "").strip().strip('"'))
        classes.append((values.get("StorageClass") or "").strip() or "STANDARD")
    try:
        batch = page_batch(keys, sizes, modified, etags, classes)
    except (pa.ArrowInvalid, ValueError):
        return None
    root[:] = rest
    return batch, ET.tostring(root)


def _take_contents(response_dict: dict, **kwargs: Any) -> None:
    """botocore `before-parse` hook: a consistent page's <Contents> go to columns, the rest of
    the page to botocore; any other page, and every call outside a listing, is left alone."""
    if not getattr(_thread, "active", False) or response_dict.get("status_code", 500) >= 300:
        return
    _thread.taken = None  # a retried attempt replaces what an earlier one took
    fast = parse_page_fast(response_dict["body"])
    if fast is not None:
        _thread.taken, response_dict["body"] = fast


@contextmanager
def fast_path(client: Any) -> Iterator[None]:
    """The hook on this client for the duration of a listing (counted: listings may overlap)."""
    with _hook_lock:
        client.meta.events.register(EVENT, _take_contents, unique_id=_HOOK_ID, unique_id_uses_count=True)
    try:
        yield
    finally:
        with _hook_lock:
            client.meta.events.unregister(EVENT, unique_id=_HOOK_ID, unique_id_uses_count=True)


def _batch_from_parsed(contents: list[dict]) -> pa.RecordBatch:
    """botocore's parsed objects as one page of columns (the fallback path)."""
    return page_batch(
        [o["Key"] for o in contents], [int(o.get("Size", 0)) for o in contents],
        [o["LastModified"].isoformat() for o in contents],
        [str(o.get("ETag", "")).strip('"') for o in contents], [o.get("StorageClass") or "STANDARD" for o in contents],
    )


@dataclass
class Page:
    rows: pa.RecordBatch
    token: str | None  # NextContinuationToken when truncated
    prefixes: list[str] = field(default_factory=list)


def list_page(client: Any, **params: Any) -> Page:
    """One ListObjectsV2 page, its rows read on the fast path when it is consistent."""
    _thread.active, _thread.taken = True, None
    try:
        parsed = client.list_objects_v2(**params)
        taken = _thread.taken
    finally:
        _thread.active, _thread.taken = False, None
    prefixes = [p["Prefix"] for p in parsed.get("CommonPrefixes", [])]
    if taken is not None and ("Contents" in parsed or parsed.get("KeyCount", -1) != taken.num_rows + len(prefixes)):
        parsed, taken = client.list_objects_v2(**params), None  # botocore disagrees: its parser decides
        prefixes = [p["Prefix"] for p in parsed.get("CommonPrefixes", [])]
    rows = taken if taken is not None else _batch_from_parsed(parsed.get("Contents", []))
    token = parsed.get("NextContinuationToken") if parsed.get("IsTruncated") else None
    if parsed.get("IsTruncated") and not token:
        raise S3OperationError(f"ListObjectsV2 on s3://{params['Bucket']}/{printable(params.get('Prefix', ''))}: the server "
                               "says the listing is truncated but gives no continuation token", "BadListing")
    return Page(rows, token, prefixes)


def list_objects(client: Any, bucket: str, root: str, *, parallelism: int = 8, page_size: int = 1000) -> pd.DataFrame:
    """Every object whose key starts with `root` ('' or ending in '/'), as a table sorted by key.

    `parallelism`: how many ranges of the key space may be listed at once (1: one page after the
    other). Up to `page_size` objects take one request whatever it is."""
    try:
        with fast_path(client):
            first = list_page(client, Bucket=bucket, Prefix=root, MaxKeys=page_size)
            if first.token is None:
                batches = [first.rows]
            elif parallelism <= 1:
                batches = [first.rows, *_pages_after(client, bucket, root, page_size, first.token)]
            else:
                batches = _ParallelListing(client, bucket, root, page_size, parallelism).run(first)
    except S3AssetsError:
        raise
    except S3_FAILURES as error:  # only S3's: a bug in the fast path surfaces as itself
        raise describe_client_error(error, bucket=bucket, key=root, endpoint=client.meta.endpoint_url) from error
    return listing_frame(bucket, root, sorted_unique(pa.Table.from_batches(batches, schema=RAW_SCHEMA)))


def _pages_after(client: Any, bucket: str, root: str, page_size: int, token: str | None) -> Iterator[pa.RecordBatch]:
    seen = {token}
    while token:
        page = list_page(client, Bucket=bucket, Prefix=root, MaxKeys=page_size, ContinuationToken=token)
        yield page.rows
        token = page.token
        if token in seen:
            raise S3OperationError(f"ListObjectsV2 on s3://{bucket}/{printable(root)}: the server repeats a continuation "
                                   "token; the listing would never end", "BadListing")
        seen.add(token)


def sorted_unique(raw: pa.Table) -> pa.Table:
    """Rows sorted by key (UTF-8 byte order, as S3 sorts), each key once."""
    if raw.num_rows == 0:
        return raw
    raw = raw.take(pc.sort_indices(raw["key"]))
    keys = raw["key"].combine_chunks()
    keep = pc.invert(pc.fill_null(pc.equal(keys[1:], keys[:-1]), False))
    return raw.filter(pa.concat_arrays([pa.array([True]), keep]))


# -- parallel listing ---------------------------------------------------------------------

def common_prefix_length(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _char_class(char: str) -> int:
    return 0 if char.isdigit() else 1 if char.islower() else 2 if char.isupper() else 3


def char_boundaries(after: str, sample: list[str], folder: str) -> list[str]:
    """Split points after `after` inside its folder, for keys without sub-prefixes: at the
    character one level above where the sample's keys vary (f00001..f01000 -> f1, f2, ... f9),
    over the characters the sample uses of the kind found there (digits for f00001: no range
    starts at `fc` or `fv` because the keys end in `.csv`; each would cost an empty request)."""
    names = [key for key in sample if key.startswith(folder) and "/" not in key[len(folder):]]
    if len(names) < 2:
        return []
    position = max(len(folder), common_prefix_length(min(names), max(names)) - 1)
    if position >= len(after):
        return []
    kinds = {_char_class(name[position]) for name in names if len(name) > position}
    alphabet = sorted({char for name in names for char in name[position:] if _char_class(char) in kinds})
    return [after[:position] + char for char in alphabet if after[:position] + char > after]


@dataclass(eq=False)
class _Range:
    start_after: str | None
    batches: list[pa.RecordBatch] = field(default_factory=list)


class _ParallelListing:
    """Ranges of one prefix listed by `parallelism` threads; see the module docstring."""

    def __init__(self, client: Any, bucket: str, root: str, page_size: int, parallelism: int):
        self.client, self.bucket, self.root, self.page_size = client, bucket, root, page_size
        self.parallelism = parallelism
        self.lock = threading.Condition()
        self.queue: deque[_Range] = deque()
        self.ranges: list[_Range] = []
        self.starts: set[str] = set()  # StartAfter of every range (no two ranges start alike)
        self.owner: dict[str, _Range] = {}  # every key listed -> the range that keeps it
        self.busy = 0
        self.error: BaseException | None = None
        self.explored: dict[str, list[str]] = {}  # folder -> its sub-prefixes (first page)

    def run(self, first: Page) -> list[pa.RecordBatch]:
        head = _Range(None, batches=[first.rows])
        self.ranges.append(head)
        self.owner.update(dict.fromkeys(first.rows.column(0).to_pylist(), head))
        self.busy = 1
        self.split(first)
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="s3-listing") as pool:
            workers = [pool.submit(self.work) for _ in range(self.parallelism - 1)]
            self.work(head, first.token)
            for worker in workers:
                worker.result()
        if self.error is not None:
            raise self.error
        return [batch for listed in self.ranges for batch in listed.batches]

    def work(self, current: _Range | None = None, token: str | None = None) -> None:
        while True:
            if current is not None:
                try:
                    self.list_range(current, token)
                except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                    with self.lock:
                        self.error = self.error or error
                with self.lock:
                    self.busy -= 1
                    self.lock.notify_all()
            with self.lock:
                while not self.queue and self.busy and self.error is None:
                    self.lock.wait()
                if not self.queue or self.error is not None:
                    self.lock.notify_all()
                    return
                current, token = self.queue.popleft(), None
                self.busy += 1

    def list_range(self, listed: _Range, token: str | None) -> None:
        """Pages of one range until it reaches a key another range listed, or the end."""
        tokens = {token}
        while True:
            params = {"ContinuationToken": token} if token else {"StartAfter": listed.start_after}
            page = list_page(self.client, Bucket=self.bucket, Prefix=self.root, MaxKeys=self.page_size, **params)
            keys = page.rows.column(0).to_pylist()
            with self.lock:
                if self.error is not None:
                    return
                stop = next((i for i, key in enumerate(keys) if self.owner.get(key, listed) is not listed), None)
                for key in keys[:stop]:
                    self.owner[key] = listed
                if keys[:stop]:  # ranges not started yet that this page went past are not needed
                    low, high = keys[0], max(keys[:stop])
                    for queued in [q for q in self.queue if low <= q.start_after < high]:
                        self.queue.remove(queued)
                idle = not self.queue and self.busy < self.parallelism
            listed.batches.append(page.rows if stop is None else page.rows.slice(0, stop))
            if stop is not None or page.token is None:
                return
            if page.token in tokens:
                raise S3OperationError(f"ListObjectsV2 on s3://{self.bucket}/{printable(self.root)}: the server repeats a "
                                       "continuation token; the listing would never end", "BadListing")
            token = page.token
            tokens.add(token)
            if idle:
                self.split(page)

    def split(self, page: Page) -> None:
        """New ranges after the page's last key: at the sub-prefixes of its folders, coarsest
        first, then at character boundaries inside its own folder. Sub-prefixes are taken a
        page apart: if this page spans n of a folder's sub-prefixes, every n-th one."""
        keys = page.rows.column(0).to_pylist()
        if not keys:
            return
        last = keys[-1]
        folders = [self.root] + [last[: i + 1] for i in range(len(self.root), len(last)) if last[i] == "/"]
        unexplored = [folder for folder in folders[:-1] if folder not in self.explored]
        if len(unexplored) > 1:  # one round trip for all levels, not one per level
            with ThreadPoolExecutor(len(unexplored)) as pool:
                list(pool.map(self.sub_prefixes, unexplored))
        candidates: list[str] = []
        for folder in folders[:-1]:
            spanned = {key[len(folder):].split("/", 1)[0] for key in keys if key.startswith(folder)}
            after = [prefix for prefix in self.sub_prefixes(folder) if prefix > last]
            candidates += after[max(1, len(spanned)) - 1::max(1, len(spanned))]
        in_folder = sum(1 for key in keys if key.startswith(folders[-1]))
        if in_folder * 2 > len(keys):  # the page is mostly this folder's own keys: a flat folder
            candidates += char_boundaries(last, keys, folders[-1])
        with self.lock:
            for start in dict.fromkeys(candidates):
                if len(self.queue) >= 4 * self.parallelism:
                    break
                if start not in self.starts:
                    self.starts.add(start)
                    fresh = _Range(start)
                    self.ranges.append(fresh)
                    self.queue.append(fresh)
            self.lock.notify_all()

    def sub_prefixes(self, folder: str) -> list[str]:
        """The first page of `folder`'s sub-prefixes (delimiter '/'), asked once per listing."""
        if folder not in self.explored:
            page = list_page(self.client, Bucket=self.bucket, Prefix=folder, Delimiter="/", MaxKeys=self.page_size)
            self.explored[folder] = page.prefixes
        return self.explored[folder]


def listing_frame(bucket: str, root: str, raw: pa.Table) -> pd.DataFrame:
    """Derive the per-key columns (folder marker, depth, name, extension, URI) in Arrow."""
    key, size = raw["key"], raw["size"]
    relative = pc.utf8_slice_codeunits(key, len(root))
    is_folder = pc.and_(pc.ends_with(key, "/"), pc.equal(size, 0))
    trimmed = pc.utf8_rtrim(relative, "/")
    # (?s): a key may hold a newline; `.` must match it too, or such keys get wrong names.
    name = pc.replace_substring_regex(trimmed, r"(?s)^.*/", "")
    extension = pc.utf8_lower(pc.replace_substring_regex(name, r"(?s)^(?:[^.]*$|.*\.)", ""))
    extension = pc.if_else(is_folder, "", extension)
    table = pa.table({
        "key": key, "size": size, "last_modified": raw["last_modified"], "etag": raw["etag"],
        "storage_class": raw["storage_class"], "is_folder": is_folder,
        "depth": pc.cast(pc.count_substring(trimmed, "/"), pa.int64()), "name": name, "extension": extension,
        "uri": pc.binary_join_element_wise(f"s3://{bucket}/", key, ""),
    })
    return table.to_pandas(types_mapper=_pandas_types)


def _pandas_types(arrow_type: pa.DataType):
    return pd.StringDtype("pyarrow") if arrow_type == pa.string() else None


def frame_from_rows(bucket: str, root: str, keys, sizes, modified, etags, classes) -> pd.DataFrame:
    """The listing table from plain lists (for callers that already have the objects)."""
    raw = pa.Table.from_batches([page_batch(keys, sizes, modified, etags, classes)], schema=RAW_SCHEMA) if keys \
        else RAW_SCHEMA.empty_table()
    return listing_frame(bucket, root, raw)


def subfolders(listing: pd.DataFrame, root: str) -> list[str]:
    """The immediate sub-folders (the `PRE x/` lines of `aws s3 ls`), derived from the keys."""
    relative = listing["key"].str.slice(len(root))
    nested = relative[relative.str.contains("/", regex=False)]
    return sorted(set(nested.str.split("/", n=1).str[0] + "/"))


def ls_lines(listing: pd.DataFrame, root: str, limit: int = 50) -> list[str]:
    """`aws s3 ls s3://bucket/prefix/`: PRE lines, then the objects directly under the prefix.
    Lines hold the keys as they are: show them through `printable` or `code_block`."""
    lines = [f"{'PRE':>30} {folder}" for folder in subfolders(listing, root)]
    top = listing[listing["depth"].eq(0) & ~listing["is_folder"]]
    for row in top.head(limit).itertuples():
        stamp = row.last_modified.strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp} {row.size:>10} {row.name}")
    if len(top) > limit:
        lines.append(f"... {len(top) - limit} more")
    return lines


def ls_recursive_lines(listing: pd.DataFrame, limit: int = 50) -> list[str]:
    """`aws s3 ls --recursive`: every key with its time and size (keys as they are)."""
    lines = [
        f"{row.last_modified:%Y-%m-%d %H:%M:%S} {row.size:>10} {row.key}"
        for row in listing.head(limit).itertuples()
    ]
    if len(listing) > limit:
        lines.append(f"... {len(listing) - limit} more")
    return lines


def render_ls(listing: pd.DataFrame, root: str, limit: int = 50) -> str:
    """`ls_lines` as text for a terminal or log: one line per entry, controls escaped."""
    return "\n".join(printable(line) for line in ls_lines(listing, root, limit))


def render_ls_recursive(listing: pd.DataFrame, limit: int = 50) -> str:
    return "\n".join(printable(line) for line in ls_recursive_lines(listing, limit))


def iter_pages(client: Any, bucket: str, root: str, *, page_size: int = 1000) -> Iterator[pa.RecordBatch]:
    """The objects under `root` page by page, in the server's order, as each page arrives (one
    request after the other: for a caller that acts on each page while the next is listed).
    Errors as `list_objects` raises them."""
    try:
        with fast_path(client):
            first = list_page(client, Bucket=bucket, Prefix=root, MaxKeys=page_size)
            yield first.rows
            yield from _pages_after(client, bucket, root, page_size, first.token)
    except S3AssetsError:
        raise
    except S3_FAILURES as error:
        raise describe_client_error(error, bucket=bucket, key=root, endpoint=client.meta.endpoint_url) from error
