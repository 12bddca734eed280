"""The `s3-assets-cluster` console script: start, inspect and stop the local Celery cluster
(broker and workers). Never prints the broker's password."""

from __future__ import annotations

import argparse
import sys

from s3_assets.lib.errors import ConfigError
from s3_assets.local_cluster.broker import PASSWORD_FILE, ClusterError


def main(argv: list[str] | None = None) -> int:
    """`s3-assets-cluster start|status|stop`: the local broker and Celery workers."""
    parser = argparse.ArgumentParser(prog="s3-assets-cluster", description=main.__doc__)
    parser.add_argument("command", choices=["start", "status", "stop"], nargs="?", default="status")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default 2, S3_ASSETS_CLUSTER_WORKERS)")
    args = parser.parse_args(argv)
    from s3_assets.local_cluster.cluster import LocalCluster

    try:
        cluster = LocalCluster(workers=args.workers)
        if args.command == "stop":
            print("stopped" if cluster.stop() else "not running", f"({cluster.directory})")
            return 0
        status = cluster.start() if args.command == "start" else cluster.status()
    except (ClusterError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not status.running:
        print(f"not running ({cluster.directory}); `s3-assets-cluster start` starts it")
        return 3
    broker = status.broker
    assert broker is not None  # a running cluster has its broker
    print(f"broker     redis://{broker.address} (pid {broker.pid}, password in "
          f"{cluster.directory / PASSWORD_FILE}, owner-only)")
    for name, pid in sorted(status.workers.items()):
        print(f"worker     {name} pid {pid} {'answering' if name in status.answering else 'NOT answering'}")
    print(f"dir        {cluster.directory}")
    print(f"DAGSTER_HOME for runs on the cluster: export DAGSTER_HOME={cluster.dagster_home}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
