"""Loading the mapped CSV files from S3 into DataFrames.

Each file up to `STREAM_FROM` bytes costs one request: a botocore GET, whose answer carries
the size (checked against the limit before the body is read) and the body, which arrow parses
from memory without holding the GIL, so many small files load in parallel from Python threads.
Bigger files go through `pyarrow.fs.S3FileSystem` (the AWS SDK for C++): a HEAD, then 16 MiB
ranged GETs parsed block by block. Its options are derived from the boto3 client the project
already configured and what it was made from (`ClientOrigin`: endpoint, region, credentials,
addressing style, proxy, CA bundle, timeouts, retries), through botocore's public API only:
`arrow_options`; the filesystem, and its connection pool, is made once per process and set of
options (`arrow_filesystem`). Without an origin, or with a client setting that arrow cannot
carry (`verify=False`, proxy client certificates, a request parameter added by a hook such as
ExpectedBucketOwner), big files go through botocore too, never around the setting.

Memory follows the data: a big body is parsed from the stream (never held whole); a big file's
integer columns are narrowed block by block, so the wide int64 table never exists whole; and
the Arrow table is handed to pandas with `self_destruct`, which frees each column as it is
converted. Loading a file of S bytes raises peak memory by at most about `PEAK_FACTOR` x S
(2.2 x measured for 100 MB). Files above `BIG_FILE` bytes load one at a time for that reason.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import io
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.fs as pa_fs  # before the atexit hook below: see _drop_filesystems

from s3_assets.lib.errors import S3_FAILURES, S3AssetsError, describe_client_error
from s3_assets.lib.text import printable, shown_url, without_url_secrets

PEAK_FACTOR = 2.5  # peak memory of one load / the file's size (measured: docs/BENCHMARKS.md)
BIG_FILE = 64 * 1024**2  # larger files load one at a time
STREAM_FROM = 8 * 1024**2  # larger files are parsed block by block, 16 MiB (one GET) each
BIG_BLOCK = 16 * 1024**2
GZIP_MAGIC = b"\x1f\x8b"
# S3's public regional endpoints, which arrow reaches by region alone; any other AWS host (VPC
# interface endpoints `vpce-…`, access points, FIPS) goes through botocore, never around it.
AWS_HOST = re.compile(r"^s3([.-][a-z0-9-]+)?\.amazonaws\.com(\.cn)?$")
OTHER_AWS_HOST = re.compile(r"\.amazonaws\.com(\.cn)?$")


class LoadError(S3AssetsError, RuntimeError):
    """A file could not be loaded; the message names its key and, for bad content, the line."""


# -- how to reach S3: the client's settings as arrow options --------------------------------
@dataclass(frozen=True)
class ClientOrigin:
    """What a boto3 client was made from, which botocore keeps only in private attributes: the
    botocore session (its credential provider chain and config variables such as `ca_bundle`)
    and the `verify` passed to `client()` (None: botocore's default)."""

    session: Any  # botocore.session.Session
    verify: bool | str | None = None

    @classmethod
    def with_keys(cls, access_key: str, secret_key: str, token: str | None = None,
                  verify: bool | str | None = None) -> ClientOrigin:
        """For a client made with explicit keys (the embedded S3, tests)."""
        import botocore.session

        session = botocore.session.Session()
        session.set_credentials(access_key, secret_key, token)
        return cls(session, verify)

    def resolved_verify(self) -> bool | str:
        """botocore's order: `verify` given to the client, the `ca_bundle` config variable
        (AWS_CA_BUNDLE, the profile), REQUESTS_CA_BUNDLE, else the default bundle."""
        if self.verify is not None:
            return self.verify
        bundle = self.session.get_config_variable("ca_bundle")
        if bundle is not None:
            return str(bundle)
        return os.environ.get("REQUESTS_CA_BUNDLE") or True


def arrow_options(client: Any, origin: ClientOrigin | None) -> dict[str, Any] | None:
    """`pyarrow.fs.S3FileSystem` keyword arguments that reach S3 as `client` does, or None
    when there is no origin or the client has a setting arrow cannot carry (then botocore
    does the GETs).

    Public botocore only: the client's `meta.config` (proxies, timeouts, retries, signature
    version), proxies from HTTP(S)_PROXY/NO_PROXY as botocore reads them when `proxies` is not
    configured, the CA bundle as botocore resolves it, the credentials from the origin's
    provider chain (session token included; refreshed credentials are read at each call).
    """
    import botocore
    from botocore.httpsession import ProxyConfiguration, get_cert_path
    from botocore.utils import get_environ_proxies

    if origin is None:
        return None
    config = client.meta.config
    if getattr(config, "proxies_config", None) or config.client_cert:
        return None  # proxy CA / client certificates: no arrow option for them
    verify = origin.resolved_verify()
    if verify is False:
        return None  # arrow always verifies TLS
    url = client.meta.endpoint_url
    endpoint = urlsplit(url)
    options: dict[str, Any] = {"region": client.meta.region_name or "us-east-1", "scheme": endpoint.scheme}
    host = endpoint.hostname or ""
    if not AWS_HOST.search(host):
        if OTHER_AWS_HOST.search(host):
            return None
        options["endpoint_override"] = endpoint.netloc.rpartition("@")[2]  # arrow takes no user part
    elif config.use_fips_endpoint or config.use_dualstack_endpoint or (config.s3 or {}).get("use_accelerate_endpoint"):
        return None
    if (config.s3 or {}).get("addressing_style") == "virtual":
        options["force_virtual_addressing"] = True
    if endpoint.scheme == "https":
        options["tls_ca_file_path"] = get_cert_path(cast(Any, verify))  # a bundle path or True
    proxies = config.proxies if config.proxies is not None else get_environ_proxies(url)
    proxy = ProxyConfiguration(proxies=proxies).proxy_url_for(url)
    if proxy:
        options["proxy_options"] = proxy
    if config.signature_version == botocore.UNSIGNED:
        options["anonymous"] = True
    else:
        credentials = origin.session.get_credentials()
        if credentials is None:
            return None  # let botocore raise its NoCredentials error
        frozen = credentials.get_frozen_credentials()
        options.update(access_key=frozen.access_key, secret_key=frozen.secret_key,
                       session_token=frozen.token or None)
    options["connect_timeout"] = float(config.connect_timeout)
    options["request_timeout"] = float(config.read_timeout)
    attempts = (config.retries or {}).get("total_max_attempts") or (config.retries or {}).get("max_attempts", 2) + 1
    options["retry_strategy"] = ("standard", int(attempts))
    return options


_filesystems: OrderedDict[bytes, Any] = OrderedDict()  # digest of the options -> filesystem
_filesystems_lock = threading.Lock()
_CACHE_SALT = os.urandom(16)  # the cache's keys are keyed digests: no secret, nothing to guess offline
FILESYSTEMS_KEPT = 4  # rotated credentials make new options; the oldest filesystems go


def arrow_filesystem(options: dict[str, Any], workers: int) -> Any:
    """One `S3FileSystem` (and so one connection pool) per process and set of options: a new
    one per call costs a TLS/TCP connection per thread and the SDK's set-up each time.

    Keyed by an HMAC of the options with a per-process random key, so that the cache holds no
    credential in a key (the filesystem object itself is never shown or pickled here)."""
    if pa.io_thread_count() < workers:  # arrow sizes its S3 connection pool by this
        pa.set_io_thread_count(workers)
    digest = hmac.new(_CACHE_SALT, repr(sorted(options.items())).encode(), hashlib.sha256).digest()
    with _filesystems_lock:
        filesystem = _filesystems.get(digest)
        if filesystem is not None:
            _filesystems.move_to_end(digest)
            return filesystem
        kwargs = dict(options)
        _, attempts = kwargs.pop("retry_strategy")
        filesystem = pa_fs.S3FileSystem(**kwargs, retry_strategy=pa_fs.AwsStandardS3RetryStrategy(max_attempts=attempts))
        _filesystems[digest] = filesystem
        while len(_filesystems) > FILESYSTEMS_KEPT:
            _filesystems.popitem(last=False)
        return filesystem


@atexit.register
def _drop_filesystems() -> None:
    """Before pyarrow's own exit handler finalizes S3: atexit runs the last registered first,
    and pyarrow.fs registers its handler when imported, above."""
    with _filesystems_lock:
        _filesystems.clear()


# -- parsing ------------------------------------------------------------------------------
def read_options(size: int | None, serial: bool = False) -> pa_csv.ReadOptions:
    """Big files: 16 MiB blocks (one GET each) read ahead on a thread; small ones: one serial
    read, which also puts line numbers into arrow's errors."""
    if size is not None and size > STREAM_FROM and not serial:
        return pa_csv.ReadOptions(use_threads=True, block_size=BIG_BLOCK)
    return pa_csv.ReadOptions(use_threads=False, block_size=max(1 << 20, min((size or 0) + 1, BIG_BLOCK)))


ROW = re.compile(r"Row #(\d+)")


def parse_stream(stream: Any, key: str, size: int | None, serial: bool = False) -> pd.DataFrame:
    """CSV from a stream to a DataFrame; content errors name the key and the line.

    A big file is read block by block and each block's integer columns are narrowed at once,
    so the wide int64 table never exists whole; a small one is read in one go."""
    options = read_options(size, serial)
    try:
        if options.use_threads:
            table = read_in_batches(stream, key, options)
        else:
            table = pa_csv.read_csv(stream, read_options=options)
            check_table(table, key)
            table = compact_integers(table)
    except pa.ArrowInvalid as error:
        message = ROW.sub(lambda m: f"line {m.group(1)}", str(error))
        if "line " not in message and not options.use_threads:
            message = f"line 1: {message}"  # arrow's errors without a row: empty file, no header
        bad = BadContent(f"s3 object '{printable(key)}' is not a valid CSV: {printable(message)}")
        bad.in_parallel = options.use_threads
        raise bad from None
    return to_frame(table)


def read_in_batches(stream: Any, key: str, options: pa_csv.ReadOptions) -> pa.Table:
    """open_csv block by block; integer columns narrowed per block, then all blocks cast to
    the smallest type that holds the whole column (or kept int64 if it has nulls anywhere).
    A block whose types differ from the first block's raises ArrowInvalid: the caller then
    reads the file serially with read_csv, which widens types as it goes."""
    reader = pa_csv.open_csv(stream, read_options=options)
    schema = reader.schema
    check_names(schema, key)
    blocks: list[list[pa.Array]] = []
    low: dict[int, int] = {}
    high: dict[int, int] = {}
    nulls: set[int] = set()
    for batch in reader:
        columns = list(batch.columns)
        for index, column in enumerate(columns):
            if not pa.types.is_integer(column.type) or not len(column):
                continue
            if column.null_count:
                nulls.add(index)
                continue
            bounds = pc.min_max(column)
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            low[index], high[index] = min(low.get(index, lo), lo), max(high.get(index, hi), hi)
            columns[index] = column.cast(pa.from_numpy_dtype(np.dtype(smallest_integer_dtype(lo, hi))))
        blocks.append(columns)
        del batch, columns
    arrays = []
    for index, field in enumerate(schema):
        final = field.type
        if pa.types.is_integer(final) and index in low and index not in nulls:
            final = pa.from_numpy_dtype(np.dtype(smallest_integer_dtype(low[index], high[index])))
        chunks = []
        for columns in blocks:
            chunks.append(columns[index] if columns[index].type == final else columns[index].cast(final))
            columns[index] = None  # the block's own copy goes as soon as it is cast
        arrays.append(pa.chunked_array(chunks, type=final))
    table = pa.Table.from_arrays(arrays, schema=pa.schema([pa.field(f.name, a.type) for f, a in zip(schema, arrays, strict=True)]))
    check_table(table, key)
    return table


class BadContent(LoadError):
    """The body is there but is not a CSV this loader accepts."""

    in_parallel = False  # arrow's parallel parser reports no line numbers


def check_names(schema: pa.Schema, key: str) -> list[str]:
    try:
        names = schema.names
    except UnicodeDecodeError:
        raise BadContent(f"s3 object '{printable(key)}': line 1 (the header) is not UTF-8 text") from None
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise BadContent(f"s3 object '{printable(key)}': line 1 (the header) names column(s) "
                         f"{', '.join(printable(n) for n in twice)} more than once")
    return names


def check_table(table: pa.Table, key: str) -> None:
    names = check_names(table.schema, key)
    for index, column in enumerate(table.columns):
        if pa.types.is_binary(column.type):
            row = first_invalid_utf8(column)
            raise BadContent(f"s3 object '{printable(key)}': line {row + 2}, column {index + 1} "
                             f"({printable(names[index])}) is not UTF-8 text")


def first_invalid_utf8(column: pa.ChunkedArray) -> int:
    for row, value in enumerate(column.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return 0


def smallest_integer_dtype(low: int, high: int) -> str:
    for dtype in ("uint8", "uint16", "uint32") if low >= 0 else ("int8", "int16", "int32"):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    return "int64"


def compact_integers(table: pa.Table) -> pa.Table:
    """Each integer column in the smallest integer type that holds its values (in Arrow,
    ~20x cheaper than pandas' downcast), one column at a time: the wide column is released
    as soon as its narrow copy exists."""
    for index in range(table.num_columns):
        column = table.column(index)
        if pa.types.is_integer(column.type) and len(column) and column.null_count == 0:
            bounds = pc.min_max(column)
            dtype = smallest_integer_dtype(bounds["min"].as_py(), bounds["max"].as_py())
            if dtype != str(column.type):
                table = table.set_column(index, table.field(index).name, column.cast(pa.from_numpy_dtype(np.dtype(dtype))))
            del column
    return table


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas without a second copy: each Arrow column is freed once converted."""
    return table.to_pandas(self_destruct=True, split_blocks=True)


# -- loading ------------------------------------------------------------------------------
class Fetcher:
    """Gets objects: a file up to `STREAM_FROM` bytes with one botocore GET, a bigger one through
    arrow when the client's settings allow it.

    One request per small object: arrow's Python API opens an S3 object by path only, and arrow
    then sends a HEAD for its size before the first GET (pyarrow 26; `FileInfo` with a size is
    reachable only through dataset scans, which read a file's head twice). botocore's GET
    answers with the size and the body at once, so the size limit is checked before the body
    is read, and the body is parsed by arrow from memory, without the GIL. A big file keeps
    arrow's HEAD: its GETs (one per 16 MiB block) outnumber it, and it is parsed block by block.
    """

    def __init__(self, client: Any, bucket: str, workers: int, botocore_only: bool, origin: ClientOrigin | None):
        self.client, self.bucket, self.workers = client, bucket, workers
        self.options = None if botocore_only else arrow_options(client, origin)

    @property
    def filesystem(self) -> Any:
        return arrow_filesystem(self.options, self.workers) if self.options else None

    def load(self, key: str, size: int | None, max_bytes: int) -> pd.DataFrame:
        if self.options is None or size is None or size <= STREAM_FROM:
            return self._load_botocore(key, size, max_bytes)
        return self._load_big(key, size, max_bytes)

    def _load_big(self, key: str, size: int | None, max_bytes: int) -> pd.DataFrame:
        try:
            return self._load_arrow(key, max_bytes, serial=False)
        except BadContent as error:
            if not error.in_parallel:
                raise
            return self._load_arrow(key, max_bytes, serial=True)  # a big file: again, for the line
        except TransportError:
            # arrow gave up on the connection but S3 answers botocore: the transfer broke, not
            # the object. botocore's retry policy (total_max_attempts, mode) gets the last word.
            return self._load_botocore(key, size, max_bytes, whole=False)

    def _load_arrow(self, key: str, max_bytes: int, serial: bool) -> pd.DataFrame:
        try:
            stream = self.filesystem.open_input_file(f"{self.bucket}/{key}")  # a HEAD: the size now
            with stream:
                size = stream.size()
                check_size(key, size, max_bytes)
                try:
                    return parse_stream(stream, key, size, serial)
                except BadContent:
                    if size >= 2 and stream.read_at(2, 0) == GZIP_MAGIC:
                        raise gzip_error(key) from None
                    raise
        except OSError as error:
            raise self._explain(key, error) from None

    def _get(self, key: str) -> dict[str, Any]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)
        except S3_FAILURES as error:
            raise self._failure(key, error) from error

    def _failure(self, key: str, error: Exception) -> LoadError:
        return LoadError(str(describe_client_error(error, bucket=self.bucket, key=key,
                                                   endpoint=self.client.meta.endpoint_url)))

    def _load_botocore(self, key: str, size: int | None, max_bytes: int, whole: bool = True) -> pd.DataFrame:
        """One GET. A body up to STREAM_FROM bytes is read whole and parsed from memory (a body
        that breaks off is asked for once more); a bigger one goes to arrow, or (no arrow, or
        arrow's transfer failed) is parsed from the stream."""
        for attempt in (1, 2):
            response = self._get(key)
            length = response["ContentLength"]
            body = response["Body"]
            try:
                check_size(key, length, max_bytes)
                if length > STREAM_FROM and (self.options is not None and whole):
                    body.close()  # bigger than the listing said: block by block through arrow
                    return self._load_big(key, length, max_bytes)
                if length > STREAM_FROM or not whole:
                    return self._parse_body(key, body, length)
                data = body.read()
            except S3_FAILURES as error:
                if attempt == 2:
                    raise self._failure(key, error) from error
                continue
            finally:
                body.close()
            if data[:2] == GZIP_MAGIC:
                raise gzip_error(key)
            return parse_stream(pa.BufferReader(data), key, len(data), serial=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse_body(self, key: str, body: Any, length: int) -> pd.DataFrame:
        head = body.read(2)
        if head == GZIP_MAGIC:
            raise gzip_error(key)
        stream = pa.PythonFile(io.BufferedReader(PrefixedBody(head, body), 1 << 20), mode="r")
        return parse_stream(stream, key, length, serial=True)

    def _explain(self, key: str, error: OSError) -> LoadError:
        """arrow's error names no bucket and no code: botocore asks once more and names both."""
        try:
            self.client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-0")["Body"].close()
        except S3_FAILURES as botocore_error:
            return LoadError(str(describe_client_error(botocore_error, bucket=self.bucket, key=key,
                                                       endpoint=self.client.meta.endpoint_url)))
        endpoint = self.client.meta.endpoint_url
        return TransportError(f"reading s3://{self.bucket}/{printable(key)} at {shown_url(endpoint)} "
                              f"failed: {printable(without_url_secrets(str(error), endpoint))}")


class TransportError(LoadError):
    """arrow's transfer broke while S3 itself still answers: worth one more try through botocore."""


class PrefixedBody(io.RawIOBase):
    """A botocore body with its first bytes already read (for the gzip check) put back."""

    def __init__(self, head: bytes, body: Any):
        super().__init__()
        self.head, self.body = head, body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data, self.head = (self.head[: len(view)], self.head[len(view):]) if self.head else \
            (self.body.read(len(view)), b"")
        view[: len(data)] = data
        return len(data)


def gzip_error(key: str) -> LoadError:
    return BadContent(f"s3 object '{printable(key)}': line 1 starts with the gzip signature (1f 8b): the body is "
                      "gzip-compressed, not CSV text. Upload it uncompressed, or keep .gz files out of the file map")


def check_size(key: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise LoadError(
            f"s3 object '{printable(key)}' is {size:,} bytes, over the in-memory limit of {max_bytes:,} (max_bytes; "
            f"loading needs up to {PEAK_FACTOR} x the file's size in memory). Raise the limit or exclude the file"
        )


def load_frames(
    client: Any,
    bucket: str,
    file_map: dict[str, str],
    sizes: dict[str, int],
    *,
    max_workers: int = 32,
    max_bytes: int = 2 * 1024**3,
    botocore_only: bool = False,
    origin: ClientOrigin | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, pd.DataFrame]:
    """name -> DataFrame for every file in the map, or an error naming the key that failed.

    `sizes` (from the listing) refuses files over `max_bytes` before any download; each size
    is checked again when the file is opened. `botocore_only`: the requests need something
    only the boto3 client adds (e.g. ExpectedBucketOwner from a hook). `origin`: what `client`
    was made from, for arrow (`arrow_options`); without it botocore loads. Nothing half-loaded is
    returned: the first failure cancels the rest and is raised.
    """
    too_big = {key: sizes[key] for key in file_map.values() if sizes.get(key, 0) > max_bytes}
    if too_big:
        key, size = next(iter(too_big.items()))
        check_size(key, size, max_bytes)
    total = len(file_map)
    step = max(1, total // 10)
    done = 0
    loaded_bytes = 0
    lock = threading.Lock()
    one_big_at_a_time = threading.Semaphore(1)
    fetcher = Fetcher(client, bucket, max_workers, botocore_only, origin)

    def load_one(name: str, key: str) -> tuple[str, pd.DataFrame]:
        nonlocal done, loaded_bytes
        size = sizes.get(key)
        if size is not None and size > BIG_FILE:
            with one_big_at_a_time:
                frame = fetcher.load(key, size, max_bytes)
        else:
            frame = fetcher.load(key, size, max_bytes)
        with lock:
            done += 1
            loaded_bytes += size or 0
            if done == total or done % step == 0:  # about ten progress lines, whatever the count
                progress(f"{done}/{total} files" + (f", {loaded_bytes / 1e6:.1f} MB" if sizes else ""))
        return name, frame

    frames: dict[str, pd.DataFrame] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, total or 1))) as pool:
        futures = [pool.submit(load_one, name, key) for name, key in file_map.items()]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            error = future.exception() if future.done() and not future.cancelled() else None
            if error is not None:
                raise error
        for future in futures:
            name, frame = future.result()
            frames[name] = frame
    return dict(sorted(frames.items()))
