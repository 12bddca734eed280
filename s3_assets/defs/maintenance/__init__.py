"""Maintenance: the cleanup job and its (off by default) weekly schedule."""

from dagster import Definitions

from s3_assets.defs.maintenance.cleanup import cleanup_job, weekly_cleanup_schedule

defs = Definitions(jobs=[cleanup_job], schedules=[weekly_cleanup_schedule])
