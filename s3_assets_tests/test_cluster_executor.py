"""The executor's watch on a started step, against the race it must survive: Celery's result
backend is read twice (state, then info), and the step may end between the two reads."""

from __future__ import annotations

from s3_assets.defs.cluster.executor import WatchedResult


class EndsBetweenReads:
    """A step's AsyncResult whose task finishes right after its state was read as STARTED:
    `info` is then the task's return value (dagster-celery returns a list of events)."""

    def __init__(self):
        self.reads = 0

    def ready(self) -> bool:
        return self.reads > 0

    @property
    def state(self) -> str:
        self.reads += 1
        return "STARTED"

    @property
    def info(self):
        return ["serialized event"]


class NoPings:
    class control:  # noqa: N801 - Celery's attribute name
        @staticmethod
        def ping(destination, timeout):
            raise AssertionError(f"pinged {destination}: a finished step has no worker to watch")


def test_a_step_that_ends_between_two_reads_is_not_taken_for_a_lost_worker():
    watched = WatchedResult(EndsBetweenReads(), NoPings, "train_csv")
    assert watched.ready() is False  # read STARTED, then the result: no hostname, no ping, no error
    assert watched.ready() is True and watched.lost is None
