"""The Dagster definitions, one package per asset group (`raw_uci`, `s3_copies`, `analysis`)
plus `maintenance` and the whole-graph jobs in `refresh`. Resources live in `resources`."""

from __future__ import annotations

import warnings

from dagster import (
    AssetsDefinition,
    AssetSpec,
    BetaWarning,
    Definitions,
    with_source_code_references,
)

from s3_assets.defs import analysis, cluster, maintenance, raw_uci, s3_copies
from s3_assets.defs.refresh import (
    daily_refresh_schedule,
    refresh_all_job,
    refresh_all_multiprocess_job,
)
from s3_assets.defs.resources import S3Prefix, UciSource

GROUPS = (raw_uci, s3_copies, analysis, maintenance)
# Definitions beside the groups: jobs on the Celery cluster.
EXTRAS = (cluster,)
# Who answers for the assets, and tags to filter the catalog by (Dagster's owners and tags).
OWNERS = ["team:data-science"]
TAGS = {"dataset": "coil2000", "source": "uci"}


def _catalogued(spec: AssetSpec) -> AssetSpec:
    return spec.merge_attributes(owners=OWNERS, tags=TAGS)


def build_graph_defs(s3_prefix: S3Prefix | None = None, uci_source: UciSource | None = None) -> Definitions:
    """Every group's definitions; with the configured resources, assets show their real
    locations (source URLs, S3 URIs) before any run. Each asset gets owners, tags and a
    reference to its source code."""
    merged = Definitions.merge(
        raw_uci.build_defs(uci_source), s3_copies.build_defs(s3_prefix), analysis.defs, maintenance.defs,
        *(extra.defs for extra in EXTRAS),
        Definitions(jobs=[refresh_all_job, refresh_all_multiprocess_job], schedules=[daily_refresh_schedule]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)  # with_source_code_references is marked beta
        assets = [a.map_asset_specs(_catalogued) if isinstance(a, AssetsDefinition) else a
                  for a in with_source_code_references(list(merged.assets or []))]
    return Definitions(assets=assets, asset_checks=merged.asset_checks, jobs=merged.jobs,
                       schedules=merged.schedules, sensors=merged.sensors)


graph_defs = build_graph_defs()

# The asset graph as lists, for `materialize([...])` in tests and scripts.
ASSETS = list(graph_defs.assets or [])
CHECKS = list(graph_defs.asset_checks or [])
