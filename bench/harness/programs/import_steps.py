"""What `import s3_assets.definitions` costs, step by step in one process: each line's time is
what that import adds after the ones before it (a CLI run loads the instance storage
anyway, so it comes before dagster_aws). Prints [[module, seconds], ...] as JSON."""

import importlib
import json
import time

STEPS = ["numpy", "pandas", "pyarrow", "boto3", "dagster", "dagster._cli", "dagster._core.storage.runs.sqlite",
         "dagster._core.storage.event_log.sqlite", "dagster_aws.s3",
         "s3_assets.lib.listing", "s3_assets.lib.loading", "s3_assets.defs.resources", "s3_assets.definitions"]
costs = []
for module in STEPS:
    start = time.perf_counter()
    importlib.import_module(module)
    costs.append([module, time.perf_counter() - start])
print(json.dumps(costs))
