"""The code location: the definitions of every group in `s3_assets.defs`, with resources
configured from the environment (see `settings.ENV_VARS` and README, Configuration)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import Definitions, EnvVar, in_process_executor

from s3_assets import defs as definitions_by_group
from s3_assets.defs.resources import S3Connection, S3PickleIOManager, S3Prefix, UciSource
from s3_assets.settings import Settings


def build_resources(settings: Settings, env: Mapping[str, str] = os.environ) -> dict[str, object]:
    """The resources for one configuration; secrets only as EnvVar (the UI shows the name)."""
    secrets = {}
    if env.get("S3_ASSETS_ACCESS_KEY_ID") and settings.target != "local":
        secrets = {
            "aws_access_key_id": EnvVar("S3_ASSETS_ACCESS_KEY_ID"),
            "aws_secret_access_key": EnvVar("S3_ASSETS_SECRET_ACCESS_KEY"),
        }
    connection = S3Connection(
        target=settings.target,
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region,
        profile_name=settings.profile or None,
        max_attempts=settings.max_attempts,
        retry_mode=settings.retry_mode,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        local_dir=str(settings.local_dir),
        **secrets,
    )
    s3_prefix = S3Prefix(
        s3=connection, bucket=settings.bucket, prefix=settings.prefix, create_bucket=settings.create_bucket,
        expected_bucket_owner=settings.expected_bucket_owner, server_side_encryption=settings.sse,
        sse_kms_key_id=settings.sse_kms_key_id,
    )
    return {
        "s3_prefix": s3_prefix,
        "uci_source": UciSource(base=settings.source, offline_dir=settings.offline_source,
                                cache_dir=str(settings.cache_dir)),
        "io_manager": S3PickleIOManager(s3_prefix=s3_prefix, io_prefix=settings.io_prefix),
    }


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    return Definitions.merge(definitions_by_group.graph_defs, Definitions(
        # In-process: the whole graph in ~6 s instead of ~45 s (docs/EXECUTORS.md).
        executor=in_process_executor,
        resources=build_resources(settings),
    ))


defs = build_definitions()
