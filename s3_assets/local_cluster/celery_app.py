"""The Celery app the local workers run (`celery -A s3_assets.local_cluster.celery_app worker`):
dagster-celery's tasks (one step, one run) on the broker from `settings.broker_url()`."""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import (
    create_execute_job_task,
    create_resume_job_task,
    create_task,
)

from s3_assets.local_cluster.settings import app_args

app = make_app(app_args())
execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
