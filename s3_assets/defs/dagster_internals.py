"""The one place that imports Dagster names with no public API (checked against dagster 1.13).

`AssetCheckEvaluationTargetMaterializationData` (which materialization a check result is about)
is not exported by `dagster` itself; a test (`test_prefix_locks.py`) fails naming the installed
Dagster version if it moves.
"""

import dagster

try:
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )
except ImportError as error:  # pragma: no cover - only on a Dagster that moved it
    raise ImportError(
        f"dagster {dagster.__version__} no longer has AssetCheckEvaluationTargetMaterializationData where "
        "s3_assets/defs/dagster_internals.py imports it from: update that import"
    ) from error

__all__ = ["AssetCheckEvaluationTargetMaterializationData"]
