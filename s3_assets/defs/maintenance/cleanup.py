"""The cleanup job: delete everything under the prefix (and the project's stored outputs for it)
and nothing else, on demand or weekly. A dry run unless `dry_run: false` is written out."""

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from s3_assets.dagster_internals import AssetCheckEvaluationTargetMaterializationData  # not public in 1.13
from s3_assets.defs.io_manager import OP_OUTPUTS, recorded_materialization
from s3_assets.defs.maintenance.checks import (
    COPY_CHECKS_OF_S3,
    LISTING_IS_CURRENT,
    LISTING_KEY,
    STORED_VALUE_ASSETS,
    STORED_VALUE_EXISTS,
    copy_asset_key,
    stored_value_folder,
)
from s3_assets.defs.metadata import code_block
from s3_assets.defs.resources import DEFAULT_IO_PREFIX, S3Prefix, normalise_prefix, prefixes_overlap
from s3_assets.lib import stored_values
from s3_assets.lib.changes import state_digest, state_of
from s3_assets.lib.cleanup import CleanupError, CleanupReport, Foreign, InFolders, clean
from s3_assets.lib.errors import ConfigError, S3AssetsError
from s3_assets.lib.file_partitions import partition_key, relative_key
from s3_assets.lib.listing import list_objects
from s3_assets.lib.prefix_lock import LOCKS_FOLDER, Hold, overlap_form
from s3_assets.lib.server_keys import stored_segments
from s3_assets.lib.source import UCI_TABLES
from s3_assets.lib.text import printable
from s3_assets.per_file import assets as per_file  # the module, not its asset: dg would load it as this module's
from s3_assets.per_file.retention import remove_file_partitions

SHOWN_KEYS = 50


class CleanupConfig(Config):
    dry_run: bool = Field(default=True, description="only list what would be deleted; write `dry_run: false` to delete")
    keep_outputs: bool = Field(default=False, description="keep the stored step outputs under `<io_prefix>/<prefix>/`")
    delete_versions: bool = Field(
        default=False, description="versioned bucket: also delete every old version and delete marker under the prefix")


def refuse_overlap(s3_prefix: S3Prefix) -> None:
    """The data prefix and the IO prefix must not contain each other: deleting one would delete
    the other's objects (for every data prefix, not only this one)."""
    data_root, io_root = s3_prefix.destructive_root(), normalise_prefix(s3_prefix.io_prefix)
    if not io_root or prefixes_overlap(data_root, io_root):
        raise ConfigError(
            f"refusing to clean up: S3_ASSETS_PREFIX {s3_prefix.prefix!r} and S3_ASSETS_IO_PREFIX "
            f"{s3_prefix.io_prefix!r} overlap, so the cleanup would delete stored outputs (or data) it was not "
            "asked to; choose prefixes where neither contains the other")
    if prefixes_overlap(data_root, DEFAULT_IO_PREFIX):
        raise ConfigError(
            f"refusing to clean up: S3_ASSETS_PREFIX {s3_prefix.prefix!r} is, contains or lies in {DEFAULT_IO_PREFIX!r}, the default "
            "S3_ASSETS_IO_PREFIX, where every configuration that does not set one keeps its stored outputs: the "
            "cleanup would delete theirs; choose a data prefix outside it")


# The S3 copies' keys below a data prefix (`raw/train.csv`, ...): the project writes exactly
# these names, so the same layout deeper under a cleaned prefix is another configuration's data.
COPY_LAYOUTS = tuple(tuple(table.s3_relative.split("/")) for table in UCI_TABLES)
(COPIES_FOLDER,) = {table.s3_relative.split("/", 1)[0] + "/" for table in UCI_TABLES}  # `raw/`: they all lie in it


def copies_folder(rest: str) -> str | None:
    """The folder (as listed, without its trailing '/'; '' for the root itself) below a root
    whose S3 copy `rest` (a listed key below the root) is: `rest` ends in `<folder>/raw/train.csv`
    or another of the copies, empty segments ignored, the copy's names exactly as the project
    writes them, the folder's as listed. None for any other key. (No configuration's prefix holds
    `\\` or an empty segment: `validate_prefix` refuses them.)"""
    segments = list(re.finditer(r"[^/]+", rest))
    names = tuple(segment.group() for segment in segments)
    for layout in COPY_LAYOUTS:
        if len(names) >= len(layout) and names[-len(layout):] == layout:
            return rest[:segments[-len(layout)].start()].rstrip("/")
    return None


# What this configuration's IO manager writes under its outputs root (and what older releases
# wrote there), by name: every other key there is another configuration's (`own_output`).
_FOLDERS = tuple(tuple(stored_values.key_segment(part) for part in key.path) for key in STORED_VALUE_ASSETS)
_PARTITIONED_FOLDERS = (tuple(stored_values.key_segment(part) for part in per_file.file_frame.key.path),)
# A file_frame partition's folder is `key_segment(partition_key(<data file key>))` (older
# releases: `partition_key` only), or `~<sha256>` when over SEGMENT_MAX_BYTES (`_is_partition`).
_HASHED_SEGMENT = re.compile(r"~[0-9a-f]{64}")
# A version folder's objects: `manifest.json` and `frame_file` names (`<key segment>.parquet`;
# format 1 wrote `part-NNNN.parquet`, the same shape); version folders are flat.
_VERSION_FILE = re.compile(r"manifest\.json|[A-Za-z0-9_%-][A-Za-z0-9_.%-]*\.parquet")
_FORMAT_1_FILE = re.compile(r"part-[0-9]{4}\.parquet")
_NAME = r"[A-Za-z0-9_]+"  # Dagster's names (ops, outputs, mapping keys)
_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # make_new_run_id: uuid4
_STEP_KEY = re.compile(rf"{_NAME}(?:\.{_NAME})*(?:%5B{_NAME}%5D)?")  # `graph.op[mapping]`, key_segment'ed
_OLD_STEP_KEY = re.compile(rf"{_NAME}(?:\.{_NAME})*(?:\[{_NAME}\])?")  # as UPathIOManager wrote it
_OUTPUT_NAME = re.compile(_NAME)
OLD_OP_OUTPUTS = "storage"  # UPathIOManager's op outputs (format 1): `storage/<run id>/<step>/<output>/`
# An older release's lock notes (`<outputs root>/.locks/`, docs/UPGRADING.md), exactly as it named them.
_OLD_LOCK_NOTE = re.compile(r"\.locks/(?:cleanup\.json|writers/[^/]+/[^/]+-[0-9]+-[0-9a-f]{8}\.json)")


def _value_part(parts: list[str], runs: tuple[str | None, ...] = ()) -> bool:
    """Whether `parts` (below a value's folder) name part of a stored value: its pointer
    `manifest.json`, or an object directly in a version folder; `runs`, if given, the run tags
    the version's name may carry (an op output's version is tagged with its own run, or none)."""
    return parts == [stored_values.MANIFEST] or (
        len(parts) == 2 and stored_values.VERSION.fullmatch(parts[0]) is not None
        and (not runs or stored_values.version_run(parts[0]) in runs)
        and _VERSION_FILE.fullmatch(parts[1]) is not None)


def _is_partition(segment: str) -> bool:
    """Whether `segment` is the folder of a `file_frame` partition: the encoding of a data file's
    key that the per-file sensor picks (its name's extension one of `EXTENSIONS`, as the listing
    reads it), decoded and encoded again to the same text; or a hashed long one."""
    if _HASHED_SEGMENT.fullmatch(segment):
        return True
    for partition in {unquote(segment), segment}:  # key_segment'ed (this release) or not (older ones)
        relative = relative_key(partition)
        name = relative.rstrip("/").rpartition("/")[2]
        if ("." in name and name.rpartition(".")[2].lower() in per_file.EXTENSIONS
                and segment in (stored_values.key_segment(partition_key(relative)), partition_key(relative))):
            return True
    return False


def own_output(rest: str) -> bool:
    """Whether the key `<outputs root>rest` has a name this configuration's IO manager writes
    (or an older release wrote) under its outputs root, decided by name alone:

    - `<asset>/manifest.json`, `<asset>/<version>/<file>` for the assets it stores
      (`STORED_VALUE_ASSETS`), `file_frame/<partition>/…` likewise (`_is_partition`);
    - op outputs `.op-outputs/<run id>/<step>/<output>/…` (Dagster's run ids are UUIDs, step and
      output names Dagster names), and format 1's `storage/<run id>/<step>/<output>/…`;
    - an older release's lock notes `.locks/cleanup.json`, `.locks/writers/<run>/<host>-<pid>-<8 hex>.json`.

    Each segment is checked, so a nested configuration's outputs (`<q>/<asset>/…`, with its
    IO prefix at this outputs root or deeper) have other names: `<q>` is no asset this one
    stores, `file_frame/<asset>/…` no partition the sensor makes, a version folder holds no
    folder, an op output's version carries its own run's tag."""
    parts = rest.split("/")
    if _OLD_LOCK_NOTE.fullmatch(rest):
        return True
    for folder in _FOLDERS:
        if tuple(parts[:len(folder)]) == folder and _value_part(parts[len(folder):]):
            return True
    for folder in _PARTITIONED_FOLDERS:
        if (tuple(parts[:len(folder)]) == folder and len(parts) > len(folder)
                and _is_partition(parts[len(folder)]) and _value_part(parts[len(folder) + 1:])):
            return True
    if len(parts) > 4 and _RUN_ID.fullmatch(parts[1]) and _OUTPUT_NAME.fullmatch(parts[3]):
        if parts[0] == OP_OUTPUTS:  # a version tagged with the folder's own run (untagged: older releases)
            return (_STEP_KEY.fullmatch(parts[2]) is not None
                    and _value_part(parts[4:], (None, stored_values.run_tag(parts[1]))))
        if parts[0] == OLD_OP_OUTPUTS:  # format 1 exactly: untagged versions of `part-NNNN.parquet`
            return (_OLD_STEP_KEY.fullmatch(parts[2]) is not None and (parts[4:] == [stored_values.MANIFEST] or (
                _value_part(parts[4:], (None,)) and _FORMAT_1_FILE.fullmatch(parts[5]) is not None)))
    return False


def _is_lock_note(rest: str) -> bool:
    """A lock note by name: under this release's notes folder, or an older release's
    (`<io_prefix>/<prefix>/.locks/writers/…`, `.locks/cleanup.json`)."""
    folded = [overlap_form(segment) for segment in stored_segments(rest)]
    notes = overlap_form(LOCKS_FOLDER.rstrip("/"))
    return notes in folded or any(a == ".locks" and b in ("writers", "cleanup.json")
                                  for a, b in zip(folded, folded[1:], strict=False))


def not_its_own(s3_prefix: S3Prefix, outputs_root: str, delete_versions: bool = False) -> Foreign:
    """`clean`'s `foreign`: what, under the cleaned roots, belongs to another configuration,
    recognised by name (no request).

    Under the data prefix:

    - another configuration's S3 copies (`<prefix>/<sub…>/raw/train.csv`: its S3_ASSETS_PREFIX
      lies inside this one; `copies_folder` at least one level down) or lock notes: refused, naming its prefix
      and how to clean it. A key in a sub-folder may be such a configuration's (`<sub>/x.csv`
      lists before `<sub>/raw/train.csv`): held back (`InFolders`) until the listing has left
      every folder holding it, or `clean` has listed such a folder's `raw/` and found no copy;
    - an object of a stored value's version folder: another configuration's stored output (its
      IO prefix lies in this data prefix, whatever this configuration's IO prefix is): refused,
      naming it. A `manifest.json` may be such a value's pointer (it lists before its version
      folders): held back until the whole listing passed.

    Under its own outputs root every key is decided by name (`own_output`): one of the layout
    this configuration's IO manager writes (or an older release wrote) is its own, any other is
    refused, naming it: most likely another configuration's stored outputs, whose
    S3_ASSETS_IO_PREFIX lies in this outputs folder (`myio/p1/q/…` for A's `myio/p1/`). Another
    configuration's S3 copies there are refused naming its prefix. Keys of its own layout still
    wait (`InFolders`, the outputs root itself included) until the listing has left their folders
    or a probe of a folder's `raw/` found no copy: a nested configuration's *data* prefix may be
    the outputs root or one of its folders (`myio/p1/train`, with a data file named
    `manifest.json` listed before its `raw/` copies), and its data keys may be named like this
    configuration's outputs; only the copies, listed later, tell.

    `delete_versions`: this cleanup lists old versions and delete markers too, so the advice for
    a nested configuration is its own cleanup with `delete_versions: true` (without it that
    cleanup only adds delete markers, and its old versions keep this one refusing)."""
    data_root = s3_prefix.destructive_root()
    versions = (" with delete_versions: true, as this cleanup has (it lists old versions and delete markers "
                "too; without it that cleanup only adds delete markers, and their old versions keep this one "
                "refusing)") if delete_versions else ""

    def foreign(key: str) -> str | bool | InFolders | None:
        if key.startswith(outputs_root):
            return in_outputs(key[len(outputs_root):])
        if not key.startswith(data_root):
            return None  # `clean` refuses any key outside the roots
        rest = key[len(data_root):]
        nested = copies_folder(rest) or None  # '' is the prefix's own copies (`raw/train.csv`)
        if nested is not None:
            other = data_root + nested
            # Not repr(): `clean` escapes the whole text once (`printable`), backslashes included.
            return (f"an S3 copy of another configuration's data: its S3_ASSETS_PREFIX {other} lies inside this "
                    f"cleanup's S3_ASSETS_PREFIX {data_root}, and deleting its copies would leave its stored outputs "
                    "and its assets in the catalog pointing at nothing. Clean it with its own cleanup first "
                    f"(cleanup_job with S3_ASSETS_PREFIX={other} and that configuration's S3_ASSETS_IO_PREFIX{versions}: "
                    "it also removes its stored outputs and marks its assets as gone), then run this cleanup again")
        if _is_lock_note(rest):
            return (f"a lock note (runs and cleanups exclude each other through it) inside S3_ASSETS_PREFIX "
                    f"{s3_prefix.prefix!r}, not this cleanup's: some configuration's S3_ASSETS_IO_PREFIX lies "
                    "inside this data prefix; check S3_ASSETS_PREFIX, or move that configuration's "
                    "S3_ASSETS_IO_PREFIX out of it")
        part = stored_values.stored_value_part(key)
        if part == "version":
            return (f"a stored step output of another configuration (a version folder of a stored value), not under "
                    f"this configuration's stored outputs {s3_prefix.uri(outputs_root)}; some configuration's "
                    f"S3_ASSETS_IO_PREFIX lies inside S3_ASSETS_PREFIX {s3_prefix.prefix!r} (this one's is "
                    f"{s3_prefix.io_prefix!r}): check S3_ASSETS_PREFIX, or move that configuration's "
                    "S3_ASSETS_IO_PREFIX out of it")
        if part == "pointer":
            return True
        folders = _folders(data_root, rest)
        # directly under the prefix, no nested configuration holds it; in a folder, one may
        return InFolders(folders, probe=COPIES_FOLDER) if folders else None

    def in_outputs(rest: str) -> str | InFolders:
        """Under its own stored outputs: another configuration's copies (its S3_ASSETS_PREFIX is
        this one's outputs folder, or lies in it) and every key not of this configuration's
        layout are refused; its own wait like a data key in a folder (see above)."""
        folder = copies_folder(rest)
        if folder is not None:
            other = (outputs_root + folder).rstrip("/")
            return (f"an S3 copy of another configuration's data inside this configuration's stored outputs "
                    f"{outputs_root}: its S3_ASSETS_PREFIX {other} lies in them (S3_ASSETS_IO_PREFIX "
                    f"{s3_prefix.io_prefix} of this one), and this cleanup would delete its copies. Clean it "
                    f"with its own cleanup first (cleanup_job with S3_ASSETS_PREFIX={other}{versions}), or give "
                    "one of the two configurations another prefix")
        if not own_output(rest):
            return (f"an object inside this configuration's stored outputs {outputs_root} whose name is not a "
                    "layout this configuration writes there (an asset's stored value, an op output, an older "
                    "release's lock note): most likely another configuration's stored outputs, whose "
                    f"S3_ASSETS_IO_PREFIX lies inside this one's outputs folder (this one: S3_ASSETS_PREFIX "
                    f"{s3_prefix.prefix}, S3_ASSETS_IO_PREFIX {s3_prefix.io_prefix}), and this cleanup would delete "
                    "them. Clean that configuration with its own cleanup first (cleanup_job with its "
                    f"S3_ASSETS_PREFIX and S3_ASSETS_IO_PREFIX{versions}) and move its S3_ASSETS_IO_PREFIX out of "
                    f"{outputs_root}; an object put there by other means: move or delete it yourself; then run "
                    "this cleanup again (or keep the outputs: keep_outputs: true)")
        return InFolders((outputs_root, *_folders(outputs_root, rest)), probe=COPIES_FOLDER)
    return foreign


def _folders(root: str, rest: str) -> tuple[str, ...]:
    """The folders below `root` that hold the key `root + rest` (prefixes ending in '/')."""
    return tuple(root + rest[:i + 1] for i, char in enumerate(rest) if char == "/" and i > 0)


def _keys_block(keys: list[str]) -> MetadataValue:
    shown = keys[:SHOWN_KEYS] + ([f"... and {len(keys) - SHOWN_KEYS} more"] if len(keys) > SHOWN_KEYS else [])
    return code_block(shown) if keys else MetadataValue.text("(none)")


def _target_of(context: OpExecutionContext, asset_key: AssetKey) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = context.instance.fetch_materializations(asset_key, limit=1).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp)


def _latest_listing_digest(context: OpExecutionContext) -> str | None:
    event = context.instance.get_latest_materialization_event(LISTING_KEY)
    value = event.asset_materialization.metadata.get("state_digest") if event and event.asset_materialization else None
    return None if value is None else str(value.value)


def _latest_uri(context: OpExecutionContext, asset_key: AssetKey, field: str, default: str) -> str:
    """The URI (`dagster/uri`, `stored_output`) that the asset's latest materialization in this
    instance recorded; `default` (the configured prefix's) if it has none; '' if its latest
    materialization recorded none (an older version's: not known to be under any prefix)."""
    metadata = recorded_materialization(context.instance, asset_key, None)
    if metadata is None:
        return default
    text = getattr(metadata.get(field), "value", None)
    return text if isinstance(text, str) else ""


def staleness_evaluations(context: OpExecutionContext, s3_prefix: S3Prefix, report: CleanupReport,
                          deleted: set[str], client: Any) -> Iterator[AssetCheckEvaluation]:
    """Failing check results (severity ERROR, so asset health shows them in the catalog and the
    lineage) for every asset whose S3 object or stored value is missing once the cleanup is done,
    whichever run deleted it: a cleanup re-run after a killed one deletes nothing, yet the copies
    are gone. The S3 copies fail `object_exists` and `matches_raw_table`, the listing
    `listing_is_current`, and every asset with a stored output whose value is gone
    `stored_value_exists`.

    Only of assets whose latest materialization in this instance lies under what this cleanup
    cleaned (its `dagster/uri`, `stored_output` or the listing's `listed_prefix`): the catalog
    shows one materialization per asset, and another prefix's (or bucket's) copies, listing and
    values are not touched by this cleanup, so its results must not turn them red. An asset never materialized in this instance
    shows no other prefix: it is the configured prefix's (its definition's), recorded as before
    (and the listing's `state_digest` is what the change sensor needs then).

    The listing's result carries `state_digest`: the fingerprint of what is under the prefix
    once the cleanup is done, so that the change sensor counts the cleanup's deletions as the
    project's own (like a listing it wrote), not as someone else's change."""
    where = f"cleanup run {context.run_id}"
    bucket = s3_prefix.resolved_bucket()
    left = _left_under_prefix(context, client, s3_prefix)
    present = set(left["key"]) if left is not None else None

    def failed(asset_key: AssetKey, check_name: str, description: str, **metadata: Any) -> AssetCheckEvaluation:
        return AssetCheckEvaluation(
            asset_key=asset_key, check_name=check_name, passed=False, severity=AssetCheckSeverity.ERROR,
            target_materialization_data=_target_of(context, asset_key), description=description,
            metadata={**metadata, "recorded_by_run": context.run_id})

    data_uri = s3_prefix.uri(s3_prefix.root)
    for table in UCI_TABLES:
        configured = s3_prefix.uri(s3_prefix.key(table.s3_relative))
        written = _latest_uri(context, copy_asset_key(table), "dagster/uri", configured)
        if not written.startswith(data_uri):
            continue  # its copy is not under this prefix: this cleanup did not touch it
        key = written.removeprefix(s3_prefix.uri())
        # Without a listing of what is left, only what this run deleted is known to be gone.
        if key in deleted if present is None else key not in present:
            verb = "deleted" if key in deleted else "found no"
            uri = printable(s3_prefix.uri(key))
            for check_name in COPY_CHECKS_OF_S3:
                yield failed(copy_asset_key(table), check_name,
                             f"{where} {verb} {uri}; materialize the asset to write it again",
                             **{"dagster/uri": MetadataValue.text(s3_prefix.uri(key)), "found": False})
    data_deleted = [key for key in deleted if key.startswith(s3_prefix.root)]
    digest = None if left is None else state_digest(state_of(left["key"], left["etag"], left["size"]))
    # The listed root's URI: the listing is this cleanup's to mark if its root overlaps the cleaned one.
    listed = _latest_uri(context, LISTING_KEY, "listed_prefix", data_uri)
    own = listed == data_uri
    touched = [key for key in data_deleted if s3_prefix.uri(key).startswith(listed)] if listed else []
    if listed and (listed.startswith(data_uri) or data_uri.startswith(listed)) and (
            touched or left is None or (own and digest != _latest_listing_digest(context))):
        yield failed(LISTING_KEY, LISTING_IS_CURRENT,
                     f"{where} deleted {len(touched)} object(s) under {printable(listed)}; "
                     "the latest listing no longer describes the prefix: materialize s3_listing again",
                     # what is left under the cleaned root is the listing's state only if it listed that root
                     deleted_keys=len(touched), **({"state_digest": digest} if digest and own else {}))
    outputs_uri = s3_prefix.uri(s3_prefix.outputs_root())
    for asset_key in STORED_VALUE_ASSETS:
        stored = _latest_uri(context, asset_key, "stored_output", outputs_uri)
        if not stored.startswith(outputs_uri):
            continue  # its latest value is another prefix's (or IO prefix's): not this cleanup's
        folder = stored_value_folder(s3_prefix, asset_key)
        try:
            found = stored_values.exists(client, bucket, folder)
        except S3AssetsError as error:  # cannot tell: say so, and show it as not there
            context.log.warning(f"cannot tell whether the stored value of {asset_key.to_user_string()} is left: {error}")
            found = False
        if not found:
            yield failed(asset_key, STORED_VALUE_EXISTS,
                         f"after {where} there is no stored value for this asset; materialize it again "
                         "(`load_asset_value` and downstream steps cannot load it meanwhile)",
                         stored_value=MetadataValue.text(f"s3://{bucket}/{folder}{stored_values.MANIFEST}"),
                         found=False)


def _left_under_prefix(context: OpExecutionContext, client: Any, s3_prefix: S3Prefix) -> Any:
    """What the cleanup left under the prefix (a listing), or None if it cannot be listed: then
    only what this run deleted is recorded as gone, no `state_digest` is recorded and the change
    sensor starts one refresh."""
    try:
        return list_objects(client, s3_prefix.resolved_bucket(), s3_prefix.root)
    except S3AssetsError as error:
        context.log.warning(f"no state_digest recorded (the change sensor may start one refresh): {error}")
        return None


@op(out=Out(Nothing), description="Delete every object under the configured prefix (`S3_ASSETS_PREFIX`) and the "
                                  "project's stored outputs for it, and nothing else. A dry run unless "
                                  "`dry_run: false`.")
def delete_objects_under_prefix(context: OpExecutionContext, config: CleanupConfig, s3_prefix: S3Prefix):
    refuse_overlap(s3_prefix)  # before any request
    data_root, outputs_root = s3_prefix.destructive_root(), s3_prefix.outputs_root()
    roots = [data_root] + ([] if config.keep_outputs else [outputs_root])
    client, bucket = s3_prefix.cleanup_client(), s3_prefix.resolved_bucket()
    locks = s3_prefix.prefix_locks(client)
    run_status = context.instance.get_run_by_id

    def is_finished(run_id: str) -> bool | None:
        run = run_status(run_id)
        return None if run is None else run.is_finished

    foreign = not_its_own(s3_prefix, outputs_root, config.delete_versions)

    def run_clean(hold: Hold | None = None) -> tuple[CleanupReport, CleanupError | None]:
        try:
            return clean(client, bucket, roots, dry_run=config.dry_run, delete_versions=config.delete_versions,
                         check=None if hold is None else hold.check_before, foreign=foreign), None
        except CleanupError as error:
            return error.report, error

    if config.dry_run:
        report, failure = run_clean()
    else:
        # Held on every root it deletes: a run that writes any overlapping root (data or stored
        # outputs, of any configuration) excludes it, and it them. Each delete request is sent
        # only while the hold's lease is live (checked locally): a lapsed one stops the deletes.
        with locks.cleanup(context.run_id, roots, what=s3_prefix.uri(data_root), is_finished=is_finished) as hold:
            report, failure = run_clean(hold)
            deleted = set(report.keys) - {label.split(" (version ", 1)[0] for label in report.not_deleted()}
            # Recorded while the prefix is still held: no run can write it again before these land.
            yield from staleness_evaluations(context, s3_prefix, report, deleted, client)
            # Dagster's data-retention pattern: the per-file partitions of deleted files go too.
            remove_file_partitions(context, s3_prefix, sorted(deleted))
    if failure is not None:
        raise failure
    verb = "would delete" if config.dry_run else "deleted"
    data_keys, output_keys = report.keys_under(data_root), report.keys_under(outputs_root)
    context.log.info(
        f"{verb} {len(data_keys)} object(s) under {printable(s3_prefix.uri(data_root))} and {len(output_keys)} stored "
        f"output object(s) under {printable(s3_prefix.uri(outputs_root))}"
        + (" (kept: keep_outputs)" if config.keep_outputs else "") + f"; {report.versioning_note()}")
    yield Output(None, metadata={
        "dry_run": config.dry_run,
        "prefix": s3_prefix.uri(data_root),
        "objects": len(data_keys),
        "bytes": sum(t.size for t in report.targets if t.key.startswith(data_root)),
        "keys": _keys_block(data_keys),
        "stored_outputs": "kept (keep_outputs)" if config.keep_outputs else s3_prefix.uri(outputs_root),
        "stored_output_objects": len(output_keys),
        "stored_output_keys": _keys_block(output_keys),
        "bucket_versioning": report.versioning or "never enabled",
        "versioning": report.versioning_note(),
        "versions_and_markers": len(report.targets) if report.delete_versions and report.versioned else 0,
    })


@job(description="Delete everything under the configured prefix and its stored outputs. A dry run unless the "
                 "config says `dry_run: false`; also `keep_outputs`, `delete_versions`.")
def cleanup_job():
    delete_objects_under_prefix()


weekly_cleanup_schedule = ScheduleDefinition(
    name="weekly_cleanup", job=cleanup_job, cron_schedule="0 4 * * 0",
    default_status=DefaultScheduleStatus.STOPPED,
    run_config={"ops": {"delete_objects_under_prefix": {"config": {"dry_run": False}}}},
    description="Delete everything under the prefix every Sunday at 04:00. Off by default.",
)
