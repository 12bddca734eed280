"""The Dagster definitions, one package per asset group (`raw_uci`, `s3_copies`, `analysis`)
plus `maintenance` and the whole-graph jobs in `refresh`. Resources live in `resources`."""

from dagster import Definitions

from s3_assets.defs import analysis, cluster, maintenance, raw_uci, s3_copies
from s3_assets.defs.refresh import daily_refresh_schedule, refresh_all_job, refresh_all_multiprocess_job

GROUPS = (raw_uci, s3_copies, analysis, maintenance)
# Definitions beside the groups: jobs on the Celery cluster.
EXTRAS = (cluster,)

graph_defs = Definitions.merge(
    *(group.defs for group in GROUPS),
    *(extra.defs for extra in EXTRAS),
    Definitions(jobs=[refresh_all_job, refresh_all_multiprocess_job], schedules=[daily_refresh_schedule]),
)

# The asset graph as lists, for `materialize([...])` in tests and scripts.
ASSETS = [a for group in GROUPS for a in (group.defs.assets or [])]
CHECKS = [c for group in GROUPS for c in (group.defs.asset_checks or [])]
