"""The code location: everything in the defs folder `s3_assets/defs/` (dg's layout), with
resources configured from the environment (`s3_assets.settings`, README's Configuration)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import Definitions, in_process_executor

from s3_assets import defs as definitions_by_group
from s3_assets.settings import build_resources


def build_definitions(env: Mapping[str, str] = os.environ) -> Definitions:
    """All definitions with resources for `env`; a bad setting fails here, naming its variable."""
    resources = build_resources(env)
    # The configured resources go into the definitions too: the UI shows real locations.
    graph = definitions_by_group.build_graph_defs(resources)
    return Definitions.merge(graph, Definitions(
        # In-process: the whole graph in ~6 s instead of ~45 s (docs/EXECUTORS.md).
        executor=in_process_executor,
        resources=resources,
    ))


defs = build_definitions()
