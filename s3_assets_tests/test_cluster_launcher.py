"""The cluster's run launcher on runs it started in a process of their own (`refresh_all_celery`):
terminating one, and telling Dagster's run monitoring whether it still runs, by its real process
(pid and start time), never by a Celery task id it does not have."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.launcher import WorkerStatus
from dagster._core.test_utils import create_run_for_test

from s3_assets.local_cluster.launcher import RUN_PROCESS_STARTED_TAG, RUN_PROCESS_TAG, ClusterRunLauncher

# Stands for a run process: handles SIGINT as `dagster api execute_run` does (its own handler,
# whatever it inherited: a parent started in the background passes SIGINT on ignored), says it
# is ready, then waits.
WAITER = ("import signal, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
          "print('ready', flush=True)\ntime.sleep(120)")


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def launcher(instance):
    launcher = ClusterRunLauncher()
    launcher.register_instance(instance)
    return launcher


@pytest.fixture
def waiter():
    process = subprocess.Popen([sys.executable, "-c", WAITER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process
    process.kill()
    process.wait()


def started_run(instance, pid: int, started: float):
    return create_run_for_test(instance, job_name="refresh_all_celery", status=DagsterRunStatus.STARTED,
                               tags={RUN_PROCESS_TAG: str(pid), RUN_PROCESS_STARTED_TAG: repr(started)})


def test_terminate_interrupts_the_runs_own_process(instance, launcher, waiter):
    run = started_run(instance, waiter.pid, psutil.Process(waiter.pid).create_time())
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    assert launcher.terminate(run.run_id)
    assert waiter.wait(timeout=60) != 0  # interrupted (KeyboardInterrupt), not left to sleep
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELING  # its process reports the end
    health = launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))
    assert health.status == WorkerStatus.FAILED and str(waiter.pid) in health.msg


def test_a_reused_pid_is_not_the_run_and_is_never_signalled(instance, launcher, waiter):
    # The pid is live, but its process started at another time than the run's: after a crash and
    # a reboot, another program may hold the pid. It is left alone and the run ends CANCELED.
    run = started_run(instance, waiter.pid, psutil.Process(waiter.pid).create_time() - 3600)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.FAILED
    assert launcher.terminate(run.run_id)
    assert waiter.poll() is None  # not signalled
    stored = instance.get_run_by_id(run.run_id)
    assert stored.status == DagsterRunStatus.CANCELED  # not CANCELING for ever
    assert "'running': False" in (launcher.get_run_worker_debug_info(stored) or "")


def test_a_finished_run_is_not_terminated_and_no_run_is_resumed_as_a_celery_task(instance, launcher, waiter):
    run = create_run_for_test(instance, job_name="refresh_all_celery", status=DagsterRunStatus.SUCCESS,
                              tags={RUN_PROCESS_TAG: str(waiter.pid),
                                    RUN_PROCESS_STARTED_TAG: repr(psutil.Process(waiter.pid).create_time())})
    assert not launcher.terminate(run.run_id)
    assert waiter.poll() is None and instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    assert not launcher.supports_resume_run
