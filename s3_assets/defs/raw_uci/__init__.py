"""Group `uci_raw`: the UCI files as tables, and the data dictionary."""

from __future__ import annotations

from dagster import Definitions

from s3_assets.defs.raw_uci.assets import data_dictionary, raw_table_assets
from s3_assets.defs.raw_uci.checks import RAW_CHECKS
from s3_assets.defs.resources import UciSource


def build_defs(uci_source: UciSource | None = None) -> Definitions:
    """The group; with the configured source, each raw table shows where it comes from."""
    return Definitions(assets=[*raw_table_assets(uci_source), data_dictionary], asset_checks=RAW_CHECKS)


defs = build_defs()
