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
        done = subprocess.run([DAGSTER, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        if check and done.returncode != 0:
            raise AssertionError(f"dagster {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    run.home, run.env, run.root, run.dagster = home, env, ROOT, DAGSTER
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


def steps_of_latest_run(home) -> set[str]:
    """The steps that succeeded in the instance's latest run (read from the instance: the console
    prints INFO and above, not Dagster's DEBUG step events)."""
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        return {event.step_key for event in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS)
                if event.step_key}


def test_select_listing_with_upstream(cli, s3, bucket):
    # '*s3_listing': the listing and everything upstream of it, on a fresh bucket.
    cli("asset", "materialize", "-m", "s3_assets.definitions", "--select", "*s3_listing")
    assert "ins_dataset/raw/train.csv" in keys(s3, bucket)
    steps = steps_of_latest_run(cli.home)
    assert {"s3_listing", "train", "train_csv"} <= steps and "dataframes" not in steps
    # '+s3_listing': one layer up (the S3 copies, from the stored raw tables) and the listing.
    cli("asset", "materialize", "-m", "s3_assets.definitions", "--select", "+s3_listing")
    steps = steps_of_latest_run(cli.home)
    assert {"s3_listing", "train_csv"} <= steps and "train" not in steps


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
    assert "dagster-io/ins_dataset/dataframes/manifest.json" in keys(s3, bucket)


def evaluate(instance, location, cursor=None, sensor=s3_change_sensor):
    with build_sensor_context(instance=instance, cursor=cursor, resources={"s3_prefix": location}) as context:
        return sensor(context)


def test_sensor_runs_only_when_objects_arrive(s3, bucket, make_location):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=b"a\n1\n")
    with DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, location)
        assert not first.run_requests  # baseline
        quiet = evaluate(instance, location, first.cursor)
        assert not quiet.run_requests
        # A key that sorts before everything seen: a since-key cursor would miss it.
        s3.put_object(Bucket=bucket, Key="ins_dataset/0-early.csv", Body=b"b\n2\n")
        s3.put_object(Bucket=bucket, Key="ins_dataset_old/ignored.csv", Body=b"c\n")
        arrived = evaluate(instance, location, quiet.cursor)
        assert len(arrived.run_requests) == 1
        tags = arrived.run_requests[0].tags
        assert tags["s3_assets/new_objects"] == "1" and tags["s3_assets/changed_objects"] == "1"
        assert tags["s3_assets/overwritten_objects"] == "0" and tags["s3_assets/deleted_objects"] == "0"
        assert not evaluate(instance, location, arrived.cursor).run_requests


def test_sensor_sees_overwrite_in_the_same_second_and_deletion(s3, bucket, make_location):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/a.csv", Body=b"a\n1\n")
    s3.put_object(Bucket=bucket, Key="ins_dataset/b.csv", Body=b"b\n1\n")
    with DagsterInstance.ephemeral() as instance:
        base = evaluate(instance, location)
        # Overwrite at once (same second as the first write, same size): other content, other ETag.
        s3.put_object(Bucket=bucket, Key="ins_dataset/a.csv", Body=b"a\n2\n")
        changed = evaluate(instance, location, base.cursor)
        assert [r.tags["s3_assets/overwritten_objects"] for r in changed.run_requests] == ["1"]
        assert changed.run_requests[0].tags["s3_assets/new_objects"] == "0"
        s3.delete_object(Bucket=bucket, Key="ins_dataset/b.csv")
        deleted = evaluate(instance, location, changed.cursor)
        assert [r.tags["s3_assets/deleted_objects"] for r in deleted.run_requests] == ["1"]
        assert deleted.run_requests[0].tags["s3_assets/overwritten_objects"] == "0"
        assert not evaluate(instance, location, deleted.cursor).run_requests


def test_a_preview_of_a_tick_changes_nothing_the_next_tick_sees(s3, bucket, make_location):
    """The UI's "Preview tick result" evaluates the sensor and keeps no cursor."""
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/a.csv", Body=b"a\n1\n")
    with DagsterInstance.ephemeral() as instance:
        base = evaluate(instance, location)
        s3.put_object(Bucket=bucket, Key="ins_dataset/b.csv", Body=b"b\n1\n")
        s3.delete_object(Bucket=bucket, Key="ins_dataset/a.csv")
        previews = [evaluate(instance, location, base.cursor) for _ in range(2)]
        real = evaluate(instance, location, base.cursor)
        for result in [*previews, real]:
            [run] = result.run_requests
            assert run.tags["s3_assets/new_objects"] == "1" and run.tags["s3_assets/deleted_objects"] == "1"
        assert not evaluate(instance, location, real.cursor).run_requests


def test_sensor_does_not_fire_on_the_projects_own_writes(s3, bucket, make_location, run_graph, uci_dir):
    location = make_location(bucket)
    with DagsterInstance.ephemeral() as instance:
        base = evaluate(instance, location)  # empty prefix
        run_graph(location, uci_dir, instance=instance)  # "Materialize all": 4 copies + listing
        after = evaluate(instance, location, base.cursor)
        assert not after.run_requests, after.skip_reason
        # Only the copies, no new listing: the copies' own materializations still vouch for them.
        s3.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=b"changed by someone else")
        other = evaluate(instance, location, after.cursor)
        assert [r.tags["s3_assets/overwritten_objects"] for r in other.run_requests] == ["1"]


def test_sensor_does_not_fire_on_the_projects_own_cleanup(s3, bucket, make_location):
    from dagster import RunConfig

    from s3_assets.defs.maintenance.cleanup import cleanup_job

    location = make_location(bucket)
    for name in ("a.csv", "b.csv"):
        s3.put_object(Bucket=bucket, Key=f"ins_dataset/raw/{name}", Body=b"x\n1\n")
    with DagsterInstance.ephemeral() as instance:
        base = evaluate(instance, location)
        cleanup_job.execute_in_process(
            run_config=RunConfig({"delete_objects_under_prefix": {"config": {"dry_run": False}}}),
            resources={"s3_prefix": location}, instance=instance)
        after = evaluate(instance, location, base.cursor)
        assert not after.run_requests, after.skip_reason  # the deletions were the project's own
        s3.put_object(Bucket=bucket, Key="ins_dataset/raw/c.csv", Body=b"x\n2\n")
        arrived = evaluate(instance, location, after.cursor)
        assert [(r.tags["s3_assets/new_objects"], r.tags["s3_assets/deleted_objects"])
                for r in arrived.run_requests] == [("1", "0")]


def test_an_old_cleanup_does_not_hide_a_later_deletion_by_someone_else(s3, bucket, make_location):
    # The cleanup left an empty prefix; later someone adds a file and deletes it again. The
    # prefix is empty once more, as the cleanup left it, but that deletion is someone else's.
    from dagster import RunConfig

    from s3_assets.defs.maintenance.cleanup import cleanup_job

    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/a.csv", Body=b"x\n1\n")
    with DagsterInstance.ephemeral() as instance:
        cleanup_job.execute_in_process(
            run_config=RunConfig({"delete_objects_under_prefix": {"config": {"dry_run": False}}}),
            resources={"s3_prefix": location}, instance=instance)
        base = evaluate(instance, location)
        s3.put_object(Bucket=bucket, Key="ins_dataset/raw/c.csv", Body=b"x\n2\n")
        added = evaluate(instance, location, base.cursor)
        assert [r.tags["s3_assets/new_objects"] for r in added.run_requests] == ["1"]
        s3.delete_object(Bucket=bucket, Key="ins_dataset/raw/c.csv")
        removed = evaluate(instance, location, added.cursor)
        assert [r.tags["s3_assets/deleted_objects"] for r in removed.run_requests] == ["1"], removed.skip_reason


def sensor_files(instance) -> Path:
    [folder] = (Path(instance.storage_directory()) / "s3_change_sensor").iterdir()
    return folder


def test_a_lost_baseline_starts_a_refresh_rather_than_a_silent_new_baseline(s3, bucket, make_location):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/a.csv", Body=b"a\n1\n")
    with DagsterInstance.ephemeral() as instance:
        base = evaluate(instance, location)
        [state] = sensor_files(instance).glob("state-*.parquet")
        state.unlink()  # e.g. removed by a preview from an old cursor, or by hand
        s3.put_object(Bucket=bucket, Key="ins_dataset/b.csv", Body=b"b\n1\n")
        lost = evaluate(instance, location, base.cursor)
        assert [r.tags.get("s3_assets/baseline_lost") for r in lost.run_requests] == ["true"], lost.skip_reason
        assert not evaluate(instance, location, lost.cursor).run_requests  # a baseline again


def test_a_sweep_is_read_whole_after_short_previews_and_lost_pages(s3, bucket, make_location):
    """A preview from an older cursor may list fewer pages than the tick that kept that cursor
    (it stops on time); and the files of a sweep may be lost. Neither drops a page: a dropped
    page would report its objects as deleted by someone."""
    from concurrent.futures import ThreadPoolExecutor

    from s3_assets.defs.analysis.sensors import build_change_sensor

    location = make_location(bucket)
    keys = [f"ins_dataset/k-{i:04d}.csv" for i in range(1000)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))
    live = build_change_sensor("walk", pages_per_tick=3, page_size=100, seconds_per_tick=3600)
    short = build_change_sensor("walk", pages_per_tick=1, page_size=100, seconds_per_tick=3600)  # same files
    with DagsterInstance.ephemeral() as instance:

        def sweep(cursor, disturb=None):
            first = evaluate(instance, location, cursor, live)
            if disturb:
                disturb(first.cursor)
            result = evaluate(instance, location, first.cursor, live)
            while json.loads(result.cursor)["token"] is not None or "restarted" in str(result.skip_reason):
                assert not result.run_requests
                result = evaluate(instance, location, result.cursor, live)
            return result

        def short_preview(cursor):  # from the cursor after pages 0-2: lists only page 3
            second = evaluate(instance, location, cursor, live)  # the real tick: pages 3-5
            evaluate(instance, location, cursor, short)
            return second

        first = evaluate(instance, location, None, live)
        second = short_preview(first.cursor)
        result = evaluate(instance, location, second.cursor, live)
        while json.loads(result.cursor)["token"] is not None:
            result = evaluate(instance, location, result.cursor, live)
        assert json.loads(result.cursor)["objects"] == 1000 and not result.run_requests  # the baseline

        def lose_pages(cursor):
            shutil.rmtree(sensor_files(instance) / f"sweep-{json.loads(cursor)['sweep']}")

        again = sweep(result.cursor, disturb=lose_pages)
        assert json.loads(again.cursor)["objects"] == 1000 and not again.run_requests, again.skip_reason


def test_sensor_tick_is_bounded_and_a_large_prefix_is_walked_across_ticks(s3, bucket, make_location):
    from concurrent.futures import ThreadPoolExecutor

    from s3_assets.defs.analysis.sensors import build_change_sensor

    location = make_location(bucket)
    keys = [f"ins_dataset/part-{i:05d}.csv" for i in range(2500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))
    sensor = build_change_sensor("bounded_sensor", pages_per_tick=4, page_size=100,  # 400 objects a tick
                                 seconds_per_tick=3600)
    with DagsterInstance.ephemeral() as instance:
        cursor, ticks = None, 0
        while True:
            evaluate(instance, location, cursor, sensor)  # a preview from the same cursor, not kept
            result = evaluate(instance, location, cursor, sensor)
            state = json.loads(result.cursor)
            assert state["pages"] <= 4  # the work of one tick is bounded
            ticks, cursor = ticks + 1, result.cursor
            if state["token"] is None:
                break
        assert ticks == 7 and state["objects"] == 2500  # 25 pages, 4 a tick
        s3.delete_object(Bucket=bucket, Key=keys[1234])
        s3.put_object(Bucket=bucket, Key="ins_dataset/zz-new.csv", Body=b"y")
        runs = []
        for _ in range(7):
            result = evaluate(instance, location, cursor, sensor)
            runs += result.run_requests
            cursor = result.cursor
        [run] = runs
        assert run.tags["s3_assets/deleted_objects"] == "1" and run.tags["s3_assets/new_objects"] == "1"
        assert len(result.cursor) < 1000  # the state is in files, not in the cursor
        # Out of time (a slow endpoint, a busy machine): a tick stops after the page under way.
        hurried = build_change_sensor("hurried_sensor", pages_per_tick=4, page_size=1000, seconds_per_tick=0)
        first = json.loads(evaluate(instance, location, None, hurried).cursor)
        assert first["pages"] == 1 and first["token"]
        second = json.loads(evaluate(instance, location, json.dumps(first), hurried).cursor)
        assert second["pages"] == 1 and second["token"] and second["sweep"] == first["sweep"]


def test_a_copy_overwritten_by_someone_else_fails_its_checks_in_the_sensors_run(s3, bucket, make_location,
                                                                                  run_graph, uci_dir, tmp_path):
    """The run the sensor starts checks the copies against what the project wrote: `gt_csv`
    shows failed, not green beside 2 rows of someone else's in S3."""
    from dagster import AssetCheckKey, AssetKey, Definitions

    from s3_assets.defs import ASSETS, CHECKS
    from s3_assets.defs.analysis.sensors import refresh_listing_job
    from s3_assets_tests.conftest import graph_resources

    location = make_location(bucket)
    with DagsterInstance.ephemeral() as instance:
        run_graph(location, uci_dir, instance=instance)
        base = evaluate(instance, location)
        s3.put_object(Bucket=bucket, Key="ins_dataset/raw/gt.csv", Body=b"CARAVAN\n0\n1\n")
        [request] = evaluate(instance, location, base.cursor).run_requests
        assert request.tags["s3_assets/overwritten_objects"] == "1"
        job = Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[refresh_listing_job],
                          resources=graph_resources(location, uci_dir, tmp_path / "cache")).get_job_def("refresh_listing")
        job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)

        def status(asset: str, check: str) -> str:
            key = AssetCheckKey(AssetKey(asset), check)
            return instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key].status.value

        assert status("gt_csv", "matches_raw_table") == "FAILED"
        assert status("gt_csv", "object_exists") == "SUCCEEDED"
        assert status("train_csv", "matches_raw_table") == "SUCCEEDED"  # untouched copies stay green


@pytest.mark.parametrize("cursor", [
    '{"sweep": "x/../../../../escaped", "token": "t", "sweep_pages": 1}',
    '{"state": "../../../../escaped"}',
    '{"state": "/tmp/escaped"}',
    '{"sweep": "0123456789abcdef0123456789abcdef", "token": "t", "sweep_pages": "nan"}',
    '{"listed_from": 1e400}',
    '{"extra": 1}',
    '["not", "an", "object"]',
    'not json',
])
def test_a_cursor_the_sensor_did_not_make_is_rejected_and_nothing_is_written_outside(s3, bucket, make_location,
                                                                                      tmp_path, cursor):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/a.csv", Body=b"a\n1\n")
    home = tmp_path / "home"
    with DagsterInstance.ephemeral(tempdir=str(home)) as instance:
        before = set(home.rglob("*"))
        result = evaluate(instance, location, cursor)
        folder = Path(instance.storage_directory()) / "s3_change_sensor"
        outside = {p for p in set(home.rglob("*")) - before
                   if folder not in p.parents and p != folder and p not in folder.parents}
        assert not outside, outside
        # One refresh (what changed meanwhile cannot be told), then a baseline that holds.
        assert [r.tags.get("s3_assets/cursor_rejected") for r in result.run_requests] == ["true"], result.skip_reason
        assert not evaluate(instance, location, result.cursor).run_requests


def test_the_sensors_own_cursors_are_accepted():
    from s3_assets.defs.analysis.sensors import CursorRejected, parse_cursor

    made = {"sweep": None, "token": None, "pages": 3, "objects": 10, "state": "a" * 32, "listed_from": 1.7e9}
    assert parse_cursor(json.dumps(made)) == made
    walking = {"sweep": "b" * 32, "token": "1/abc==", "pages": 1, "sweep_pages": 4, "sweep_from": 1.7e9,
               "state": None, "listed_from": 0}
    assert parse_cursor(json.dumps(walking)) == walking
    assert parse_cursor(None) == {} and parse_cursor("") == {}
    with pytest.raises(CursorRejected, match="'sweep' is 'x/../../escape', not a name this sensor makes"):
        parse_cursor('{"sweep": "x/../../escape"}')
    with pytest.raises(CursorRejected, match="'state' is 'a\\\\nb'"):  # outside text, escaped
        parse_cursor('{"state": "a\\nb"}')
