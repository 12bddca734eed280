"""The local Celery cluster: a password-protected Redis-protocol broker and worker processes that
run Dagster steps and runs. Imported only by the cluster's commands, executor and launcher."""
