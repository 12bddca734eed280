"""Group `uci_raw`: the UCI files as tables, and the data dictionary."""

from dagster import Definitions

from s3_assets.defs.raw_uci.assets import RAW_TABLE_ASSETS, data_dictionary
from s3_assets.defs.raw_uci.checks import RAW_CHECKS

defs = Definitions(assets=[*RAW_TABLE_ASSETS, data_dictionary], asset_checks=RAW_CHECKS)
