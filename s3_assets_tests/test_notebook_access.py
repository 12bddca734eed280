"""A notebook reads the project's copies with pandas and s3fs, as the original notebook did:
`pd.read_csv("s3://...", storage_options=...)` against the configured target."""

from __future__ import annotations

import pandas as pd

from s3_assets.settings import build_resources


def test_pandas_reads_a_copy_through_s3fs_with_the_storage_options(s3_server, s3, bucket):
    body = b"ORIGIN,CARAVAN\ntrain,0\ntrain,1\n"
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=body)
    s3_prefix = build_resources({"S3_ASSETS_LOCAL_DIR": s3_server.local_dir, "S3_ASSETS_BUCKET": bucket})["s3_prefix"]
    uri = s3_prefix.uri(s3_prefix.key("raw/train.csv"))
    assert uri == f"s3://{bucket}/ins_dataset/raw/train.csv"
    frame = pd.read_csv(uri, storage_options=s3_prefix.s3.storage_options())
    assert frame.to_csv(index=False).encode() == body
