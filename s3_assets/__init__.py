"""s3-assets: the 'use S3 from a notebook' workflow as Dagster software-defined assets."""
