"""The COIL 2000 files: what they are, where they come from, and how they are read.

Read exactly as the notebook read them (`pd.read_table`, no header; the dictionary as latin-1
with its first line as header) so that `to_csv(index=False)` is byte-identical to the notebook's
S3 copies, but with checks that name the file and line at fault instead of passing bad data on.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from s3_assets.lib.errors import S3AssetsError
from s3_assets.lib.local_process import UnsafeDirectoryError, private_dir
from s3_assets.lib.text import printable, shown_url, without_url_secrets

_log = logging.getLogger(__name__)


class Logger(Protocol):
    """What a fetcher logs to: Python's logger, or a Dagster run's `context.log`."""

    def warning(self, msg: str) -> None: ...

    def debug(self, msg: str) -> None: ...


@dataclass(frozen=True)
class UciTable:
    """One UCI file, the raw-table asset read from it, and its S3 copy."""

    asset: str
    filename: str
    s3_relative: str  # under the prefix
    columns: int  # expected number of columns
    description: str
    is_dictionary: bool = False
    rows: int | None = None  # the published number of rows; a file with another is refused

    @property
    def copy_name(self) -> str:
        """The file map's name for the S3 copy: 'train' for raw/train.csv."""
        return self.s3_relative.rsplit("/", 1)[-1].rsplit(".", 1)[0]


# Row counts as UCI documents them (TicDataDescr.txt: 5822 training, 4000 evaluation records).
UCI_TABLES: tuple[UciTable, ...] = (
    UciTable("train", "ticdata2000.txt", "raw/train.csv", 86, "training set: 85 features and CARAVAN", rows=5822),
    UciTable("test", "ticeval2000.txt", "raw/test.csv", 85, "evaluation set: the 85 features, no target", rows=4000),
    UciTable("ground_truth", "tictgts2000.txt", "raw/gt.csv", 1, "CARAVAN for each evaluation row", rows=4000),
    UciTable("dictionary_text", "dictionary.txt", "raw/metadata/col_info.csv", 1, "data dictionary text", True),
)

HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")


class SourceError(S3AssetsError, RuntimeError):
    """A UCI file could not be fetched; the message says from where and what to do."""


class BadInputError(S3AssetsError, ValueError):
    """A UCI file's content is wrong; the message names the file and the line."""


@dataclass(frozen=True)
class Fetched:
    content: bytes
    origin: str  # URL or path it came from, as it may be shown (`shown_url`: no password)
    from_cache: bool = False


UCI_BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/tic-mld/"


class SourceFetcher:
    """Fetches UCI files from a base URL or a local directory, with a conditional-download
    cache and an offline copy to fall back on.

    Whether the base URL can be reached is decided once per fetcher (one connection attempt,
    `probe`, at the first fetch), not once per file: offline, every file then comes from the
    cache or the offline copy at once instead of each spending the retries again.

    A fallback is one warning per run: the first file that falls back warns, the others say so at
    DEBUG. Given a `run_id`, the processes of one run (a multiprocess or
    Celery executor: a fetcher each) share that warning through a note in the cache directory."""

    def __init__(self, base: str = UCI_BASE_URL, offline_dir: str = "", cache_dir: str = ".s3-assets/cache",
                 timeout: float = 10.0, retries: int = 3, log: Logger | None = None, run_id: str | None = None):
        self.base, self.offline_dir, self.cache_dir = base, offline_dir, cache_dir
        self.timeout, self.retries = timeout, retries
        self.log = log or _log
        self.run_id = run_id
        self._unreachable: str | None = None  # why the base URL cannot be reached
        self._probed = False
        self._warned = False

    def url_of(self, filename: str) -> str:
        """Where `filename` is read from (with the source's credentials: never shown, see `shown_of`)."""
        return self.base.rstrip("/") + "/" + filename if is_url(self.base) else str(Path(self.base) / filename)

    def shown_of(self, filename: str) -> str:
        """Where `filename` is read from, as it may be shown (no user part, query or fragment)."""
        return shown_url(self.url_of(filename))

    def _shown(self, text: str) -> str:
        """A library's message about the source, without its credentials."""
        return without_url_secrets(text, self.base)

    def probe(self) -> str | None:
        """Try the base URL once (no retries; any HTTP answer counts as reachable); the reason
        it cannot be reached, or None. Remembered: later calls do not connect again."""
        if not self._probed and is_url(self.base):
            try:
                with requests.Session() as session:
                    session.head(self.base, timeout=self.timeout, allow_redirects=False).close()
            except requests.RequestException as error:
                self._unreachable = self._shown(_reason(error))
        self._probed = True
        return self._unreachable

    def fetch(self, filename: str, log: Logger | None = None) -> Fetched:
        """The file's bytes from the location, else the cache, else the offline copy."""
        log = log or self.log
        if not is_url(self.base):
            return _read_local(Path(self.base), filename)
        url = self.url_of(filename)
        reason = self.probe()
        if reason is None:
            try:
                return self._download(url, filename, log)
            except requests.RequestException as error:
                reason = self._shown(_reason(error))
        cached, _, problem = self._cached(url, filename)
        if problem:
            raise SourceError(
                f"cannot download {shown_url(url)} ({reason}), and the cached {self._cache_path(filename)} {problem}: it was "
                "removed, not used. Run again once the source can be reached, or point S3_ASSETS_SOURCE at a local "
                f"copy of the UCI files (a directory with {filename})"
            )
        if cached:
            self._fell_back(log, filename, reason, f"the copy downloaded earlier to {self.cache_dir}")
            return cached
        offline = Path(self.offline_dir) if self.offline_dir else None
        if offline and (offline / filename).is_file():
            self._fell_back(log, filename, reason, f"the offline copy in {offline}")
            return _read_local(offline, filename)
        raise SourceError(
            f"cannot download {shown_url(url)} ({reason}). Offline? Point the source at a local copy of the "
            f"UCI files: S3_ASSETS_SOURCE=/path/to/dir (a directory with {filename})"
        )

    def _fell_back(self, log: Logger, filename: str, reason: str, where: str) -> None:
        """The run's one warning for the first file read from a fallback; DEBUG for the others
        (each raw step's own INFO line and metadata say where its file came from)."""
        if not self._warned and self._first_in_run():
            log.warning(f"cannot reach the UCI source {shown_url(self.base)} ({reason}); the UCI files come from the cache "
                        f"or the offline copy for this run, without further attempts ({filename}: {where})")
        else:
            log.debug(f"{filename}: from {where} (the UCI source cannot be reached)")
        self._warned = True

    def _first_in_run(self) -> bool:
        """True unless another process of the same run has already warned (its note exists).
        Notes older than a day are removed (regular files only, never through a symlink);
        without a run id or a usable notes folder, True."""
        if not self.run_id or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.run_id):
            return True
        try:
            with self._cache_folder() as cache:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(FALLBACK_NOTES, 0o700, dir_fd=cache)
                notes = os.open(FALLBACK_NOTES, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=cache)
        except UnsafeDirectoryError:
            raise
        except OSError:  # a symlink (ELOOP), not a folder, not writable: warn rather than never
            return True
        try:
            if os.fstat(notes).st_uid != os.getuid():
                return True
            for old in os.scandir(notes):
                with contextlib.suppress(FileNotFoundError):
                    info = os.stat(old.name, dir_fd=notes, follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime > 86400:
                        os.unlink(old.name, dir_fd=notes)
            os.close(os.open(self.run_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=notes))
        except FileExistsError:
            return False
        except OSError:
            return True
        finally:
            os.close(notes)
        return True

    @contextlib.contextmanager
    def _cache_folder(self) -> Iterator[int]:
        """The cache folder, opened (a descriptor for *at calls), after `private_dir` made sure it
        is ours: created owner-only with a marker, else refused if it is a symlink, another user's,
        or others may write into it (they could plant a file or a symlink for a run to use)."""
        folder = private_dir(Path(self.cache_dir), "the UCI download cache (S3_ASSETS_CACHE_DIR)")
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            yield fd
        finally:
            os.close(fd)

    def _cache_path(self, filename: str) -> Path:
        return Path(self.cache_dir) / filename

    def _cached(self, url: str, filename: str) -> tuple[Fetched | None, dict, str | None]:
        """The cached copy of `url` if its body still has the SHA-256 recorded at download, and
        its metadata; else None and, for an entry that fails that check, why (the entry is then
        removed, so it is never used, nor offered to the server as a conditional GET)."""
        try:
            with self._cache_folder() as cache:
                meta = json.loads(_read_regular(cache, f"{filename}.http.json"))
                if not isinstance(meta, dict):
                    return None, {}, None
                if "url" in meta:  # an older version's, with the URL's password: rewritten without it
                    meta = _without_secret_url(meta)
                    _replace_regular(cache, f"{filename}.http.json", json.dumps(meta).encode())
                if meta.get("url_sha256") != url_digest(url):
                    return None, {}, None
                body = _read_regular(cache, filename)
                recorded = meta.get("sha256")
                if not isinstance(recorded, str):  # written by an older version: unverifiable, not used
                    return None, {}, None
                actual = hashlib.sha256(body).hexdigest()
                if recorded == actual:
                    return Fetched(body, shown_url(url), from_cache=True), meta, None
                problem = (f"has SHA-256 {actual}, not the {printable(recorded[:64])} recorded at download: "
                           "changed since it was downloaded")
                for name in (filename, f"{filename}.http.json"):
                    _remove_regular(cache, name)
                return None, {}, problem
        except UnsafeDirectoryError:
            raise
        except (OSError, ValueError):
            return None, {}, None

    def _download(self, url: str, filename: str, log: Logger) -> Fetched:
        """GET with retries; a conditional GET (ETag / Last-Modified) when a verified copy is
        cached. Body and metadata (with the body's SHA-256) are written beside each other through
        a temporary file renamed over the old one: never through a symlink."""
        session = requests.Session()
        retry = Retry(total=self.retries, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=("GET",), raise_on_status=False)
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        headers = {}
        cached, meta, problem = self._cached(url, filename)
        if problem:
            log.warning(f"the cached {self._cache_path(filename)} {problem}; it was removed and {filename} is "
                        "downloaded again")
        if cached:
            if meta.get("etag"):
                headers["If-None-Match"] = str(meta["etag"])
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = str(meta["last_modified"])
        with session:
            response = session.get(url, headers=headers, timeout=self.timeout)
        if response.status_code == 304 and cached:
            return cached
        if response.status_code != 200:
            raise SourceError(f"downloading {shown_url(url)} failed: HTTP {response.status_code} "
                              f"{printable(self._shown(str(response.reason)))}")
        content = response.content
        if "html" in response.headers.get("Content-Type", "").lower() or looks_like_html(content):
            raise BadInputError(
                f"{shown_url(url)} answered with an HTML page, not the data file {filename}: check S3_ASSETS_SOURCE"
            )
        with self._cache_folder() as cache:
            _replace_regular(cache, filename, content)
            _replace_regular(cache, f"{filename}.http.json", json.dumps({
                "shown_url": shown_url(url), "url_sha256": url_digest(url), "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
                "sha256": hashlib.sha256(content).hexdigest(),
            }).encode())
        return Fetched(content, shown_url(url))


FALLBACK_NOTES = ".fallback-warned"  # in the cache folder: one note per run that warned


def url_digest(url: str) -> str:
    """What a cache entry keeps of the URL it was downloaded from, to tell whether it belongs to
    the configured one: a SHA-256 of the URL without its user part (`shown_url` is kept beside it
    for people). Never of the password: beside the rest of the URL, a hash of a short password
    is guessed offline. Another password names the same file; another query (a signed URL's
    token) another entry."""
    parts = urlsplit(url)
    return hashlib.sha256(urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).encode()).hexdigest()


def _without_secret_url(meta: dict) -> dict:
    """An older `.http.json` (with `url`, password and all) in the current form: the entry keeps
    its meaning (it still matches the URL it came from) and loses the password."""
    url = meta.pop("url")
    if isinstance(url, str):
        meta.update(shown_url=shown_url(url), url_sha256=url_digest(url))
    else:
        meta.pop("url_sha256", None)
    return meta


def _read_regular(folder: int, name: str) -> bytes:
    """A regular file's bytes in the folder `folder` (a descriptor), never through a symlink."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{name} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def _replace_regular(folder: int, name: str, content: bytes) -> None:
    """Write `name` in `folder` as a new owner-only file renamed over the old entry: a symlink
    planted there is replaced, never followed."""
    temporary = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder)
    replaced = False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        replaced = True
    finally:
        if not replaced:  # a failed write leaves no temporary file behind
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)


def _remove_regular(folder: int, name: str) -> None:
    """Remove `name` from `folder` if it is a regular file (a symlink or folder is left alone)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=folder)


def _reason(error: requests.RequestException) -> str:
    """The cause in a few words ("NameResolutionError: Failed to resolve 'host' (...)"), not
    requests' nested retry message."""
    inner = error.args[0] if error.args and isinstance(error.args[0], BaseException) else error
    inner = getattr(inner, "reason", None) or inner
    text = str(inner)
    if text.startswith(("HTTPConnection(", "HTTPSConnection(")) and "): " in text:
        text = text.split("): ", 1)[1]
    return f"{type(inner).__name__}: {text}"


def is_url(base: str) -> bool:
    return base.startswith(("http://", "https://"))


def _read_local(folder: Path, filename: str) -> Fetched:
    path = folder.expanduser() / filename
    if not path.is_file():
        raise SourceError(f"{shown_url(str(path))} does not exist: S3_ASSETS_SOURCE must be a directory holding {filename}")
    return Fetched(path.read_bytes(), shown_url(str(path)))


def looks_like_html(content: bytes) -> bool:
    return content[:512].lstrip().lower().startswith(HTML_MARKERS)


def read_uci_table(content: bytes, table: UciTable, origin: str = "") -> pd.DataFrame:
    """Parse a UCI file as the notebook did, refusing content that is not what it should be.

    The data files are parsed strictly rather than by `pd.read_table`, whose guesses (floats for
    `1e5` or `2.0`, objects for numbers beyond int64, blank lines skipped, `+3` and ` 3` read as
    3) would pass a changed table on or fail far from the cause. Every refusal is a
    `BadInputError` naming the file and the line.
    """
    name = origin or table.filename
    if not content.strip():
        raise BadInputError(f"{name} is empty")
    if looks_like_html(content):
        raise BadInputError(f"{name} is an HTML page, not the data file {table.filename}")
    if b"\x00" in content:
        line = content[: content.index(b"\x00")].count(b"\n") + 1
        raise BadInputError(f"{name} line {line}: contains NUL bytes: not a text file (UTF-16?)")
    if table.is_dictionary:
        frame = pd.read_table(io.BytesIO(content), encoding="latin-1")
        if frame.shape[1] != 1:
            raise BadInputError(f"{name}: expected one text column, found {frame.shape[1]} (tabs in the text?)")
        return frame
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise BadInputError(f"{name} line {line}: byte {content[error.start]:#x} is not ASCII; the data files are numbers only") from None
    _check_integer_rows(text, table.columns, name)
    # Every line is now `columns` plain int64 numbers: pandas' C parser reads them fast and as
    # the notebook did.
    return pd.read_csv(io.StringIO(text), sep="\t", header=None, dtype=np.int64)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PLAIN_INTEGER = re.compile(r"-?[0-9]+")


def _check_integer_rows(text: str, columns: int, name: str) -> None:
    """Tab-separated whole numbers, `columns` per line, LF or CRLF line ends, blank lines only at
    the end."""
    lines = text.split("\n")
    while lines and not lines[-1].strip("\r"):
        lines.pop()
    fast = re.compile(r"-?[0-9]{1,18}(?:\t-?[0-9]{1,18}){" + str(columns - 1) + r"}\r?")
    for number, line in enumerate(lines, start=1):
        if not fast.fullmatch(line):
            _refuse_line(line, number, columns, name, whole_file=number == 1 and _same_width(lines))


def _same_width(lines: list[str]) -> bool:
    return len({line.count("\t") for line in lines}) == 1


def _refuse_line(line: str, number: int, columns: int, name: str, whole_file: bool) -> None:
    """Raise the BadInputError that says what is wrong with this line (a line of 19-digit
    numbers that still fit int64 is fine and returns)."""
    cells = line.removesuffix("\r").split("\t")
    if not line.strip():
        raise BadInputError(f"{name} line {number}: empty line inside the data (only the end may be blank)")
    if len(cells) != columns:
        if whole_file:
            raise BadInputError(f"{name}: expected {columns} tab-separated columns, found {len(cells)} "
                                f"(every line, from line 1)")
        if len(cells) > columns:
            trailing = " (a trailing tab?)" if cells[-1] == "" else ""
            raise BadInputError(f"{name}: Expected {columns} fields in line {number}, saw {len(cells)}{trailing}")
        raise BadInputError(f"{name} line {number}: fewer than {columns} values ({len(cells)}: a truncated or short row)")
    for position, cell in enumerate(cells, start=1):
        where = f"{name} line {number}, column {position}"
        shown = printable(cell if len(cell) <= 40 else cell[:40] + "...")
        if cell == "":
            raise BadInputError(f"{where}: missing value (two tabs in a row?)")
        if not PLAIN_INTEGER.fullmatch(cell):
            raise BadInputError(f"{where}: '{shown}' is not a whole number (digits only, an optional '-')")
        if not INT64_MIN <= int(cell) <= INT64_MAX:
            raise BadInputError(f"{where}: '{shown}' does not fit a 64-bit integer")
