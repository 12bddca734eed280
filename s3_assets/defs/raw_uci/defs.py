"""The raw tables, made with the configured UCI source so that each shows where it comes from."""

from dagster import Definitions, definitions

from s3_assets.defs.configured import configured_resource
from s3_assets.defs.raw_uci.assets import raw_table_assets


@definitions
def raw_tables() -> Definitions:
    return Definitions(assets=raw_table_assets(configured_resource("uci_source")))
