"""dagster-celery's run launcher on the cluster's broker: each launched run (one partition of a
backfill, say) is one Celery task that a worker runs in process. The broker URL is resolved
when the first run is launched, so the instance loads while the cluster is stopped and no
password is written into dagster.yaml.

A run whose steps are themselves Celery tasks (`refresh_all_celery`, tagged
`STEPS_ON_WORKERS_TAG`) is not sent to a worker: it would hold that worker while its steps wait
for one, so as many such runs as there are workers would wait for each other for ever. It runs
in a process of its own on this machine, as Dagster's default launcher runs it, and only its
steps go to the workers. That process is known by its pid and start time (a pid alone may name
another process after a crash), for terminating the run and for Dagster's run monitoring."""

from __future__ import annotations

import signal
import subprocess
import threading
from functools import cached_property

import psutil
from dagster import DagsterRun, serialize_value
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app

from s3_assets.dagster_internals import (
    CheckRunHealthResult,
    ConfigurableClassData,
    ExecuteRunArgs,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
    get_python_environment_entry_point,
)
from s3_assets.defs.cluster.executor import STEPS_ON_WORKERS_TAG
from s3_assets.local_cluster.settings import QUEUE, app_args, check_broker, cluster_dir

RUN_PROCESS_TAG = "s3_assets/run_process"  # pid of a run launched in a process of its own
RUN_PROCESS_STARTED_TAG = "s3_assets/run_process_started"  # that process's start time (psutil's create_time)


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

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.tags.get(STEPS_ON_WORKERS_TAG) != "true":
            check_broker(self.celery)  # an unreachable broker is refused naming it, before the task is sent
            super().launch_run(context)
            return
        assert run.job_code_origin is not None  # every launched run has one
        args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id,
                              instance_ref=self._instance.get_ref(), set_exit_code_on_failure=True)
        # `python -m dagster` of the code's own Python (a bare `dagster` needs it on PATH)
        command = [*get_python_environment_entry_point(run.job_code_origin.executable_path),
                   "api", "execute_run", serialize_value(args)]
        logs = cluster_dir() / "runs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{run.run_id}.log", "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        started = psutil.Process(process.pid).create_time()  # before the reaper can free the pid
        threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends
        self._instance.add_run_tags(run.run_id, {RUN_PROCESS_TAG: str(process.pid),
                                                 RUN_PROCESS_STARTED_TAG: repr(started)})

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or RUN_PROCESS_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        process = run_process(run)
        if process is None:  # nothing runs it any more: say so rather than leave it CANCELING
            self._instance.report_run_canceled(
                run, message=f"Run process {run.tags[RUN_PROCESS_TAG]} had already ended; the run is marked canceled.")
            return True
        self._instance.report_run_canceling(run)
        try:
            process.send_signal(signal.SIGINT)  # Dagster's interrupt: the run ends CANCELED
        except psutil.NoSuchProcess:  # it ended in between: its own end event says how
            pass
        return True

    # dagster-celery's versions of these read the Celery task id that a run in a process of its
    # own does not have; resuming such a run as a Celery task would bring back the deadlock above.
    @property
    def supports_resume_run(self) -> bool:
        return False

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if RUN_PROCESS_TAG not in run.tags:
            return super().check_run_worker_health(run)
        if run_process(run) is not None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"Run process {run.tags[RUN_PROCESS_TAG]} is gone.")

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True) -> str | None:
        if RUN_PROCESS_TAG not in run.tags:
            return super().get_run_worker_debug_info(run, include_container_logs)
        return str({"run_id": run.run_id, "pid": run.tags[RUN_PROCESS_TAG], "running": run_process(run) is not None})


def run_process(run: DagsterRun) -> psutil.Process | None:
    """The live process this launcher started for `run`, or None: a pid that now names another
    process (started at another time) is not it."""
    try:
        pid, started = int(run.tags[RUN_PROCESS_TAG]), float(run.tags.get(RUN_PROCESS_STARTED_TAG, "nan"))
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > 0.01 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (ValueError, psutil.NoSuchProcess):
        return None
