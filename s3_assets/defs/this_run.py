"""What the current run has already learnt from S3 about an asset, so that a check does not ask
again (issue 20: a copy's checks are taken from its own PUT/HEAD answer, not new requests).

A check that runs after its asset in the same run finds S3's answer to that step in the asset's
materialization, which the Dagster instance recorded before the check's step started: the copy's
PutObject (accepted with Content-MD5 and S3's SHA-256 checksum: S3 stored exactly those bytes)
or its HeadObject (S3's checksum, or the recorded SHA-256, equal to the body's), the listing the
step made, the stored value's manifest the IO manager put. The run holds its lock note from its
first request to its end, so no cleanup of the project's can remove anything in between. A check
run on its own (a selection, the change sensor's `refresh_listing`, a run that did not
materialize the asset) finds no such materialization and asks S3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetCheckExecutionContext, AssetKey, AssetRecordsFilter


def materialized_in_this_run(context: AssetCheckExecutionContext, asset_key: AssetKey) -> Mapping[str, Any] | None:
    """The metadata (plain values) of `asset_key`'s latest materialization if this run recorded
    it, else None."""
    records = context.instance.fetch_materializations(AssetRecordsFilter(asset_key=asset_key), limit=1).records
    if not records or records[0].run_id != context.run.run_id or records[0].asset_materialization is None:
        return None
    return {name: getattr(value, "value", value) for name, value in records[0].asset_materialization.metadata.items()}


def answered_in_this_run(what: str) -> str:
    """The `source` metadata of a check result taken from this run's materialization."""
    return (f"{what}, recorded by this run's materialization (no new request): what S3 held when this "
            "run's step wrote it; a later change by someone else is the change sensor's to find")
