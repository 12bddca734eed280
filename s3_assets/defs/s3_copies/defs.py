"""The S3 copies, made with the configured prefix so that each shows its real S3 URI."""

from dagster import Definitions, definitions

from s3_assets.defs.configured import configured_resource
from s3_assets.defs.s3_copies.assets import s3_copy_assets


@definitions
def s3_copies() -> Definitions:
    return Definitions(assets=s3_copy_assets(configured_resource("s3_prefix")))
