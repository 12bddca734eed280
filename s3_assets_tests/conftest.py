"""Shared fixtures: one real SeaweedFS for the session (free loopback ports, temp dir), fresh
buckets per test, and UCI-format input files that the tests generate.

Test tiers are marked here, automatically: a test that uses the `s3_server` fixture (directly
or through another fixture), or lives in a module that starts servers or Dagster processes of
its own, is `integration`; every other test is `unit` (`pytest -m unit`: no SeaweedFS, seconds).
An explicit `@pytest.mark.integration` or `@pytest.mark.unit` wins. A unit test that starts the
embedded S3 anyway fails, saying so."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from dagster import DagsterInstance, materialize

from s3_assets.defs import ASSETS, CHECKS
from s3_assets.defs.io_manager import S3ParquetIOManager
from s3_assets.defs.resources import S3Connection, S3Prefix, UciSource
from s3_assets.local_s3.server import Credentials, EmbeddedS3, ServerState, find_free_ports
from s3_assets_tests.uci_fixtures import real_data_dir, write_uci_files

# Modules whose tests start SeaweedFS, dagster subprocesses or a browser themselves.
INTEGRATION_MODULES = {"test_embedded_s3", "test_reliability", "test_bench_smoke", "test_ui_browser",
                       "test_cli_and_sensor", "test_graph"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.get_closest_marker("unit") or item.get_closest_marker("integration"):
            continue
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if "s3_server" in getattr(item, "fixturenames", ()) or module in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server(request, monkeypatch) -> None:
    """The unit tier promises no SeaweedFS: starting one there is a test bug, reported as such."""
    if request.node.get_closest_marker("unit"):
        def refuse(self, timeout):
            raise AssertionError(f"unit test {request.node.nodeid} started SeaweedFS: use the s3_server "
                                 "fixture or mark it @pytest.mark.integration")
        monkeypatch.setattr(EmbeddedS3, "_start", refuse)


RESTRICTED_BUCKET = "restricted-bucket"
RESTRICTED = Credentials("restrictedkey01", "restricted-secret-0123456789")
# Least privilege: list the bucket; read and write only under the data and IO prefixes and the
# bucket's lock notes (`.s3-assets-locks/`, see docs/RELIABILITY.md, "Lock notes").
LEAST_BUCKET = "least-bucket"
LEAST = Credentials("leastkey0001", "least-secret-0123456789abcdef")


@dataclass
class TestServer:
    server: EmbeddedS3
    state: ServerState

    @property
    def local_dir(self) -> str:
        return str(self.server.data_dir)

    def client(self, creds: Credentials | None = None):
        creds = creds or self.server.credentials()
        return boto3.client(
            "s3", endpoint_url=self.state.endpoint_url, region_name="us-east-1",
            aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[TestServer]:
    # A restricted identity: may delete only under keep-out-free paths of one bucket, so that
    # DeleteObjects returns a real per-key Errors array.
    identities = [{
        "name": "restricted",
        "credentials": [{"accessKey": RESTRICTED.access_key_id, "secretKey": RESTRICTED.secret_access_key}],
        "actions": [f"Read:{RESTRICTED_BUCKET}", f"List:{RESTRICTED_BUCKET}", f"Write:{RESTRICTED_BUCKET}/data/deletable/*"],
    }, {
        "name": "least",
        "credentials": [{"accessKey": LEAST.access_key_id, "secretKey": LEAST.secret_access_key}],
        "actions": [f"List:{LEAST_BUCKET}"] + [f"{action}:{LEAST_BUCKET}/{prefix}/*" for action in ("Read", "Write")
                                               for prefix in ("ins_dataset", "dagster-io", ".s3-assets-locks")],
    }]
    server = EmbeddedS3(tmp_path_factory.mktemp("seaweedfs"), find_free_ports(), identities=identities)
    state = server.ensure_running()
    try:
        yield TestServer(server, state)
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: TestServer):
    return s3_server.client()


@pytest.fixture
def bucket(s3) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def connection(s3_server: TestServer) -> S3Connection:
    return S3Connection(target="local", local_dir=s3_server.local_dir, max_attempts=2)


@pytest.fixture
def make_location(connection: S3Connection) -> Callable[..., S3Prefix]:
    def make(bucket: str, prefix: str = "ins_dataset", **kwargs) -> S3Prefix:
        return S3Prefix(s3=connection, bucket=bucket, prefix=prefix, **kwargs)

    return make


@pytest.fixture(scope="session")
def uci_dir(tmp_path_factory) -> Path:
    return write_uci_files(tmp_path_factory.mktemp("uci"))


@pytest.fixture
def real_dir() -> Path:
    folder = real_data_dir()
    if folder is None:
        pytest.skip("the real UCI files are not in ../shared/data/coil2000 (offline copy absent)")
    return folder


def graph_resources(location: S3Prefix, source: Path | str, cache_dir: Path) -> dict:
    return {
        "s3_prefix": location,
        "uci_source": UciSource(base=str(source), cache_dir=str(cache_dir)),
        "io_manager": S3ParquetIOManager(s3_prefix=location),
    }


@pytest.fixture
def run_graph(tmp_path) -> Callable:
    """Materialize the asset graph (or a selection) in process, against the real server. The
    runs of one test share one Dagster instance unless told otherwise: a stored value is read
    only as its materialization in the instance recorded it (its hash)."""
    shared = DagsterInstance.ephemeral()

    def run(location: S3Prefix, source: Path | str, selection=None, instance=None, raise_on_error=True):
        return materialize(
            [*ASSETS, *CHECKS], resources=graph_resources(location, source, tmp_path / "cache"), selection=selection,
            instance=instance or shared, raise_on_error=raise_on_error,
        )

    return run


def materialization_metadata(result, asset_name: str) -> dict:
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key.to_user_string() == asset_name]
    assert events, f"no materialization of {asset_name}"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


@pytest.fixture
def origin(s3_server):
    """What the test server's clients are made from (their keys), so big loads go through arrow."""
    from s3_assets.lib.loading import ClientOrigin

    creds = s3_server.server.credentials()
    return ClientOrigin.with_keys(creds.access_key_id, creds.secret_access_key)
