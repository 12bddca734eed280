"""A stored value's version is removed only when no reader can still need it (issue 19 §4 class,
issue 20 §1), on the real SeaweedFS with real Dagster runs sharing one instance: two runs of the
same asset at once each read their own value, a run killed between storing and recording leaves
the recorded value readable, and the versions of finished runs are removed, so nothing grows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, asset, build_input_context, materialize

from s3_assets.defs.io_manager import MEMORY, S3ParquetIOManager
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib import stored_values
from s3_assets.lib.stored_values import MANIFEST, StoredValueError
from s3_assets_tests.fault_proxy import FaultProxy
from s3_assets_tests.test_stored_outputs import proxied

WAIT = 120  # seconds a step waits for the test's signal before failing (never reached when all goes well)
GATES: dict[str, tuple[threading.Event, threading.Event]] = {}  # tag -> (reached, go)


@asset
def shared(context) -> pd.DataFrame:
    """A value that says which run stored it."""
    return pd.DataFrame({"run": [context.run.run_id]})


@asset(deps=[shared])
def gate(context) -> None:
    """Between `shared` and its reader: lets the test run another run of `shared` here. Drops this
    run's values from memory, so that `reader` loads `shared` as a step in another process does
    (through the instance and S3)."""
    tag = context.run.tags.get("gate")
    if tag is None:
        return
    MEMORY.drop(context.run.run_id)
    reached, go = GATES[tag]
    reached.set()
    if not go.wait(WAIT):
        raise TimeoutError("the test never let the gate open")


@asset(deps=[gate])
def reader(shared: pd.DataFrame) -> str:
    """Which run's `shared` this step read."""
    return str(shared["run"].iloc[0])


class PausedAfterStoring(S3ParquetIOManager):
    """Stores as the project does, waits for the removal that storing started, then pauses (at
    the gate `pause`) before Dagster records the materialization."""

    pause: str = ""

    def handle_output(self, context, obj) -> None:
        super().handle_output(context, obj)
        self._values().finish()
        if self.pause:
            reached, go = GATES[self.pause]
            reached.set()
            if not go.wait(WAIT):
                raise TimeoutError("the test never let the paused store go on")


class KilledAfterStoring(S3ParquetIOManager):
    """Stores as the project does, waits for the removal that storing started, then the process
    is killed (SIGKILL) before Dagster records the materialization."""

    def handle_output(self, context, obj) -> None:
        super().handle_output(context, obj)
        self._values().finish()
        os.kill(os.getpid(), signal.SIGKILL)


def versions(s3, bucket: str, folder: str) -> set[str]:
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
            for o in p.get("Contents", [])]
    return {key[len(folder):].split("/", 1)[0] for key in keys if key[len(folder):] != MANIFEST}


def recorded_version(instance: DagsterInstance, name: str) -> str:
    event = instance.get_latest_materialization_event(AssetKey(name))
    assert event is not None and event.asset_materialization is not None
    return str(event.asset_materialization.metadata["stored_value_version"].value)


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(tempdir=str(home)) as made:
        yield made


def gate_pair() -> tuple[str, threading.Event, threading.Event]:
    tag = uuid.uuid4().hex
    GATES[tag] = (threading.Event(), threading.Event())
    return tag, *GATES[tag]


@pytest.mark.parametrize("b_recorded", [True, False], ids=["other-run-recorded", "other-run-not-yet-recorded"])
def test_a_run_reads_its_own_value_while_another_run_stores_the_same_asset(s3, bucket, make_location, instance,
                                                                            b_recorded):
    """Run A stores `shared`; run B stores `shared` too (and has recorded it, or not yet); then
    A's `reader` loads `shared` through the instance: it reads A's value, which is still there."""
    location = make_location(bucket)
    a_tag, a_reached, a_go = gate_pair()
    outcome: dict[str, object] = {}

    def run_a() -> None:
        outcome["a"] = materialize([shared, gate, reader], instance=instance, tags={"gate": a_tag},
                                   resources={"io_manager": S3ParquetIOManager(s3_prefix=location)},
                                   raise_on_error=False)

    a = threading.Thread(target=run_a)
    a.start()
    try:
        assert a_reached.wait(WAIT), "run A never reached its gate"

        def run_b(pause: str):
            return materialize([shared], instance=instance,
                               resources={"io_manager": PausedAfterStoring(s3_prefix=location, pause=pause)})

        if b_recorded:
            result_b = run_b("")
            assert result_b.success
        else:
            b_tag, b_reached, b_go = gate_pair()
            b = threading.Thread(target=lambda: outcome.__setitem__("b", run_b(b_tag)))
            b.start()
            assert b_reached.wait(WAIT), "run B never stored its value"
        a_go.set()
        a.join(WAIT)
        if not b_recorded:
            b_go.set()
            b.join(WAIT)
            result_b = outcome["b"]
    finally:
        a_go.set()
        a.join(WAIT)
    result_a = outcome["a"]
    errors = [str(e.event_specific_data.error) for e in result_a.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result_a.success, errors
    assert result_a.output_for_node("reader") == result_a.run_id  # A's own value, not B's
    assert result_b.success
    folder = location.stored_value_folder(["shared"])
    assert recorded_version(instance, "shared") in versions(s3, bucket, folder)


def test_a_run_killed_between_storing_and_recording_leaves_the_recorded_value_readable(
        s3_server, s3, bucket, make_location, instance, tmp_path):
    location = make_location(bucket)
    folder = location.stored_value_folder(["shared"])
    manager = S3ParquetIOManager(s3_prefix=location)
    first = materialize([shared], instance=instance, resources={"io_manager": manager})
    recorded = recorded_version(instance, "shared")
    # A run in its own process stores `shared` and is killed before Dagster records it.
    child = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path / "dagster_home"), s3_server.local_dir, bucket],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    [killed] = [run for run in instance.get_runs() if run.run_id != first.run_id]
    assert not killed.is_finished  # it stays STARTED: nothing marked it
    killed_version = json.loads(s3.get_object(Bucket=bucket, Key=folder + MANIFEST)["Body"].read())["version"]
    assert recorded_version(instance, "shared") == recorded  # never recorded
    # The recorded value is still there: a later run reads it.
    later = materialize([shared, gate, reader], instance=instance, resources={"io_manager": manager},
                        selection=[reader.key], raise_on_error=False)
    assert later.success, [str(e.event_specific_data.error) for e in later.all_events
                           if e.event_type_value == "STEP_FAILURE"]
    assert later.output_for_node("reader") == first.run_id
    assert stored_values.version_run(killed_version) == killed.run_id
    assert versions(s3, bucket, folder) == {recorded, killed_version}
    # The killed run's version stays while the instance says that run may live ...
    second = materialize([shared], instance=instance, resources={"io_manager": manager})
    # (the first run's version goes here too if Dagster recorded the second's before the removal ran)
    held = versions(s3, bucket, folder)
    assert {killed_version, recorded_version(instance, "shared")} <= held <= {
        recorded, killed_version, recorded_version(instance, "shared")}
    # ... and goes once it is marked (the UI's Terminate), with the first run's, now superseded.
    instance.report_run_canceled(killed)
    third = materialize([shared], instance=instance, resources={"io_manager": manager})
    # (the second run's goes too if Dagster recorded the third's before the removal ran)
    assert third.run_id in {stored_values.version_run(v) for v in versions(s3, bucket, folder)} <= {
        second.run_id, third.run_id}


KILLED_RUN = """
import sys
from dagster import DagsterInstance, materialize
from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets_tests.test_stored_value_removal import KilledAfterStoring, shared

home, local_dir, bucket = sys.argv[1:]
location = S3Prefix(s3=S3Connection(target="local", local_dir=local_dir, max_attempts=2), bucket=bucket)
with DagsterInstance.from_config(home) as instance:
    materialize([shared], instance=instance, resources={"io_manager": KilledAfterStoring(s3_prefix=location)})
raise SystemExit("not killed")
"""


def test_superseded_versions_of_finished_runs_are_removed(s3, bucket, make_location, instance):
    """Run after run: the folder holds the version just written and at most the one the instance
    recorded before it (if the removal ran before Dagster recorded the new one), each named after
    its run; every older one is removed."""
    location = make_location(bucket)
    folder = location.stored_value_folder(["shared"])
    manager = S3ParquetIOManager(s3_prefix=location)
    # A version of a run the instance does not know, named in the future (planted, or a clock far
    # ahead): not kept for 24 h from a time that never comes, but removed like any stranger's.
    planted = "v99999999999999999999-deadbeef-unknown-run"
    s3.put_object(Bucket=bucket, Key=f"{folder}{planted}/{MANIFEST}", Body=b"{}")
    runs: list[str] = []
    for n in range(5):
        runs.append(materialize([shared], instance=instance, resources={"io_manager": manager}).run_id)
        held = versions(s3, bucket, folder)
        # the run before it may still be the latest record when the removal runs (then it stays)
        assert runs[-1] in {stored_values.version_run(v) for v in held} <= set(runs[-2:]), n
        assert recorded_version(instance, "shared") in held
        assert planted not in held


def test_version_names_carry_the_run_and_old_names_still_parse():
    assert stored_values.version_run("v00000001733222333444-0123abcd") is None  # an older release's
    name = "v00000001733222333444-0123abcd-0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
    assert stored_values.version_run(name) == "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
    assert stored_values.version_written_ns(name) == 1733222333444
    assert stored_values.run_tag("odd run/id") != "odd run/id"
    assert stored_values.VERSION.match(f"v{0:020d}-0123abcd-{stored_values.run_tag('odd run/id')}")
    for bad in ("v1-0123abcd", "v00000001733222333444-0123abcd-", "v00000001733222333444-0123abcd-a/b",
                "v00000001733222333444-0123abcd-" + "x" * 65, "../v00000001733222333444-0123abcd"):
        assert not stored_values.VERSION.match(bad), bad


def test_a_reader_of_the_latest_value_follows_it_when_it_is_replaced_and_removed_meanwhile(
        s3_server, s3, bucket, make_location, instance):
    """A load outside the writing runs (a notebook's `load_asset_value`, a later run's step) looks
    up the instance's latest version; two runs store and record newer ones and the first is
    removed before the load's GET arrives: the load reads the newest recorded value instead of
    failing."""
    location = make_location(bucket)
    folder = location.stored_value_folder(["shared"])
    manager = S3ParquetIOManager(s3_prefix=location)
    first = materialize([shared], instance=instance, resources={"io_manager": manager})
    looked_up = recorded_version(instance, "shared")
    newer: list[str] = []
    tag, at_read, go = gate_pair()

    def hold_the_read(method: str, path: str) -> None:
        if method == "GET" and f"/{folder}{looked_up}/" in path and not at_read.is_set():
            at_read.set()
            if not go.wait(WAIT):
                raise TimeoutError("the test never let the read go on")

    read: dict[str, object] = {}
    with FaultProxy(s3_server.state.ports.s3, on_request=hold_the_read) as proxy:
        reading = S3ParquetIOManager(s3_prefix=S3Prefix(s3=proxied(s3_server, proxy), bucket=bucket))

        def load() -> None:
            try:
                read["value"] = reading.load_input(build_input_context(asset_key=AssetKey("shared"),
                                                                       instance=instance))
            except Exception as error:  # noqa: BLE001 - shown by the assertion below
                read["error"] = error

        loader = threading.Thread(target=load)
        loader.start()
        try:
            assert at_read.wait(WAIT), "the load never asked for the version it looked up"
            for _ in range(2):  # two newer versions stored and recorded; the looked-up one is removed
                newer.append(materialize([shared], instance=instance, resources={"io_manager": manager}).run_id)
        finally:
            go.set()
            loader.join(WAIT)
    assert "error" not in read, read.get("error")
    value = read["value"]
    assert len(newer) == 2 and looked_up not in versions(s3, bucket, folder)  # it was removed meanwhile
    assert value["run"].iloc[0] == newer[-1] != first.run_id  # type: ignore[index]
    # A latest version removed by hand, nothing newer recorded: refused by name, not looked for again and again.
    newest = recorded_version(instance, "shared")
    s3.delete_object(Bucket=bucket, Key=f"{folder}{newest}/{MANIFEST}")
    with pytest.raises(StoredValueError, match=f"asset 'shared'.*{newest}/manifest.json is gone"):
        manager.load_input(build_input_context(asset_key=AssetKey("shared"), instance=instance))
