"""Maintenance: the cleanup job, its (off by default) weekly schedule, and the checks that show
what a cleanup removed."""

from dagster import Definitions

from s3_assets.defs.maintenance.checks import STALENESS_CHECKS
from s3_assets.defs.maintenance.cleanup import cleanup_job, weekly_cleanup_schedule

defs = Definitions(jobs=[cleanup_job], schedules=[weekly_cleanup_schedule], asset_checks=STALENESS_CHECKS)
