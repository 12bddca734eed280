"""awswrangler's read_csv over many objects (use_threads), in the tools venv: prints the best
time of REPEAT calls.

    python wrangler_read.py ENDPOINT PATHS_FILE REPEAT     (one s3:// URI per line)
"""

import sys
import time

import awswrangler as wr
import boto3

endpoint, paths_file, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(paths_file) as listed:
    paths = listed.read().split()
wr.config.s3_endpoint_url = endpoint
session = boto3.Session()
best = float("inf")
for _ in range(repeat):
    start = time.perf_counter()
    frame = wr.s3.read_csv(path=paths, use_threads=True, boto3_session=session)
    best = min(best, time.perf_counter() - start)
assert len(frame) > 0
print(best)
