"""Maintenance: the cleanup job, its (off by default) weekly schedule, and the checks that show
what a cleanup removed. Loaded as a dg defs folder."""
