"""Group `analysis`: listing, file map, frames and modelling table, and the change sensor."""

from dagster import Definitions

from s3_assets.defs.analysis.assets import ANALYSIS_ASSETS
from s3_assets.defs.analysis.checks import ANALYSIS_CHECKS
from s3_assets.defs.analysis.sensors import refresh_listing_job, s3_change_sensor

defs = Definitions(assets=ANALYSIS_ASSETS, asset_checks=ANALYSIS_CHECKS, jobs=[refresh_listing_job],
                   sensors=[s3_change_sensor])
