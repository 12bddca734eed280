"""Group `s3_copies`: the raw tables' CSV copies under `<prefix>/raw/`."""

from __future__ import annotations

from dagster import Definitions

from s3_assets.defs.resources import S3Prefix
from s3_assets.defs.s3_copies.assets import s3_copy_assets
from s3_assets.defs.s3_copies.checks import COPY_CHECKS


def build_defs(s3_prefix: S3Prefix | None = None) -> Definitions:
    """The group; with the configured prefix, each copy shows its real S3 URI."""
    return Definitions(assets=s3_copy_assets(s3_prefix), asset_checks=COPY_CHECKS)


defs = build_defs()
