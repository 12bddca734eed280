"""The Dagster and dagster-celery names this project needs that have no public API, in one place.

Written against dagster 1.13 and dagster-celery 0.29 (constraints.txt). Dagster's run-launcher
interface (`RunLauncher`, `LaunchRunContext`, health checks), the arguments of
`dagster api execute_run`, the executor's retry config, the check-evaluation target type and a
run's events of one type (`DagsterInstance.all_logs`, unmarked) are documented internals;
dagster-celery's step submission (`_submit_task`) is private. An upgrade
that moves any of them fails here, on import, naming the installed versions (and
`s3_assets_tests/test_private_apis.py` checks the shapes we rely on). Nothing else under
`s3_assets/` imports a private name (that test greps for it)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any


def installed_versions() -> str:
    return f"dagster {version('dagster')}, dagster-celery {version('dagster-celery')}"


WRITTEN_FOR = "dagster 1.13, dagster-celery 0.29"

try:
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )
    from dagster._core.execution.retries import RetryMode, get_retries_config
    from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
    from dagster._core.origin import get_python_environment_entry_point
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import ConfigurableClassData
    from dagster_celery.executor import _submit_task as submit_celery_step
except ImportError as error:  # pragma: no cover - only on an upgrade that moved them
    raise ImportError(
        f"{installed_versions()} no longer provide a Dagster internal that s3_assets "
        f"uses ({error}); s3_assets/dagster_internals.py is written for {WRITTEN_FOR}: pin those "
        "(constraints.txt) or port that module") from error



def run_events(instance: Any, run_id: str, event_type: Any) -> Any:
    """A run's event-log entries of one `DagsterEventType`, oldest first: there is no public call
    for a run's output or materialization events (`AssetRecordsFilter` has no run filter)."""
    return instance.all_logs(run_id, of_type=event_type)


__all__ = [
    "AssetCheckEvaluationTargetMaterializationData", "CheckRunHealthResult", "ConfigurableClassData", "ExecuteRunArgs",
    "LaunchRunContext", "RetryMode", "RunLauncher", "WorkerStatus", "get_python_environment_entry_point",
    "get_retries_config", "installed_versions", "run_events", "submit_celery_step",
]
