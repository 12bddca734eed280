"""Settings and state from outside are data (issue 19 §7, leftovers of the outside attack): every
numeric setting has a range, refused by name; the broker URL is one the cluster can use, and an
unreachable one is named (never its password); the download cache keeps no password; folder
markers of any usual shape in the notes folder are no notes; worker names belong to one cluster
folder."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import typing
from pathlib import Path

import pytest
from celery import Celery
from dagster import DagsterInstance
from dagster._core.test_utils import create_run_for_test
from dagster_celery.config import DEFAULT_CONFIG

from s3_assets.dagster_internals import LaunchRunContext, RetryMode
from s3_assets.defs.cluster.executor import _celery_executor_class
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.prefix_lock import LOCKS_FOLDER, NOTES_ROOT, PrefixLocks, is_folder_marker
from s3_assets.lib.source import UCI_TABLES, SourceFetcher, url_digest
from s3_assets.local_cluster import settings as cluster_settings_module
from s3_assets.local_cluster.broker import ClusterError
from s3_assets.local_cluster.cluster import WORKERS_FILE, LocalCluster
from s3_assets.local_cluster.launcher import ClusterRunLauncher
from s3_assets.local_cluster.settings import celery_config, check_broker
from s3_assets.settings import SETTINGS, allowed_range, build_resources, configuration_table, load_cluster_settings
from s3_assets_tests.test_cleanup import keys_in
from s3_assets_tests.test_stale_state_files import private_folder
from s3_assets_tests.test_uci_source import Server
from s3_assets_tests.test_url_secrets import SOURCE_PASSWORD, SOURCE_USER, closed_port, with_user

BROKER_PASSWORD = "brokerpw-7d1c"

# -- 1. every numeric setting has a range ------------------------------------------------------


def _numeric(setting) -> type | None:
    kinds = {arg for arg in typing.get_args(setting.info.annotation) or (setting.info.annotation,)
             if arg in (int, float)}
    return next(iter(kinds), None)


NUMERIC = [setting for setting in SETTINGS if _numeric(setting)]


def _load(env: dict[str, str]) -> None:
    build_resources(env)
    load_cluster_settings(env)


def test_every_numeric_setting_has_a_documented_range():
    assert {s.var for s in NUMERIC} >= {"S3_ASSETS_MAX_ATTEMPTS", "S3_ASSETS_SOURCE_RETRIES",
                                        "S3_ASSETS_READ_TIMEOUT", "S3_ASSETS_CLUSTER_WORKERS"}
    table = configuration_table()
    for setting in NUMERIC:
        allowed = allowed_range(setting.resource, setting.field)
        assert allowed, f"{setting.var} has no range"
        row = next(line for line in table.splitlines() if line.startswith(f"| `{setting.var}` |"))
        assert f"allowed: {allowed}" in row
    docs = (Path(__file__).resolve().parents[1] / "docs" / "CONFIGURATION.md").read_text()
    assert table in docs


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.var)
@pytest.mark.parametrize("side", ["huge", "below"])
def test_a_number_out_of_its_range_is_refused_by_name_with_the_range(setting, side):
    allowed = allowed_range(setting.resource, setting.field)
    assert allowed
    if side == "huge":
        raw = "1" + "0" * 30 if _numeric(setting) is int else "1e300"
    else:
        raw = "-1"
    with pytest.raises(ConfigError) as refused:
        _load({setting.var: raw})
    assert refused.value.fields == (setting.var,)
    assert f"{setting.var}={raw!r}: out of range: use {allowed}" in str(refused.value)


def test_the_retries_that_used_to_run_for_ever_are_refused():
    for var, raw in (("S3_ASSETS_MAX_ATTEMPTS", "1000000"), ("S3_ASSETS_SOURCE_RETRIES", "100000")):
        with pytest.raises(ConfigError, match=re.escape(f"{var}={raw!r}: out of range")):
            build_resources({var: raw})
    resources = build_resources({"S3_ASSETS_MAX_ATTEMPTS": "20", "S3_ASSETS_SOURCE_RETRIES": "10"})
    assert resources["s3_prefix"].s3.max_attempts == 20 and resources["uci_source"].retries == 10


# -- 2. the broker URL (and every other URL setting) is one the project can use -----------------


@pytest.mark.parametrize("url", [
    "nonsense", "redis:/h:6379/0", f"amqp://guest:{BROKER_PASSWORD}@h:5672//", f"http://:{BROKER_PASSWORD}@h:6379/0",
    f"redis://:{BROKER_PASSWORD}@/0", f"redis://:{BROKER_PASSWORD}@h:notaport/0", f"redis://:{BROKER_PASSWORD}@h:70000/0",
    f"redis://:{BROKER_PASSWORD}@h:0/0", f"redis://:{BROKER_PASSWORD}@h:6379/queue",
    f"rediss://:{BROKER_PASSWORD}@h:6380/0",  # TLS without the ssl_cert_reqs Celery's result backend requires
    # query options kombu hands to redis-py unchecked (a TypeError at every cluster run); only ssl_cert_reqs is used
    f"redis://:{BROKER_PASSWORD}@h:6379/0?db=3", "redis://h:6379/0?virtual_host=7",
    f"redis://h:6379/0?password={BROKER_PASSWORD}", "redis://h:6379/0?socket_timeout=abc",
    f"redis://h:6379/0?{BROKER_PASSWORD}", f"rediss://:{BROKER_PASSWORD}@h:6380/0?ssl_cert_reqs=none&db=2",
    # a '\\' ends the host for redis-py/urllib3-style parsers, not for urlsplit
    f"redis://:{BROKER_PASSWORD}\\x@h:6379/0", "redis://h:6379\\@x/0",
])
def test_a_broker_url_the_cluster_cannot_use_is_refused_by_name(url):
    with pytest.raises(ConfigError) as refused:
        load_cluster_settings({"S3_ASSETS_CELERY_BROKER_URL": url})
    assert refused.value.fields == ("S3_ASSETS_CELERY_BROKER_URL",)
    assert BROKER_PASSWORD not in str(refused.value) and "guest" not in str(refused.value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1", f"redis://:{BROKER_PASSWORD}@redis.svc:6379/0",
                                 f"rediss://default:{BROKER_PASSWORD}@cache.aws:6380/1?ssl_cert_reqs=required",
                                 f"redis://:{BROKER_PASSWORD}%5Cx@h:6379/0"])
def test_a_usable_broker_url_is_accepted(url):
    assert load_cluster_settings({"S3_ASSETS_CELERY_BROKER_URL": url}).celery_broker_url == url


@pytest.mark.parametrize(("env", "var"), [
    ({"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://:9000"}, "S3_ASSETS_ENDPOINT_URL"),
    ({"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://h:99999"}, "S3_ASSETS_ENDPOINT_URL"),
    ({"S3_ASSETS_SOURCE": f"ftp://u:{BROKER_PASSWORD}@h/tic-mld/"}, "S3_ASSETS_SOURCE"),
    ({"S3_ASSETS_SOURCE": "https:///tic-mld/"}, "S3_ASSETS_SOURCE"),
    ({"S3_ASSETS_SOURCE": "HTTP://h/tic-mld/"}, "S3_ASSETS_SOURCE"),  # read as a directory by the fetcher
    # a '\\' in the authority: urllib3 ends the host there and quoted the password's first piece as one
    ({"S3_ASSETS_SOURCE": f"http://alice:{BROKER_PASSWORD}\\w7@127.0.0.1:18480/"}, "S3_ASSETS_SOURCE"),
    ({"S3_ASSETS_SOURCE": f"http://{BROKER_PASSWORD}\\@127.0.0.1:18480/"}, "S3_ASSETS_SOURCE"),
    ({"S3_ASSETS_SOURCE": "http://127.0.0.1:18480\\@x/"}, "S3_ASSETS_SOURCE"),  # requests would fetch 127.0.0.1
    ({"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://127.0.0.1:9000\\@x/"}, "S3_ASSETS_ENDPOINT_URL"),
    # a query or fragment: the endpoint cannot resolve, the source would append file names to it
    ({"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": f"http://127.0.0.1:9000/?token={BROKER_PASSWORD}"},
     "S3_ASSETS_ENDPOINT_URL"),
    ({"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": f"http://127.0.0.1:9000#{BROKER_PASSWORD}"},
     "S3_ASSETS_ENDPOINT_URL"),
    ({"S3_ASSETS_SOURCE": f"http://127.0.0.1:18480/?sig={BROKER_PASSWORD}"}, "S3_ASSETS_SOURCE"),
    ({"S3_ASSETS_SOURCE": f"https://h/tic-mld/#{BROKER_PASSWORD}"}, "S3_ASSETS_SOURCE"),
])
def test_other_url_settings_go_through_the_same_check(env, var):
    with pytest.raises(ConfigError) as refused:
        build_resources(env)
    assert refused.value.fields == (var,) and BROKER_PASSWORD not in str(refused.value)


@pytest.mark.parametrize(("var", "raw"), [("AWS_MAX_ATTEMPTS", raw) for raw in ("abc", "1e3", "0", "-3", "100000", "2\u00b3")]
                         + [("AWS_RETRY_MODE", "bogus"), ("AWS_RETRY_MODE", "Standard")])
def test_botocores_own_retry_settings_standing_in_are_checked_by_name(monkeypatch, var, raw):
    monkeypatch.setenv(var, raw)
    with pytest.raises(ConfigError) as refused:
        build_resources({})
    assert refused.value.fields == (var,) and str(refused.value).startswith(f"invalid configuration: {var}: ")
    # S3_ASSETS_* set: botocore's value is not used, so not checked
    build_resources({"S3_ASSETS_MAX_ATTEMPTS": "4", "S3_ASSETS_RETRY_MODE": "standard"})


def test_botocores_own_usable_retry_settings_are_accepted(monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "20")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    build_resources({})


PROFILE_SECRET = "profile-secret-9f3a"


@pytest.fixture
def aws_config_file(tmp_path, monkeypatch):
    """An AWS config file (AWS_CONFIG_FILE) with the given profile values, botocore's AWS_*
    retry variables unset."""
    for var in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))

    def write(profile: str, **values: str) -> None:
        section = "default" if profile == "default" else f"profile {profile}"
        lines = [f"[{section}]", f"aws_secret_access_key = {PROFILE_SECRET}", *(f"{k} = {v}" for k, v in values.items())]
        path.write_text("\n".join(lines) + "\n")
        if profile != "default":
            monkeypatch.setenv("AWS_PROFILE", profile)

    return write


@pytest.mark.parametrize("profile", ["retries", "default"])
@pytest.mark.parametrize(("key", "raw"), [("max_attempts", raw) for raw in ("abc", "1e3", "0", "-3", "100000", "2\u00b3")]
                         + [("retry_mode", "bogus"), ("retry_mode", "Standard")])
def test_the_aws_profiles_retry_settings_standing_in_are_checked_by_name(aws_config_file, monkeypatch, profile, key, raw):
    """The profile's `max_attempts`/`retry_mode` (the profile AWS_PROFILE chooses, in the file
    AWS_CONFIG_FILE names) get the range and choices of AWS_MAX_ATTEMPTS/AWS_RETRY_MODE: refused
    naming the profile and the file's variable, never the profile's other values."""
    aws_config_file(profile, **{key: raw})
    with pytest.raises(ConfigError) as refused:
        build_resources({})
    name = f"{key} in AWS profile {profile!r}"
    assert refused.value.fields == (name,) and str(refused.value).startswith(f"invalid configuration: {name}: ")
    assert "AWS_CONFIG_FILE" in str(refused.value) and PROFILE_SECRET not in str(refused.value)
    # Not used, so not checked: ours set, or botocore's own variable (which wins over the profile)
    ours = {"max_attempts": ("S3_ASSETS_MAX_ATTEMPTS", "4"), "retry_mode": ("S3_ASSETS_RETRY_MODE", "standard")}[key]
    build_resources(dict([ours]))
    monkeypatch.setenv(f"AWS_{key.upper()}", ours[1])
    build_resources({})


def test_a_retry_setting_in_the_credentials_file_is_checked_and_named_as_such(aws_config_file, tmp_path, monkeypatch):
    """botocore merges the credentials file into the profile, so its `max_attempts` stands in
    too: refused, the message naming both files' variables, never the key beside it."""
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[only-here]\naws_secret_access_key = {PROFILE_SECRET}\nmax_attempts = 0\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "only-here")
    with pytest.raises(ConfigError) as refused:
        build_resources({})
    assert refused.value.fields == ("max_attempts in AWS profile 'only-here'",)
    assert "AWS_SHARED_CREDENTIALS_FILE" in str(refused.value) and PROFILE_SECRET not in str(refused.value)


def test_the_aws_profiles_usable_retry_settings_are_accepted(aws_config_file):
    aws_config_file("retries", max_attempts="20", retry_mode="adaptive")
    build_resources({})


# -- 3. an unreachable broker is named, without its password -------------------------------------


@pytest.fixture(params=["closed", "silent"])
def dead_broker(request, monkeypatch) -> typing.Iterator[str]:
    """A broker port nobody listens on, or one that accepts and never answers (another service,
    a proxy): the kernel completes the connections of a listening socket that never accepts, so
    the check's reads wait; only its socket timeout (made short here) ends them."""
    with socket.socket() as listener:
        if request.param == "closed":
            port = closed_port()
        else:
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            port = listener.getsockname()[1]
            monkeypatch.setattr(cluster_settings_module, "BROKER_SOCKET_TIMEOUT", 0.2, raising=False)
        url = f"redis://:{BROKER_PASSWORD}@127.0.0.1:{port}/0"
        monkeypatch.setenv("S3_ASSETS_CELERY_BROKER_URL", url)
        yield url


def _assert_names_the_broker(error: ClusterError, url: str) -> None:
    message = str(error)
    shown = url.replace(f":{BROKER_PASSWORD}@", "")
    assert f"cannot reach the Celery broker {shown} " in message, message
    assert "S3_ASSETS_CELERY_BROKER_URL" in message and BROKER_PASSWORD not in message


def test_the_launcher_names_an_unreachable_broker(dead_broker):
    with DagsterInstance.ephemeral() as instance:
        launcher = ClusterRunLauncher()
        launcher.register_instance(instance)
        run = create_run_for_test(instance, job_name="load_files")
        with pytest.raises(ClusterError) as refused:
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    _assert_names_the_broker(refused.value, dead_broker)


def test_the_executor_names_an_unreachable_broker_before_any_step(dead_broker):
    executor = _celery_executor_class()(retries=RetryMode(RetryMode.DISABLED), broker=dead_broker, backend=dead_broker,
                                        include=[], config_source=dict(DEFAULT_CONFIG, **celery_config()))
    with pytest.raises(ClusterError) as refused:
        executor.execute(None, None)  # refused before the plan is looked at
    _assert_names_the_broker(refused.value, dead_broker)


class CountingRedis:
    """A loopback server that speaks just enough Redis for `check_broker` (`+PONG` to PING,
    `+OK` to anything else) and counts the connections it accepts; `answering = False` makes it
    close each connection at once, which fails the check."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.answering = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.answering:
                threading.Thread(target=self._answer, args=(connection,), daemon=True).start()
            else:
                connection.close()

    @staticmethod
    def _answer(connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as commands:
            while (header := commands.readline()).startswith(b"*"):
                words = []
                for _ in range(int(header[1:])):
                    size = int(commands.readline()[1:])
                    words.append(commands.read(size + 2)[:-2])
                connection.sendall(b"+PONG\r\n" if words[:1] == [b"PING"] else b"+OK\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def counting_broker(monkeypatch):
    server = CountingRedis()
    url = f"redis://:{BROKER_PASSWORD}@127.0.0.1:{server.port}/0"
    monkeypatch.setenv("S3_ASSETS_CELERY_BROKER_URL", url)
    monkeypatch.setattr(cluster_settings_module, "_broker_reached", {})
    yield server, Celery(broker=url, backend=url)
    server.close()


def test_a_broker_reached_is_not_checked_again_for_a_while(counting_broker, monkeypatch):
    """Every launch and every executor start checked the broker (up to ~9 s on a silent one):
    a check that reached it is taken as given by this process for BROKER_CHECK_REUSE_SECONDS."""
    server, app = counting_broker
    check_broker(app)
    assert server.accepted >= 1
    seen = server.accepted
    check_broker(app)
    check_broker(Celery(broker=app.conf.broker_url))  # the executor's app, the launcher's: one broker
    assert server.accepted == seen  # no connection within the window
    monkeypatch.setattr(cluster_settings_module, "BROKER_CHECK_REUSE_SECONDS", 0.0, raising=False)
    check_broker(app)
    assert server.accepted > seen  # after it, a check connects again


def test_a_failed_broker_check_is_not_kept(counting_broker):
    server, app = counting_broker
    server.answering = False
    with pytest.raises(ClusterError) as refused:
        check_broker(app)
    assert BROKER_PASSWORD not in str(refused.value)
    failed = server.accepted
    server.answering = True
    check_broker(app)  # connects again, and now succeeds
    assert server.accepted > failed
    reached = server.accepted
    server.answering = False
    check_broker(app)  # kept: no connection
    assert server.accepted == reached


# -- 4. the download cache keeps no password ---------------------------------------------------


@pytest.fixture
def source_with_user(uci_dir):
    server = Server(uci_dir)
    yield server, with_user(server.url, SOURCE_USER, SOURCE_PASSWORD)
    server.close()


def _cache_bytes(cache: Path) -> bytes:
    return b"\n".join(path.read_bytes() for path in cache.rglob("*") if path.is_file())


def test_no_password_in_the_download_cache_and_the_entry_still_matches(source_with_user, tmp_path):
    server, url = source_with_user
    cache = tmp_path / "cache"
    fetcher = SourceFetcher(base=url, cache_dir=str(cache), retries=0)
    for table in UCI_TABLES:
        fetcher.fetch(table.filename)
    stored = _cache_bytes(cache)
    assert SOURCE_PASSWORD.encode() not in stored and SOURCE_USER.encode() not in stored
    meta = json.loads((cache / "ticdata2000.txt.http.json").read_text())
    assert meta["shown_url"] == server.url + "ticdata2000.txt"
    assert meta["url_sha256"] == url_digest(url + "ticdata2000.txt") and "url" not in meta
    # The same URL again: the entry is recognised (a conditional GET answered 304).
    assert SourceFetcher(base=url, cache_dir=str(cache), retries=0).fetch("ticdata2000.txt").from_cache
    assert server.requests[-1] == ("ticdata2000.txt", 304)
    # The hash is of the URL without its user part: no password to guess from it offline.
    assert url_digest(with_user(server.url, SOURCE_USER, "another-pass") + "ticdata2000.txt") == meta["url_sha256"]
    assert url_digest(url + "ticdata2000.txt") == hashlib.sha256((server.url + "ticdata2000.txt").encode()).hexdigest()
    # Another query (a signed URL's token) is another entry.
    assert url_digest(url + "ticdata2000.txt?sig=2") != meta["url_sha256"]


def test_an_older_cache_entry_with_the_url_is_used_and_rewritten_without_it(source_with_user, tmp_path):
    server, url = source_with_user
    cache = tmp_path / "cache"
    SourceFetcher(base=url, cache_dir=str(cache), retries=0).fetch("ticdata2000.txt")
    path = cache / "ticdata2000.txt.http.json"
    meta = json.loads(path.read_text())
    old = {"url": url + "ticdata2000.txt", **{k: v for k, v in meta.items() if k not in ("shown_url", "url_sha256")}}
    path.write_text(json.dumps(old))  # as an older version wrote it (mode kept: owner-only)
    fetched = SourceFetcher(base=url, cache_dir=str(cache), retries=0).fetch("ticdata2000.txt")
    assert fetched.from_cache and server.requests[-1] == ("ticdata2000.txt", 304)  # still this URL's entry
    assert SOURCE_PASSWORD.encode() not in _cache_bytes(cache)
    rewritten = json.loads(path.read_text())
    assert "url" not in rewritten and rewritten["url_sha256"] == url_digest(url + "ticdata2000.txt")
    assert rewritten["sha256"] == meta["sha256"]


# -- 5. folder markers of any usual shape in the notes folder ------------------------------------

MARKERS = (NOTES_ROOT + "_$folder$", NOTES_ROOT + "made by hand_$folder$", NOTES_ROOT + "run.120.x_$folder$",
           NOTES_ROOT + "sub/", NOTES_ROOT + "sub/_$folder$", LOCKS_FOLDER.rstrip("/") + "_$folder$")


def test_one_predicate_tells_folder_markers_from_notes():
    assert all(is_folder_marker(key) for key in (*MARKERS, NOTES_ROOT, LOCKS_FOLDER))
    assert not is_folder_marker(NOTES_ROOT + "run.120.abc.0123456789abcdef.@")


# s3fs-fuse's directory objects: zero bytes, named like the folder (no `/`); a note always has a body
S3FS_MARKERS = {NOTES_ROOT + "dir": "application/x-directory", NOTES_ROOT + "sub/dir": "httpd/unix-directory",
                NOTES_ROOT + "run.120.x": "application/octet-stream"}


def test_hadoop_folder_markers_in_the_notes_folder_are_no_notes(s3, bucket, make_location):
    for marker in MARKERS:
        s3.put_object(Bucket=bucket, Key=marker, Body=b"")
    for marker, content_type in S3FS_MARKERS.items():
        s3.put_object(Bucket=bucket, Key=marker, Body=b"", ContentType=content_type)
    location = make_location(bucket)
    locks = PrefixLocks(location.connect(), bucket)
    locks.hold_for_run("a-run", location.written_roots(), what="t").release()
    with locks.cleanup("a-cleanup", ["elsewhere/"], what="t"):
        pass
    # Left as they were: neither read as notes nor swept.
    assert {key for key in keys_in(s3, bucket) if key.startswith(LOCKS_FOLDER.rstrip("/"))} == {*MARKERS, *S3FS_MARKERS}


# -- 6. worker names belong to one cluster folder ----------------------------------------------


READY_THEN_SLEEP = "import time\nprint('ready', flush=True)\ntime.sleep(600)"


@pytest.fixture
def worker_named():
    started = []

    def start(name: str) -> int:
        process = subprocess.Popen([sys.executable, "-c", READY_THEN_SLEEP, "celery", "-n", name],
                                   stdout=subprocess.PIPE, text=True, start_new_session=True)
        started.append(process)
        # Its command line is final once it runs its code (right after Popen, /proc may show none yet).
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process.pid

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_worker_names_differ_between_cluster_folders(tmp_path):
    one = LocalCluster(private_folder(tmp_path, "one"), workers=2)
    two = LocalCluster(private_folder(tmp_path, "two"), workers=2)
    assert not set(one.node_names()) & set(two.node_names())
    assert one.node_names() == LocalCluster(tmp_path / "one", workers=2).node_names()  # stable for a folder


def test_an_older_workers_file_matches_only_this_folders_workers(tmp_path, worker_named):
    """An older `workers.json` (bare pids, no start time) is matched by command line: a pid that
    now names another folder's worker is not this folder's."""
    one = LocalCluster(private_folder(tmp_path, "one"), workers=1)
    two = LocalCluster(private_folder(tmp_path, "two"), workers=1)
    theirs = worker_named(two.node_names()[0])
    (one.directory / WORKERS_FILE).write_text(json.dumps({one.node_names()[0]: theirs}))
    assert one._worker_pids() == {}  # noqa: SLF001 - what status and stop act on
    # an older version's name (the same in every folder) is no name of this folder's either
    older = worker_named("s3-assets-1@host")
    (one.directory / WORKERS_FILE).write_text(json.dumps({"s3-assets-1@host": older}))
    assert one._worker_pids() == {}  # noqa: SLF001
    ours = worker_named(one.node_names()[0])
    (one.directory / WORKERS_FILE).write_text(json.dumps({one.node_names()[0]: ours}))
    assert one._worker_pids() == {one.node_names()[0]: ours}  # noqa: SLF001 - its own worker still is
