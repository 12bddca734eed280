"""awswrangler's listing, in the tools venv: prints the best time of REPEAT calls.

    python wrangler_list.py ENDPOINT S3_PREFIX_URI EXPECTED REPEAT
"""

import sys
import time

import awswrangler as wr
import boto3

endpoint, uri, expected, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
wr.config.s3_endpoint_url = endpoint
session = boto3.Session()
best = float("inf")
for _ in range(repeat):
    start = time.perf_counter()
    keys = wr.s3.list_objects(uri, boto3_session=session)
    best = min(best, time.perf_counter() - start)
assert len(keys) == expected, (len(keys), expected)
print(best)
