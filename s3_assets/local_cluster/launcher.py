"""dagster-celery's run launcher on the cluster's broker: each launched run (one partition of a
backfill, say) is one Celery task that a worker runs in process. The broker URL is resolved
when the first run is launched, so the instance loads while the cluster is stopped and no
password is written into dagster.yaml."""

from __future__ import annotations

from functools import cached_property

from dagster._core.launcher import RunLauncher
from dagster._serdes import ConfigurableClassData
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app

from s3_assets.local_cluster.settings import QUEUE, app_args


class ClusterRunLauncher(CeleryRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None, default_queue: str = QUEUE) -> None:
        self._inst_data = inst_data
        self.default_queue = default_queue
        RunLauncher.__init__(self)  # type: ignore[arg-type]  # dagster's generic weakref base

    @cached_property
    def celery(self):  # the Celery app, built on first use
        return make_app(app_args())

    @classmethod
    def config_type(cls):
        return {}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data)
