"""One SeaweedFS for the whole run, one latency proxy per round trip in front of it, and the
key spaces seeded as users have them."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from s3_assets.lib.listing import list_objects
from s3_assets.local_s3.server import EmbeddedS3, find_free_ports

BUCKET = "bench"
HERE = Path(__file__).resolve().parent


class LatencyProxy:
    """bench/harness/latency_proxy.py in its own process (it must not share our GIL)."""

    def __init__(self, upstream_port: int, rtt_ms: float):
        self.rtt_ms = rtt_ms
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "latency_proxy.py"), "--upstream", f"127.0.0.1:{upstream_port}",
             "--rtt-ms", str(rtt_ms)], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.process.kill()
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def flat_key(i: int, n: int) -> str:
    return f"raw/f{i + 1:05d}.csv"


def dated_key(i: int, n: int, parts_per_day: int = 100) -> str:
    day = dt.date(2024, 1, 1) + dt.timedelta(days=i // parts_per_day)
    return f"raw/{day:%Y/%m/%d}/part-{i % parts_per_day + 1:04d}.csv"


KEY_SPACES: dict[str, Callable[[int, int], str]] = {"flat": flat_key, "date-partitioned": dated_key}


@dataclass
class Target:
    """Where the tools point for one round trip: the proxy's endpoint and its environment."""

    rtt_ms: float
    endpoint: str
    env: dict[str, str]
    client: object


class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.server = EmbeddedS3(workdir / "seaweedfs", find_free_ports())
        self.state = self.server.ensure_running()
        self.creds = self.server.credentials()
        self.direct = self.make_client(self.state.endpoint_url)
        self.direct.create_bucket(Bucket=BUCKET)
        self.proxies: dict[float, LatencyProxy] = {}
        self.trees: dict[tuple, Path] = {}

    def make_client(self, endpoint: str, pool: int = 64):
        return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=self.creds.access_key_id,
                            aws_secret_access_key=self.creds.secret_access_key,
                            config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                                          retries={"total_max_attempts": 5, "mode": "standard"}))

    def env_for(self, endpoint: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_ASSETS_"))}
        return {**env, "AWS_ACCESS_KEY_ID": self.creds.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.creds.secret_access_key, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}

    def target(self, rtt_ms: float) -> Target:
        """Every tool reaches the server through the proxy of this round trip (0 ms included)."""
        if rtt_ms not in self.proxies:
            self.proxies[rtt_ms] = LatencyProxy(self.state.ports.s3, rtt_ms)
        endpoint = self.proxies[rtt_ms].endpoint
        return Target(rtt_ms, endpoint, self.env_for(endpoint), self.make_client(endpoint))

    def local_tree(self, names: list[str], make: Callable[[int], bytes], body: object) -> Path:
        """The files to upload, written once per key list and body and reused (deleting seeds
        the same 10,000 objects for every tool at every round trip)."""
        cache_key = (tuple(names), body if isinstance(body, bytes) else id(body))
        if cache_key not in self.trees:
            local = Path(tempfile.mkdtemp(dir=self.workdir))
            for i, name in enumerate(names):
                (local / name).parent.mkdir(parents=True, exist_ok=True)
                (local / name).write_bytes(make(i))
            self.trees[cache_key] = local
        return self.trees[cache_key]

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.server.stop()

    # -- seeding (straight to the server, not through a proxy) ---------------------------------
    def seed(self, prefix: str, count: int, key: Callable[[int, int], str] = flat_key,
             body: bytes | Callable[[int], bytes] = b"a,b\n1,2\n") -> list[str]:
        """count objects under prefix/ named by `key`; s5cmd when present, else threads."""
        make = body if callable(body) else (lambda i: body)
        names = [key(i, count) for i in range(count)]
        s5cmd = tool_path("s5cmd")
        if s5cmd and count > 200:
            subprocess.run([s5cmd, "--endpoint-url", self.state.endpoint_url, "--numworkers", "64", "cp",
                            f"{self.local_tree(names, make, body)}/*", f"s3://{BUCKET}/{prefix}/"],
                           env=self.env_for(self.state.endpoint_url), check=True, capture_output=True)
        else:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: self.direct.put_object(Bucket=BUCKET, Key=f"{prefix}/{names[i]}",
                                                               Body=make(i)), range(count)))
        listed = len(list_objects(self.direct, BUCKET, f"{prefix}/"))
        if listed != count:
            raise RuntimeError(f"seeding {prefix}: {listed} objects listed, {count} expected")
        return [f"{prefix}/{name}" for name in names]


TOOLS_BIN = HERE.parent / ".tools-venv" / "bin"


def tool_path(name: str) -> str | None:
    path = TOOLS_BIN / name
    return str(path) if path.exists() else shutil.which(name)
