"""The IO manager: step outputs as Parquet and JSON under `S3Prefix.outputs_root()`.

Each output is a folder written by `s3_assets.lib.stored_values` (no pickles: nothing read back
executes): `<asset key>[/<partition>]/` for assets, `.op-outputs/<run id>/<step>/<output>/` for
op outputs, each name one key segment. Every step process reaches them through S3, so
multiprocess and Celery executors work; a step that reads a value its own process stored in the
same run gets it from memory instead (see `RunMemory`).

Trust: each output's metadata records the SHA-256 of what was stored (`stored_value_sha256`)
and its version; loading takes them from the Dagster instance, never from the bucket, and refuses
a stored value that does not match, naming it. Which record: an asset this run materialized, the
run's own materialization (two runs of the same asset at once each read their own value); any
other asset, the instance's latest materialization (read again if that version was removed since
the lookup: a newer one was recorded); an op output, the run's own output event.

Removal (docs/STORED_OUTPUTS.md): at the end of the run's steps in this process (teardown), the
folders' versions that no reader can still need go, in one DeleteObjects; `keep_decision` says which of them a reader may need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    ConfigurableIOManager,
    DagsterEventType,
    DagsterInstance,
    DagsterInvariantViolationError,
    InitResourceContext,
    InputContext,
    MetadataValue,
    OutputContext,
    RunsFilter,
)
from pydantic import PrivateAttr

from s3_assets.dagster_internals import run_events
from s3_assets.defs.resources import PROJECT_ROOT, S3Prefix
from s3_assets.lib import stored_values
from s3_assets.lib.stored_values import KeepDecision, StoredValueError, StoredValueGone, ValueStore, key_segment
from s3_assets.lib.text import printable

SHA256 = "stored_value_sha256"
VERSION = "stored_value_version"
OP_OUTPUTS = ".op-outputs"  # a leading dot: never an encoded asset key segment
# A version written by a run this instance does not know (another DAGSTER_HOME or an ephemeral
# instance on the same prefix, a deleted run, a run id that could not name a version) is kept this
# long after it was written: such a run may still read it, and nothing here can tell when it ends.
UNKNOWN_RUN_KEEP_SECONDS = 24 * 3600
# How many times a load follows the instance's latest record to a newer one when the version it
# looked up was removed meanwhile (each time another run recorded a newer version).
LATEST_RETRIES = 5


class RunMemory:
    """Values stored in this process by the current run, for its later steps in the same
    process (the in-process executor). Holds one run only: storing for another run drops the
    previous run's values, and the run's end drops its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: str | None = None
        self._values: dict[str, Any] = {}

    def put(self, run_id: str, key: str, value: Any) -> None:
        with self._lock:
            if self._run != run_id:
                self._run, self._values = run_id, {}
            self._values[key] = stored_values.copy_value(value)

    def get(self, run_id: str, key: str) -> tuple[bool, Any]:
        with self._lock:
            if self._run != run_id or key not in self._values:
                return False, None
            value = self._values[key]
        return True, stored_values.copy_value(value)

    def drop(self, run_id: str) -> None:
        with self._lock:
            if self._run == run_id:
                self._run, self._values = None, {}


MEMORY = RunMemory()
# The project's own instance (written by `pip install -e .`, docs/INSTANCE.md): the one a notebook
# in this checkout reads stored values through when DAGSTER_HOME is unset.
PROJECT_INSTANCE = PROJECT_ROOT / ".dagster_home"
_project_instance: DagsterInstance | None = None


def instance_of(context: InputContext) -> DagsterInstance:
    """The instance that recorded the stored values: the run's; outside a run (a notebook's
    `defs.load_asset_value` without DAGSTER_HOME), the project's own."""
    global _project_instance
    try:
        return context.instance
    except DagsterInvariantViolationError:
        pass
    if not (PROJECT_INSTANCE / "dagster.yaml").is_file():
        raise StoredValueError(
            "loading a stored value needs the Dagster instance that recorded it: set DAGSTER_HOME to it, or pass "
            f"instance= to load_asset_value (this checkout has no instance at {printable(str(PROJECT_INSTANCE))}: "
            "`pip install -e .` makes it)")
    if _project_instance is None:
        _project_instance = DagsterInstance.from_config(str(PROJECT_INSTANCE))
    return _project_instance


def recorded_materialization(instance: DagsterInstance, asset_key: AssetKey, partition: str | None) -> Mapping | None:
    """The metadata of the latest materialization of `asset_key` (and `partition`) that this
    Dagster instance recorded, or None."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition is not None else None),
        limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    return records[0].asset_materialization.metadata


def recorded_in_run(instance: DagsterInstance, run_id: str, asset_key: AssetKey, partition: str | None) -> Mapping | None:
    """The metadata of the last materialization of `asset_key` (and `partition`) that run
    `run_id` recorded with a stored version, or None. `AssetRecordsFilter` has no run filter: the
    run's own events (`dagster_internals.run_events`), as in `recorded_op_output`."""
    found = None
    for entry in run_events(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if (materialization is not None and materialization.asset_key == asset_key
                and materialization.partition == partition and _text(materialization.metadata, VERSION)):
            found = materialization.metadata
    return found


def keep_decision(instance: DagsterInstance, recorded: Callable[[], Mapping | None]) -> KeepDecision:
    """Which superseded versions a reader may still need: the one `recorded()` names (the
    instance's latest materialization), those written by a run this instance has not seen finish,
    and those of a run it does not know for UNKNOWN_RUN_KEEP_SECONDS. Run states are read before
    the latest record: a run that finishes between the two has recorded its version by then."""

    def keep(versions: list[str]) -> set[str]:
        runs = {version: stored_values.version_run(version) for version in versions}
        ids = sorted({run for run in runs.values() if run})
        finished = {record.dagster_run.run_id: record.dagster_run.is_finished
                    for record in (instance.get_run_records(RunsFilter(run_ids=ids)) if ids else [])}
        latest = _text(recorded(), VERSION)
        now = time.time_ns()
        kept = set()
        for version, run in runs.items():
            if version == latest:
                kept.add(version)
            elif run is None:
                continue  # written outside a run or by an older release: only the latest record keeps it
            elif run in finished:
                if not finished[run]:
                    kept.add(version)
            elif 0 <= now - stored_values.version_written_ns(version) < UNKNOWN_RUN_KEEP_SECONDS * 1_000_000_000:
                # (a name from the future, planted or of a clock far ahead, is not kept for ever)
                kept.add(version)
        return kept

    return keep


def recorded_op_output(context: InputContext, run_id: str, step_key: str, output_name: str) -> Mapping | None:
    """The metadata of the output event with which run `run_id` stored `step_key`'s
    `output_name`, or None. Dagster has no public call for a run's output events:
    `dagster_internals.run_events` (test_stored_outputs.py and test_private_apis.py check it)."""
    for entry in run_events(instance_of(context), run_id, DagsterEventType.HANDLED_OUTPUT):
        event = entry.dagster_event
        if event is None or event.step_key != step_key:
            continue
        data = event.event_specific_data
        if getattr(data, "output_name", None) == output_name:
            return getattr(data, "metadata", None)
    return None


def _text(metadata: Mapping | None, name: str) -> str | None:
    value = (metadata or {}).get(name)
    value = getattr(value, "value", value)
    return value if isinstance(value, str) else None


class S3ParquetIOManager(ConfigurableIOManager):
    """Stores step outputs in the data bucket under `<io_prefix>/<prefix>/` as Parquet (frames,
    one object per frame of a dict, named after it) and JSON (small values), each version with a
    `manifest.json`, each recorded with its SHA-256."""

    s3_prefix: S3Prefix

    _store: ValueStore | None = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)
    _instance: DagsterInstance | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run else None
        self._instance = context.instance

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._run_id:
            MEMORY.drop(self._run_id)
        if self._store is not None:
            for failure in self._store.close():
                if context.log is not None:
                    context.log.warning(f"a superseded stored value was not removed (cleanup removes it): {failure}")
            self._store = None

    def _values(self) -> ValueStore:
        if self._store is None:
            client = self.s3_prefix.connect()
            hold = self.s3_prefix.run_hold()  # this run's lock note: values are stored only while it is live
            self._store = ValueStore(client, self.s3_prefix.resolved_bucket(), self.s3_prefix.write_args(),
                                     before_write=None if hold is None else hold.check_before)
        return self._store

    # -- where ---------------------------------------------------------------------------
    def _asset_folder(self, asset_key: AssetKey, partition: str | None) -> str:
        return self.s3_prefix.stored_value_folder(asset_key.path, partition)

    def _op_folder(self, run_id: str, step_key: str, output_name: str) -> str:
        return (self.s3_prefix.outputs_root() + OP_OUTPUTS + "/"
                + "/".join(key_segment(part) for part in (run_id, step_key, output_name)) + "/")

    def _uri(self, key: str) -> str:
        return f"s3://{self.s3_prefix.resolved_bucket()}/{key}"

    # -- storing -------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: Any) -> None:
        instance = self._instance
        keep = None
        if context.has_asset_key:
            partition = None
            if context.has_asset_partitions:
                keys = context.asset_partition_keys
                if len(keys) != 1:
                    raise StoredValueError("one output for several partitions cannot be stored: launch the backfill "
                                           "as one run per partition")
                partition = keys[0]
            folder = self._asset_folder(context.asset_key, partition)
            if instance is not None:
                asset_key, recorder = context.asset_key, instance
                keep = keep_decision(instance, lambda: recorded_materialization(recorder, asset_key, partition))
        else:
            folder = self._op_folder(context.run_id, context.step_key, context.name)
            if instance is not None:  # only this run writes here, and it has not finished
                keep = keep_decision(instance, lambda: None)
        context.log.debug(f"Storing the output as {printable(self._uri(folder))}")
        stored = self._values().write(folder, obj, run_id=context.run_id, keep=keep)
        MEMORY.put(context.run_id, folder, obj)
        context.add_output_metadata({
            "stored_output": MetadataValue.text(self._uri(stored.manifest_key)),
            "stored_output_files": stored.files,
            "stored_output_size_bytes": stored.bytes,
            VERSION: stored.version,
            SHA256: stored.sha256,
        })

    # -- loading -------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> Any:
        upstream = context.upstream_output
        if context.has_asset_key:
            if context.has_asset_partitions:
                keys = context.asset_partition_keys
                values = {key: self._load_asset(context, context.asset_key, key) for key in keys}
                return values[keys[0]] if len(keys) == 1 else values
            return self._load_asset(context, context.asset_key, None)
        if upstream is None:
            raise StoredValueError(f"input {context.name!r} has no upstream output to load")
        folder = self._op_folder(upstream.run_id, upstream.step_key, upstream.name)
        what = f"output {upstream.name!r} of step {printable(upstream.step_key)!r} (run {upstream.run_id})"
        return self._load(context, folder, what,
                          lambda: recorded_op_output(context, upstream.run_id, upstream.step_key, upstream.name))

    def _load_asset(self, context: InputContext, asset_key: AssetKey, partition: str | None) -> Any:
        folder = self._asset_folder(asset_key, partition)
        name = printable(asset_key.to_user_string())
        what = f"asset {name!r}" + (f" partition {printable(partition)!r}" if partition is not None else "")
        run_id = self._run_id
        looked_up: list[str | None] = []  # the versions the instance's latest record named, in turn

        def recorded() -> Mapping | None:
            instance = instance_of(context)
            if run_id and not looked_up:
                own = recorded_in_run(instance, run_id, asset_key, partition)
                if own is not None:
                    return own  # this run stored it: its own version, kept while the run lives
            metadata = recorded_materialization(instance, asset_key, partition)
            looked_up.append(_text(metadata, VERSION))
            return metadata

        while True:
            try:
                return self._load(context, folder, what, recorded)
            except StoredValueGone:
                # The instance's latest version was superseded and removed since it was looked up
                # (another run recorded a newer one): read the one it records now, if it records a
                # newer one. Never for this run's own version, which stays while the run lives.
                if not looked_up or len(looked_up) > LATEST_RETRIES:
                    raise
                if _text(recorded_materialization(instance_of(context), asset_key, partition), VERSION) == looked_up[-1]:
                    raise

    def _load(self, context: InputContext, folder: str, what: str, recorded: Any) -> Any:
        if self._run_id:
            found, value = MEMORY.get(self._run_id, folder)
            if found:
                context.log.debug(f"Loading {what} from memory (stored by this process in this run)")
                return value
        metadata = recorded()
        where = printable(self._uri(folder))
        if metadata is None:
            raise StoredValueError(f"{what} has no stored value recorded in this Dagster instance ({where}): "
                                   "materialize it first")
        version, sha256 = _text(metadata, VERSION), _text(metadata, SHA256)
        if version is None or sha256 is None:
            raise StoredValueError(f"{what} was stored without a recorded hash (by an older version of s3-assets, "
                                   f"or not by this IO manager), so its stored value at {where} cannot be proven: "
                                   "materialize it again")
        if self._run_id:  # a step's event log; a notebook's load_asset_value prints nothing
            context.log.debug(f"Loading {what} from {where}{version}/")
        return self._values().read(folder, version, sha256, f"{what} ({where})")
