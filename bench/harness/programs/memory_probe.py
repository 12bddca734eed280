"""Peak memory of one of this project's steps, in a fresh process: RSS sampled every 2 ms
from just before the step; prints {"baseline_kb", "peak_kb", "bytes"} as JSON.

    python memory_probe.py listing|loading ENDPOINT BUCKET PREFIX   (credentials from AWS_*)
"""

import gc
import json
import os
import sys
import threading
import time

import boto3
import botocore.session
from botocore.config import Config

from s3_assets.lib.listing import list_objects
from s3_assets.lib.loading import ClientOrigin, load_frames

step, endpoint, bucket, prefix = sys.argv[1:5]
client = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
listing = list_objects(client, bucket, prefix)  # imports and warms everything the step uses
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


peak, running = 0, True


def sample() -> None:
    global peak
    while running:
        peak = max(peak, rss())
        time.sleep(0.002)


keys = dict(zip(listing["key"], listing["key"], strict=True))
sizes = dict(zip(listing["key"], listing["size"], strict=True))
total = int(listing["size"].sum())
del listing
gc.collect()
base = rss()
sampler = threading.Thread(target=sample)
sampler.start()
if step == "listing":
    result = list_objects(client, bucket, prefix)
else:
    result = load_frames(client, bucket, keys, sizes, origin=ClientOrigin(botocore.session.Session()))
running = False
sampler.join()
peak = max(peak, rss())
print(json.dumps({"baseline_kb": base // 1024, "peak_kb": peak // 1024, "bytes": total}))
