"""Executors whose steps run in processes of their own (multiprocess, Celery) hold the run's
lock note from the run's own process for the whole run.

A step's process holds the note only while that step runs (`S3Prefix.connect`). Between two
steps, or while a step waits in the broker's queue for a free worker, no step process is alive:
a cleanup would see no note and delete what the run has written and its next steps read. The
run's process lives from the first step to the last, so it holds the note across those gaps and
deletes it at the run's end, failed or not (docs/RELIABILITY.md, "Lock notes").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import Executor, ExecutorDefinition, build_resources, multiprocess_executor

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.errors import S3AssetsError
from s3_assets.lib.prefix_lock import Hold

# The resources whose prefixes a run writes: the data (`s3_prefix`) and the stored outputs (the IO
# manager's own `S3Prefix`, a nested resource that run config does not reach: it may differ).
HELD_RESOURCES = ("s3_prefix", "io_manager")


def _prefixes(resource: Any) -> list[S3Prefix]:
    if isinstance(resource, S3Prefix):
        return [resource]
    nested = getattr(resource, "s3_prefix", None)
    return [nested] if isinstance(nested, S3Prefix) else []


@contextmanager
def run_hold(plan_context: Any) -> Iterator[None]:
    """Hold every prefix the run's steps will write (the job's `s3_prefix` and IO manager, resolved
    with the run's config as the steps resolve them) while the block runs."""
    definitions = {key: definition for key, definition in plan_context.job.get_definition().resource_defs.items()
                   if key in HELD_RESOURCES}
    run = plan_context.dagster_run
    configs = {key: config for key, config in (run.run_config.get("resources") or {}).items() if key in definitions}
    holds: list[Hold] = []
    with build_resources(definitions, instance=plan_context.instance, resource_config=configs or None) as resources:
        try:
            held: set[tuple] = set()
            for key in definitions:
                for prefix in _prefixes(getattr(resources, key)):
                    # (the connection's repr holds secrets: only a key in memory here, never shown)
                    what = (repr(prefix.s3), prefix.resolved_bucket(), tuple(prefix.written_roots()))
                    if what not in held:
                        held.add(what)
                        holds.append(prefix.hold_prefix_for(run.run_id))
            yield
        finally:
            for hold in holds:
                try:
                    hold.release()
                except S3AssetsError as error:
                    plan_context.log.warning(f"this run's lock note was not deleted (it expires by itself): {error}")


class RunHoldingExecutor(Executor):
    """`inner`, with the run's lock note held by the run's process around its whole execution."""

    def __init__(self, inner: Executor):
        self.inner = inner

    def execute(self, plan_context, execution_plan):
        with run_hold(plan_context):
            yield from self.inner.execute(plan_context, execution_plan)

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def get_step_event_or_retry_event(self, *args, **kwargs):
        return self.inner.get_step_event_or_retry_event(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """Everything else the executor's own execution loop asks of it (Celery's `app_args`)."""
        if name == "inner":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def holding_the_run(inner: ExecutorDefinition) -> ExecutorDefinition:
    """`inner` under the same name and config, its executors wrapped in `RunHoldingExecutor`."""
    create = inner.executor_creation_fn
    assert create is not None, inner.name
    return ExecutorDefinition(
        name=inner.name, config_schema=inner.config_schema.as_field(), requirements=inner.get_requirements,
        executor_creation_fn=lambda init_context: RunHoldingExecutor(create(init_context)),
        description=inner.description,
    )


held_multiprocess_executor = holding_the_run(multiprocess_executor)
