"""A job for the cluster tests that the workers import by module name: it writes one object
whole, then uploads a second one through the project's multipart upload and stops just before
CompleteMultipartUpload until the test lets it go (a named pipe) or kills its worker process."""


import os
from pathlib import Path

from dagster import Config, Definitions, In, Nothing, job, op

from s3_assets.defs.cluster.executor import s3_celery_executor
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.uploading import MULTIPART_THRESHOLD, upload_bytes
from s3_assets.settings import build_resources

WHOLE_KEY = "interrupted/whole.bin"
BIG_KEY = "interrupted/big.bin"


def whole_body() -> bytes:
    return bytes(range(256)) * 4096  # 1 MiB


def big_body() -> bytes:
    return b"new-" * (MULTIPART_THRESHOLD // 4 + 1024)  # above the multipart threshold


class PauseConfig(Config):
    pause_dir: str


@op
def write_whole(s3_prefix: S3Prefix) -> None:
    upload_bytes(s3_prefix.connect(), s3_prefix.resolved_bucket(), s3_prefix.key(WHOLE_KEY), whole_body())


@op(ins={"after": In(Nothing)})
def upload_paused_before_complete(config: PauseConfig, s3_prefix: S3Prefix) -> None:
    pause = Path(config.pause_dir)
    client = s3_prefix.connect()

    def wait_for_release(**_kwargs) -> None:
        marker = pause / "paused.tmp"
        marker.write_text(str(os.getpid()))
        marker.rename(pause / "paused")  # the test sees the pid only once it is whole
        with open(pause / "release") as fifo:  # blocks until the test opens the pipe
            fifo.read()

    client.meta.events.register("before-call.s3.CompleteMultipartUpload", wait_for_release)
    try:
        upload_bytes(client, s3_prefix.resolved_bucket(), s3_prefix.key(BIG_KEY), big_body())
    finally:
        client.meta.events.unregister("before-call.s3.CompleteMultipartUpload", wait_for_release)


@job(executor_def=s3_celery_executor)
def interrupted_upload():
    upload_paused_before_complete(after=write_whole())


defs = Definitions(jobs=[interrupted_upload], resources=build_resources())
