"""The notebook's steps as one plain script (the baseline for the whole-graph timing):
read the four UCI files, write them to S3 with to_csv, list the prefix once, build the file
map, and read the data files back in a loop.

    python bench/notebook_steps.py SOURCE_DIR ENDPOINT BUCKET   (credentials from AWS_* variables)
"""

import io
import sys

import boto3
import pandas as pd
from botocore.config import Config

source, endpoint, bucket = sys.argv[1:4]
prefix = "ins_dataset"
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=bucket)

train = pd.read_table(f"{source}/ticdata2000.txt", header=None)
test = pd.read_table(f"{source}/ticeval2000.txt", header=None)
ground_truth = pd.read_table(f"{source}/tictgts2000.txt", header=None)
columns = pd.read_table(f"{source}/dictionary.txt", encoding="latin-1")
for frame, key in ((train, "raw/train.csv"), (test, "raw/test.csv"), (ground_truth, "raw/gt.csv"),
                   (columns, "raw/metadata/col_info.csv")):
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=frame.to_csv(index=False).encode())

response = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
files = pd.DataFrame([{"key": o["Key"], "size": o["Size"]} for o in response.get("Contents", [])])
file_map = {key.rsplit("/", 1)[-1].split(".")[0]: key for key in files["key"]
            if len(key.rsplit(".")) == 2 and key.count("/") == 2}
frames = {name: pd.read_csv(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
          for name, key in file_map.items()}
print({name: frame.shape for name, frame in frames.items()})
