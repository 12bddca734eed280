"""dagster-celery's executor on the project's broker: every step is a Celery task that a worker
process runs; outputs pass between steps through the S3 IO manager; the run's own process holds
the run's lock note throughout (`s3_assets.defs.executors`).

The broker comes from `S3_ASSETS_CELERY_BROKER_URL` or the local cluster's directory when a run
starts, so its password is in neither the run config nor the UI.

A step whose worker dies fails the run, naming the step and the worker: a killed pool process
is reported by its Celery worker (WorkerLostError); a whole worker that dies reports nothing, so
the executor pings the worker running each started step and fails the step once it has stopped
answering `LOST_AFTER_MISSES` pings in a row (dagster-celery alone would wait for it forever).
"""

from __future__ import annotations

import time
from typing import Any

from dagster import executor, multiple_process_executor_requirements

from s3_assets.dagster_internals import RetryMode, get_retries_config, submit_celery_step
from s3_assets.defs.executors import RunHoldingExecutor
from s3_assets.lib.errors import S3AssetsError

STEPS_ON_WORKERS_TAG = "s3_assets/steps_on_workers"  # on runs whose steps are Celery tasks
PING_EVERY_SECONDS = 5.0
LOST_AFTER_MISSES = 3


class WorkerLost(S3AssetsError, RuntimeError):
    """The Celery worker that ran a step is gone."""


class WatchedResult:
    """A step's Celery AsyncResult that also turns ready when its worker stops answering."""

    def __init__(self, result, app, step_key: str):
        self.result, self.app, self.step_key = result, app, step_key
        self.misses, self.next_ping = 0, 0.0
        self.lost: tuple[Any, Any] | None = None

    def ready(self) -> bool:
        if self.result.ready():
            return True
        now = time.monotonic()
        if now >= self.next_ping and self.result.state == "STARTED":
            self.next_ping = now + PING_EVERY_SECONDS
            info = self.result.info  # a second read of the backend: the task may have ended since
            started = info if isinstance(info, dict) else {}  # then `info` is its result, not STARTED's meta
            worker = started.get("hostname")
            if worker and not self.app.control.ping(destination=[worker], timeout=1.0):
                self.misses += 1
                if self.misses >= LOST_AFTER_MISSES:
                    self.lost = (worker, started.get("pid"))
                    return True
            else:
                self.misses = 0
        return False

    def get(self):
        if self.lost:
            worker, pid = self.lost
            raise WorkerLost(
                f"Celery worker {worker} (pid {pid}) stopped answering while it ran step {self.step_key}: "
                "the step did not finish; what it wrote to S3 is whole or absent. Re-execute the run from failure."
            )
        return self.result.get()

    def revoke(self) -> None:
        self.result.revoke()


def _celery_executor_class():
    from dagster_celery.executor import CeleryExecutor

    class WatchedCeleryExecutor(CeleryExecutor):
        def execute(self, plan_context, execution_plan):
            from dagster_celery.core_execution_loop import core_celery_execution_loop
            from dagster_celery.make_app import make_app

            from s3_assets.local_cluster.settings import check_broker

            check_broker(make_app(self.app_args()))  # an unreachable broker fails the run naming it

            def submit(app, context, step, queue, priority, known_state):
                return WatchedResult(submit_celery_step(app, context, step, queue, priority, known_state), app, step.key)

            return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=submit)

    return WatchedCeleryExecutor


@executor(name="s3_assets_celery", config_schema={"retries": get_retries_config()},
          requirements=multiple_process_executor_requirements())
def s3_celery_executor(init_context):
    import os

    from s3_assets.local_cluster.settings import app_args, cluster_settings

    if not cluster_settings().celery_broker_url.strip():
        from s3_assets.local_cluster.cluster import LocalCluster

        LocalCluster().check_settings(dict(os.environ))
    args = app_args()
    return RunHoldingExecutor(_celery_executor_class()(
        retries=RetryMode.from_config(init_context.executor_config["retries"]),
        broker=args["broker"], backend=args["backend"], include=args["include"],
        config_source=vars(args["config_source"]),
    ))
