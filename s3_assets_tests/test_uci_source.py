"""Where the UCI files come from (local directory, HTTP on loopback, offline fallback), and
how bad content is refused with the file and line named."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3_assets.defs.resources import UciSource
from s3_assets.lib.source import UCI_TABLES, BadInputError, SourceError, SourceFetcher, read_uci_table

TRAIN = UCI_TABLES[0]
DICTIONARY = UCI_TABLES[3]


class Server:
    """A loopback HTTP server over a folder, counting requests and honouring If-None-Match.

    Each request is recorded before its response is sent, so a client that has its answer
    always finds the request in `requests` (recording after the response raced the test)."""

    def __init__(self, folder: Path, html: bool = False):
        self.requests: list[tuple[str, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                path = folder / name
                if html:
                    body = b"<!DOCTYPE html><html><body>Maintenance</body></html>"
                    outer.requests.append((name, 200))
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if not path.is_file():
                    outer.requests.append((name, 404))
                    self.send_error(404)
                    return
                etag = f'"{path.stat().st_mtime_ns}"'
                if self.headers.get("If-None-Match") == etag:
                    outer.requests.append((name, 304))
                    self.send_response(304)
                    self.end_headers()
                    return
                body = path.read_bytes()
                outer.requests.append((name, 200))
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tic-mld/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_source(uci_dir) -> Iterator[Server]:
    server = Server(uci_dir)
    yield server
    server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tic-mld/"


class CountingRefuser:
    """A loopback port that accepts each connection, counts it, and closes it unanswered: a
    source that cannot be reached, with every connection attempt counted. A connection is
    counted before it is closed, so a client that has seen its failure is always counted."""

    def __init__(self):
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/tic-mld/"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def refuser() -> Iterator[CountingRefuser]:
    server = CountingRefuser()
    yield server
    server.close()


def test_local_directory(uci_dir, tmp_path):
    fetched = UciSource(base=str(uci_dir), cache_dir=str(tmp_path)).fetch("ticdata2000.txt")
    assert fetched.content == (uci_dir / "ticdata2000.txt").read_bytes()
    assert fetched.origin == str(uci_dir / "ticdata2000.txt")


def test_http_download_then_conditional_get(http_source, uci_dir, tmp_path):
    source = UciSource(base=http_source.url, cache_dir=str(tmp_path))
    first = source.fetch("ticdata2000.txt")
    second = source.fetch("ticdata2000.txt")
    assert first.content == second.content == (uci_dir / "ticdata2000.txt").read_bytes()
    assert http_source.requests == [("ticdata2000.txt", 200), ("ticdata2000.txt", 304)]
    assert second.from_cache and not first.from_cache


def test_unreachable_source_says_how_to_go_offline(tmp_path):
    source = UciSource(base=closed_port_url(), offline_dir="", cache_dir=str(tmp_path), retries=0, timeout=2)
    with pytest.raises(SourceError, match=r"cannot download http://127\.0\.0\.1:\d+/tic-mld/ticdata2000\.txt.*S3_ASSETS_SOURCE=/path/to/dir"):
        source.fetch("ticdata2000.txt")


def test_unreachable_source_falls_back_to_the_offline_copy(uci_dir, tmp_path):
    source = UciSource(base=closed_port_url(), offline_dir=str(uci_dir), cache_dir=str(tmp_path),
                       retries=0, timeout=2)
    assert source.fetch("tictgts2000.txt").content == (uci_dir / "tictgts2000.txt").read_bytes()


def test_unreachable_source_uses_an_earlier_download(http_source, tmp_path):
    cache = str(tmp_path / "cache")
    UciSource(base=http_source.url, cache_dir=cache).fetch("tictgts2000.txt")
    http_source.close()
    fetched = UciSource(base=http_source.url, cache_dir=cache, retries=0, timeout=2).fetch("tictgts2000.txt")
    assert fetched.from_cache


def test_http_404_names_the_url(http_source, tmp_path):
    source = UciSource(base=http_source.url, cache_dir=str(tmp_path))
    with pytest.raises(SourceError, match=r"/tic-mld/nothing\.txt failed: HTTP 404"):
        source.fetch("nothing.txt")


def test_html_page_instead_of_data_is_refused(uci_dir, tmp_path):
    server = Server(uci_dir, html=True)
    try:
        with pytest.raises(BadInputError, match="answered with an HTML page, not the data file ticdata2000.txt"):
            UciSource(base=server.url, cache_dir=str(tmp_path)).fetch("ticdata2000.txt")
    finally:
        server.close()


def test_missing_local_file_names_the_path(tmp_path):
    with pytest.raises(SourceError, match=r"ticdata2000\.txt does not exist"):
        UciSource(base=str(tmp_path)).fetch("ticdata2000.txt")


ROW = "\t".join(["1"] * 86)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"<html><body>Not found</body></html>", "HTML page"),
    ((ROW + "\r\n" + ROW + "\t1\r\n").encode(), "Expected 86 fields in line 2, saw 87"),
    ((ROW + "\r\n" + "\t".join(["1"] * 40) + "\r\n").encode(), "line 2: fewer than 86 values"),
    ((ROW + "\r\n" + ROW.replace("1", "x", 1) + "\r\n").encode(), r"line 2, column 1: 'x' is not a whole number"),
    ((ROW + "\r\n" + ROW[:-1] + "2.5\r\n").encode(), r"line 2, column 86: '2.5' is not a whole number"),
    ("\t".join(["1"] * 85).encode() + b"\r\n", "expected 86 tab-separated columns, found 85"),
    ((ROW + "\r\n").encode("utf-16"), "NUL bytes"),
    ((ROW + "\r\n").encode() + "caf\u00e9".encode("latin-1"), "line 2: byte 0xe9 is not ASCII"),
])
def test_bad_data_file_names_file_and_line(content, message):
    with pytest.raises(BadInputError, match=message) as raised:
        read_uci_table(content, TRAIN)
    assert "ticdata2000.txt" in str(raised.value)


def test_dictionary_with_tabs_is_refused():
    with pytest.raises(BadInputError, match="dictionary.txt: expected one text column, found 2"):
        read_uci_table(b"DATA DICTIONARY\tX\n1\t2\n", DICTIONARY)


def test_unreachable_source_is_tried_once_for_all_files(refuser, uci_dir, tmp_path):
    source = UciSource(base=refuser.url, offline_dir=str(uci_dir), cache_dir=str(tmp_path), retries=3, timeout=5)
    for table in UCI_TABLES:
        assert source.fetch(table.filename).content == (uci_dir / table.filename).read_bytes()
    assert refuser.connections == 1


def test_the_processes_of_one_run_warn_once(refuser, uci_dir, tmp_path):
    """A multiprocess run has a fetcher per step process: the first fallback of the run warns,
    every later one (in this process or another of the same run) does not; a new run warns again."""
    def fetcher(run_id):
        log = RecordingLog()
        return SourceFetcher(base=refuser.url, offline_dir=str(uci_dir), cache_dir=str(tmp_path), retries=0,
                             timeout=5, log=log, run_id=run_id), log

    logs = []
    for table in UCI_TABLES:  # one process per raw step, as the multiprocess executor runs them
        process, log = fetcher("3f0e8d52-run-one")
        assert process.fetch(table.filename).content == (uci_dir / table.filename).read_bytes()
        logs.append(log)
    assert [len(log.warnings) for log in logs] == [1, 0, 0, 0]
    assert all(len(log.debugs) == 1 for log in logs[1:])
    again, log = fetcher("9a41c7e0-run-two")
    again.fetch(UCI_TABLES[0].filename)
    assert len(log.warnings) == 1


class RecordingLog:
    def __init__(self):
        self.warnings: list[str] = []
        self.debugs: list[str] = []

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)

    def debug(self, msg: str) -> None:
        self.debugs.append(msg)


def run_graph_offline(refuser, uci_dir, tmp_path, location):
    from dagster import DagsterInstance, materialize

    from s3_assets.defs import ASSETS, CHECKS
    from s3_assets_tests.conftest import graph_resources

    resources = graph_resources(location, uci_dir, tmp_path / "cache")
    resources["uci_source"] = UciSource(base=refuser.url, offline_dir=str(uci_dir), cache_dir=str(tmp_path / "cache"),
                                        retries=3, timeout=5)
    instance = DagsterInstance.ephemeral()
    result = materialize([*ASSETS, *CHECKS], resources=resources, instance=instance)
    return result, instance.all_logs(result.run_id)


def test_offline_run_probes_once_and_says_so_in_the_event_log(refuser, uci_dir, tmp_path, bucket, make_location):
    location = make_location(bucket)
    result, records = run_graph_offline(refuser, uci_dir, tmp_path, location)
    assert result.success
    # One connection attempt for the whole graph, instead of 1 + retries per file: offline,
    # the graph costs what the local source costs (plus one refused connection).
    assert refuser.connections == 1
    # One warning for the run, saying where the files come from instead; each raw table's
    # metadata names its file's origin.
    warnings = [r.user_message for r in records if r.level >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"cannot reach the UCI source {refuser.url}" in warnings[0] and "the offline copy in" in warnings[0]
    for table in UCI_TABLES:
        [materialization] = result.asset_materializations_for_node(table.asset)
        assert materialization.metadata["source"].value == str(uci_dir / table.filename)
    # Every run decides afresh: the network may be back.
    second, _ = run_graph_offline(refuser, uci_dir, tmp_path, location)
    assert second.success and refuser.connections == 2


def test_source_timeout_and_retries_are_settings():
    from s3_assets.settings import build_resources

    source = build_resources({"S3_ASSETS_SOURCE_TIMEOUT": "2.5", "S3_ASSETS_SOURCE_RETRIES": "0"})["uci_source"]
    assert (source.timeout, source.retries) == (2.5, 0)
    fetcher = source._new_fetcher()
    assert (fetcher.timeout, fetcher.retries) == (2.5, 0)


@pytest.mark.parametrize(("env", "message"), [
    ({"S3_ASSETS_SOURCE_TIMEOUT": "0"}, "S3_ASSETS_SOURCE_TIMEOUT='0'"),
    ({"S3_ASSETS_SOURCE_TIMEOUT": "soon"}, "S3_ASSETS_SOURCE_TIMEOUT='soon'"),
    ({"S3_ASSETS_SOURCE_RETRIES": "-1"}, "S3_ASSETS_SOURCE_RETRIES='-1'"),
    ({"S3_ASSETS_SOURCE_RETRIES": "many"}, "S3_ASSETS_SOURCE_RETRIES='many'"),
])
def test_bad_source_settings_name_the_variable(env, message):
    from s3_assets.lib.errors import ConfigError
    from s3_assets.settings import build_resources

    with pytest.raises(ConfigError, match=re.escape(message)):
        build_resources(env)


# -- the download cache is state from outside (S3_ASSETS_CACHE_DIR): issue 19 §7, attack item 3 --
def flipped_caravan(content: bytes) -> bytes:
    """The training file with its last column (CARAVAN) flipped: still a valid table."""
    lines = content.decode().split("\r\n")
    return "\r\n".join(line.rsplit("\t", 1)[0] + "\t" + str(1 - int(line.rsplit("\t", 1)[1])) if line else line
                       for line in lines).encode()


@pytest.mark.parametrize("kind", ["world_writable", "group_writable", "symlink"])
def test_a_cache_folder_others_may_write_into_is_refused(http_source, tmp_path, kind):
    """Like S3_ASSETS_LOCAL_DIR and S3_ASSETS_CLUSTER_DIR: a cache folder the project did not
    create, that others may write into (1777, 0770) or that is a symlink, is refused by name,
    never chmodded, and nothing is written into it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod({"world_writable": 0o1777, "group_writable": 0o770, "symlink": 0o700}[kind])
    cache = shared
    if kind == "symlink":
        cache = tmp_path / "link"
        cache.symlink_to(shared)
    from s3_assets.lib.local_process import UnsafeDirectoryError

    with pytest.raises(UnsafeDirectoryError, match=re.escape(f"refusing the UCI download cache (S3_ASSETS_CACHE_DIR) {cache}")):
        UciSource(base=http_source.url, cache_dir=str(cache)).fetch("tictgts2000.txt")
    assert list(shared.iterdir()) == []
    assert shared.stat().st_mode & 0o7777 == {"world_writable": 0o1777, "group_writable": 0o770, "symlink": 0o700}[kind]


def test_a_new_cache_folder_is_created_owner_only(http_source, tmp_path):
    cache = tmp_path / "new" / "cache"
    UciSource(base=http_source.url, cache_dir=str(cache)).fetch("tictgts2000.txt")
    assert cache.stat().st_mode & 0o777 == 0o700 and (cache / ".s3-assets-created").is_file()


@pytest.mark.parametrize("name", ["dictionary.txt", "dictionary.txt.http.json"])
def test_a_symlink_planted_in_the_cache_is_replaced_not_followed(http_source, uci_dir, tmp_path, name):
    """A download replaces the cache entry itself: a symlink planted in its place (to a file the
    user may write) is replaced by the file, its target left as it was."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (cache / name).symlink_to(victim)
    fetched = UciSource(base=http_source.url, cache_dir=str(cache)).fetch("dictionary.txt")
    assert fetched.content == (uci_dir / "dictionary.txt").read_bytes()
    assert victim.read_text() == "precious\n"
    assert not (cache / name).is_symlink() and (cache / "dictionary.txt").read_bytes() == fetched.content


def test_a_symlinked_fallback_notes_folder_is_never_emptied(refuser, uci_dir, tmp_path):
    """`<cache>/.fallback-warned` planted as a symlink to another folder: an offline run warns
    and removes nothing there (its old-note cleanup removed every file older than a day)."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    victims = tmp_path / "victims"
    victims.mkdir()
    for index in range(3):
        old = victims / f"old-{index}.txt"
        old.write_text("keep me\n")
        os.utime(old, (time.time() - 3 * 86400,) * 2)
    (cache / ".fallback-warned").symlink_to(victims)
    log = RecordingLog()
    fetcher = SourceFetcher(base=refuser.url, offline_dir=str(uci_dir), cache_dir=str(cache), retries=0, timeout=5,
                            log=log, run_id="5d1c0b7e-offline")
    assert fetcher.fetch("tictgts2000.txt").content == (uci_dir / "tictgts2000.txt").read_bytes()
    assert sorted(p.name for p in victims.iterdir()) == ["old-0.txt", "old-1.txt", "old-2.txt"]
    assert len(log.warnings) == 1


def test_old_fallback_notes_are_removed_but_nothing_else(refuser, uci_dir, tmp_path):
    """Inside the notes folder only regular files older than a day go: a symlink there (to an
    old file elsewhere) is left, as is its target."""
    cache = tmp_path / "cache"
    notes = cache / ".fallback-warned"
    notes.mkdir(parents=True, mode=0o700)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    os.utime(outside, (time.time() - 3 * 86400,) * 2)
    (notes / "link").symlink_to(outside)
    stale = notes / "0a0a0a0a-old-run"
    stale.write_text("")
    os.utime(stale, (time.time() - 3 * 86400,) * 2)
    fetcher = SourceFetcher(base=refuser.url, offline_dir=str(uci_dir), cache_dir=str(cache), retries=0, timeout=5,
                            log=RecordingLog(), run_id="5d1c0b7e-offline")
    fetcher.fetch("tictgts2000.txt")
    assert sorted(p.name for p in notes.iterdir()) == ["5d1c0b7e-offline", "link"]
    assert outside.read_text() == "keep me\n"


def test_a_changed_cached_body_is_never_used_after_304(uci_dir, tmp_path):
    """The cached body's SHA-256 is recorded at download and checked before the body is used:
    a body changed in the cache (CARAVAN flipped, its .http.json kept) is removed and the file
    downloaded again unconditionally, with a warning naming it. Before, the server's 304 made
    the run use the tampered table."""
    server = Server(uci_dir)
    try:
        cache = tmp_path / "cache"
        good = UciSource(base=server.url, cache_dir=str(cache)).fetch("ticdata2000.txt")
        assert json.loads((cache / "ticdata2000.txt.http.json").read_text())["sha256"] == \
            hashlib.sha256(good.content).hexdigest()
        (cache / "ticdata2000.txt").write_bytes(flipped_caravan(good.content))
        log = RecordingLog()
        fetched = SourceFetcher(base=server.url, cache_dir=str(cache), log=log).fetch("ticdata2000.txt")
        assert fetched.content == good.content and not fetched.from_cache
        assert server.requests[-1] == ("ticdata2000.txt", 200)  # unconditional: not a 304
        assert len(log.warnings) == 1 and str(cache / "ticdata2000.txt") in log.warnings[0]
        assert "changed since it was downloaded" in log.warnings[0]
        assert (cache / "ticdata2000.txt").read_bytes() == good.content
        # unchanged, the cache is used after a 304 as before
        again = SourceFetcher(base=server.url, cache_dir=str(cache)).fetch("ticdata2000.txt")
        assert again.from_cache and again.content == good.content and server.requests[-1] == ("ticdata2000.txt", 304)
    finally:
        server.close()


def test_a_changed_cached_body_is_refused_offline(uci_dir, tmp_path):
    """Offline, a cached body that fails its SHA-256 is refused naming the file (and removed),
    never used, even with an offline copy configured."""
    server = Server(uci_dir)
    cache = tmp_path / "cache"
    try:
        good = UciSource(base=server.url, cache_dir=str(cache)).fetch("ticdata2000.txt")
    finally:
        server.close()
    truncated = b"\r\n".join(good.content.split(b"\r\n")[:3000]) + b"\r\n"
    (cache / "ticdata2000.txt").write_bytes(truncated)
    offline = SourceFetcher(base=server.url, offline_dir=str(uci_dir), cache_dir=str(cache), retries=0, timeout=2)
    with pytest.raises(SourceError, match=re.escape(f"the cached {cache / 'ticdata2000.txt'} has SHA-256 ")) as raised:
        offline.fetch("ticdata2000.txt")
    assert "changed since it was downloaded" in str(raised.value)
    assert not (cache / "ticdata2000.txt").exists() and not (cache / "ticdata2000.txt.http.json").exists()
