"""The CLI as a user types it (subprocesses, persistent DAGSTER_HOME), the multiprocess
executor with the S3 IO manager, and the change sensor against the real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context

from s3_assets.defs.analysis.sensors import s3_change_sensor

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


@pytest.fixture
def cli(s3_server, bucket, uci_dir, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "config" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "S3_ASSETS_LOCAL_DIR": s3_server.local_dir,
           "S3_ASSETS_BUCKET": bucket, "S3_ASSETS_SOURCE": str(uci_dir), "S3_ASSETS_OFFLINE_SOURCE": "",
           "S3_ASSETS_CACHE_DIR": str(tmp_path / "cache")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([DAGSTER, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"dagster {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    run.home = home
    return run


def keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_materialize_all_then_history_persists(cli, s3, bucket):
    cli("asset", "materialize", "-m", "s3_assets.definitions", "--select", "*")
    data = {k for k in keys(s3, bucket) if k.startswith("ins_dataset/")}
    assert data == {"ins_dataset/raw/train.csv", "ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv",
                    "ins_dataset/raw/metadata/col_info.csv"}
    assert any(k.startswith("dagster-io/") for k in keys(s3, bucket))  # the IO manager, outside the prefix
    with DagsterInstance.from_config(str(cli.home)) as instance:  # run history survived the process
        [record] = instance.get_runs()
        assert record.is_success
        assert instance.get_latest_materialization_event(
            __import__("dagster").AssetKey("dataframes")) is not None


def test_select_listing_with_upstream(cli, s3, bucket):
    # '*s3_listing': the listing and everything upstream of it, on a fresh bucket.
    done = cli("asset", "materialize", "-m", "s3_assets.definitions", "--select", "*s3_listing")
    assert "ins_dataset/raw/train.csv" in keys(s3, bucket)
    assert 'Finished execution of step "s3_listing"' in done.stderr
    assert 'Finished execution of step "train"' in done.stderr
    assert 'step "dataframes"' not in done.stderr
    # '+s3_listing': one layer up (the S3 copies, from the stored raw tables) and the listing.
    again = cli("asset", "materialize", "-m", "s3_assets.definitions", "--select", "+s3_listing")
    assert 'Finished execution of step "train_csv"' in again.stderr
    assert 'Finished execution of step "train"' not in again.stderr


def test_cleanup_job_with_config_files(cli, s3, bucket):
    cli("asset", "materialize", "-m", "s3_assets.definitions", "--select", "*train_csv")
    s3.put_object(Bucket=bucket, Key="ins_dataset_old/keep.csv", Body=b"1")
    cli("job", "execute", "-m", "s3_assets.definitions", "-j", "cleanup_job", "-c", "config/cleanup_dry_run.yaml")
    assert "ins_dataset/raw/train.csv" in keys(s3, bucket)
    cli("job", "execute", "-m", "s3_assets.definitions", "-j", "cleanup_job", "-c", "config/cleanup.yaml")
    remaining = keys(s3, bucket)
    assert not any(k.startswith("ins_dataset/") for k in remaining)
    assert "ins_dataset_old/keep.csv" in remaining


def test_definitions_validate(cli):
    done = cli("definitions", "validate", "-m", "s3_assets.definitions")
    assert "All code locations passed validation" in done.stderr + done.stdout


def test_multiprocess_job_shares_outputs_through_s3(cli, s3, bucket):
    cli("job", "execute", "-m", "s3_assets.definitions", "-j", "refresh_all_multiprocess")
    assert "ins_dataset/raw/gt.csv" in keys(s3, bucket)
    assert "dagster-io/dataframes" in keys(s3, bucket)


def evaluate(instance, location, cursor=None):
    with build_sensor_context(instance=instance, cursor=cursor, resources={"s3_prefix": location}) as context:
        return s3_change_sensor(context)


def test_sensor_runs_only_when_objects_arrive(s3, bucket, make_location):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=b"a\n1\n")
    with DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, location)
        assert not first.run_requests  # baseline
        cursor = first.cursor
        quiet = evaluate(instance, location, cursor)
        assert not quiet.run_requests and quiet.cursor == cursor
        # A key that sorts before everything seen: a since-key cursor would miss it.
        s3.put_object(Bucket=bucket, Key="ins_dataset/0-early.csv", Body=b"b\n2\n")
        s3.put_object(Bucket=bucket, Key="ins_dataset_old/ignored.csv", Body=b"c\n")
        arrived = evaluate(instance, location, cursor)
        assert len(arrived.run_requests) == 1
        assert arrived.run_requests[0].tags["s3_assets/changed_objects"] == "1"
        assert "ins_dataset/0-early.csv" in json.loads(arrived.cursor)["keys"]
        assert not evaluate(instance, location, arrived.cursor).run_requests
