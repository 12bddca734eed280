"""Group `s3_copies`: the raw tables' CSV copies under `<prefix>/raw/`."""

from dagster import Definitions

from s3_assets.defs.s3_copies.assets import S3_COPY_ASSETS
from s3_assets.defs.s3_copies.checks import COPY_CHECKS

defs = Definitions(assets=S3_COPY_ASSETS, asset_checks=COPY_CHECKS)
