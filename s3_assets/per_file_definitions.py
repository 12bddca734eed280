"""The per-file code location (`s3_assets_per_file` in workspace.yaml): `file_frame`, one
dynamic partition per data file, its sensor and its job. Apart from the main location so that
`dagster asset materialize --select '*'` there never needs a partition; same resources."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import Definitions, in_process_executor

from s3_assets import per_file
from s3_assets.settings import build_resources


def build_definitions(env: Mapping[str, str] = os.environ) -> Definitions:
    return Definitions.merge(per_file.defs, Definitions(executor=in_process_executor, resources=build_resources(env)))


defs = build_definitions()
