"""A job for the step-gap lock test, run by `dagster job execute -m`: a step that writes, then a
step that touches no S3 and waits on a named pipe (so no step process holds the run's note),
then a step that writes again. Each step runs in a process of its own."""

from pathlib import Path

from dagster import Config, Definitions, In, Nothing, job, op

from s3_assets.defs.executors import held_multiprocess_executor
from s3_assets.defs.resources import S3Prefix
from s3_assets.settings import build_resources

FIRST_KEY, SECOND_KEY = "gap/first.txt", "gap/second.txt"


class PauseConfig(Config):
    pause_dir: str


@op
def write_first(s3_prefix: S3Prefix) -> None:
    s3_prefix.connect().put_object(Bucket=s3_prefix.resolved_bucket(), Key=s3_prefix.key(FIRST_KEY), Body=b"1")


@op(ins={"after": In(Nothing)})
def wait_between(config: PauseConfig) -> None:
    pause = Path(config.pause_dir)
    (pause / "paused.tmp").write_text("waiting")
    (pause / "paused.tmp").rename(pause / "paused")
    with open(pause / "release") as fifo:  # blocks until the test opens the pipe
        fifo.read()


@op(ins={"after": In(Nothing)})
def write_second(s3_prefix: S3Prefix) -> None:
    s3_prefix.connect().put_object(Bucket=s3_prefix.resolved_bucket(), Key=s3_prefix.key(SECOND_KEY), Body=b"2")


@job(executor_def=held_multiprocess_executor)
def step_gap():
    write_second(after=wait_between(after=write_first()))


defs = Definitions(jobs=[step_gap], resources=build_resources())
