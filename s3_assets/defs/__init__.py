"""The Dagster definitions of the main code location, as a dg defs folder: every module under
`s3_assets/defs/` is loaded (`dagster.load_from_defs_folder`), so `dg scaffold defs …` adds to
it. One package per asset group (`raw_uci`, `s3_copies`, `analysis`), `maintenance`, `cluster`
and the whole-graph jobs in `refresh`; resources in `resources`, the ones being built with in
`configured`. A group whose assets show configured locations makes them in its `defs.py`.

This module itself holds no definitions (it is loaded too): `build_graph_defs` adds owners, tags
and source-code references to what the folder holds; `ASSETS` and `CHECKS` are computed on use."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from dagster import (
    AssetsDefinition,
    AssetSpec,
    BetaWarning,
    Definitions,
    load_from_defs_folder,
    with_source_code_references,
)

from s3_assets.defs.configured import building_with

# Who answers for the assets, and tags to filter the catalog by (Dagster's owners and tags).
OWNERS = ["team:data-science"]
TAGS = {"dataset": "coil2000", "source": "uci"}


def _catalogued(spec: AssetSpec) -> AssetSpec:
    return spec.merge_attributes(owners=OWNERS, tags=TAGS)


def build_graph_defs(resources: Mapping[str, Any] | None = None) -> Definitions:
    """Everything in the defs folder; with the configured resources, assets show their real
    locations (source URLs, S3 URIs) before any run. Each asset gets owners, tags and a
    reference to its source code. The resources themselves are not bound here."""
    with building_with(resources):
        loaded = load_from_defs_folder(path_within_project=Path(__file__).parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)  # with_source_code_references is marked beta
        assets = [a.map_asset_specs(_catalogued) if isinstance(a, AssetsDefinition) else a
                  for a in with_source_code_references(list(loaded.assets or []))]
    return Definitions(assets=assets, asset_checks=loaded.asset_checks, jobs=loaded.jobs,
                       schedules=loaded.schedules, sensors=loaded.sensors)


@cache
def _graph() -> Definitions:
    return build_graph_defs()


def __getattr__(name: str) -> Any:
    """`ASSETS` and `CHECKS`: the asset graph as lists, for `materialize([...])` in tests and
    scripts. Computed on first use and never module attributes, or the defs folder's loader
    would find them here as a second copy of every asset."""
    if name == "ASSETS":
        return list(_graph().assets or [])
    if name == "CHECKS":
        return list(_graph().asset_checks or [])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
