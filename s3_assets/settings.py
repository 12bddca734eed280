"""The one reader of the `S3_ASSETS_*` environment variables.

Defaults, types, validation and descriptions live in the resources' fields
(`s3_assets.defs.resources`); this module only maps each variable onto its field when the
definitions load, and turns a refused value into a `ConfigError` that names the variable.
Secrets stay `EnvVar`s, so their values never reach the UI. An unset or empty variable leaves
the field's default, which for botocore's own settings means botocore's chain (AWS_PROFILE,
AWS_DEFAULT_REGION, AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, AWS_ENDPOINT_URL_S3, ~/.aws/config).

`python -m s3_assets.settings` prints the configuration table of docs/CONFIGURATION.md from the fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import Config, ConfigurableResource, EnvVar
from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from s3_assets.defs.io_manager import S3ParquetIOManager
from s3_assets.defs.resources import S3Connection, S3Prefix, UciSource
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.text import shown_url, without_url_secrets
from s3_assets.local_cluster.settings import ClusterSettings


@dataclass(frozen=True)
class Setting:
    """One environment variable and the resource field it sets."""

    var: str
    resource: type[ConfigurableResource] | type[Config]
    field: str
    # Set but empty means the empty value (the bucket root, no offline copy), not the default.
    empty_is_a_value: bool = False

    @property
    def info(self) -> Any:
        return self.resource.model_fields[self.field]

    @property
    def default(self) -> str:
        default = self.info.default
        if default is None or default is PydanticUndefined:
            return ""
        return str(default).lower() if isinstance(default, bool) else str(default)

    @property
    def description(self) -> str:
        """The field's description, with its allowed range when it has one (docs/CONFIGURATION.md)."""
        allowed = allowed_range(self.resource, self.field)
        return (self.info.description or "") + (f"; allowed: {allowed}" if allowed else "")


def allowed_range(resource: type[ConfigurableResource] | type[Config], field: str) -> str | None:
    """A numeric field's range as declared by its `Field(ge/gt/le)` ("1 to 20", "more than 0, at
    most 300"), or None: the one declaration both the table and the refusal quote."""
    low = high = None
    above = False
    for constraint in resource.model_fields[field].metadata:  # pydantic's annotated_types Ge, Gt, Le
        if getattr(constraint, "ge", None) is not None:
            low = constraint.ge
        elif getattr(constraint, "gt", None) is not None:
            low, above = constraint.gt, True
        elif getattr(constraint, "le", None) is not None:
            high = constraint.le
    if low is None or high is None:
        return None
    return f"more than {low:g}, at most {high:g}" if above else f"{low:g} to {high:g}"


SETTINGS: tuple[Setting, ...] = (
    Setting("S3_ASSETS_TARGET", S3Connection, "target"),
    Setting("S3_ASSETS_BUCKET", S3Prefix, "bucket"),
    Setting("S3_ASSETS_PREFIX", S3Prefix, "prefix", empty_is_a_value=True),
    Setting("S3_ASSETS_IO_PREFIX", S3Prefix, "io_prefix"),
    Setting("S3_ASSETS_CREATE_BUCKET", S3Prefix, "create_bucket"),
    Setting("S3_ASSETS_ENDPOINT_URL", S3Connection, "endpoint_url"),
    Setting("S3_ASSETS_REGION", S3Connection, "region_name"),
    Setting("S3_ASSETS_PROFILE", S3Connection, "profile_name"),
    Setting("S3_ASSETS_MAX_ATTEMPTS", S3Connection, "max_attempts"),
    Setting("S3_ASSETS_RETRY_MODE", S3Connection, "retry_mode"),
    Setting("S3_ASSETS_CONNECT_TIMEOUT", S3Connection, "connect_timeout"),
    Setting("S3_ASSETS_READ_TIMEOUT", S3Connection, "read_timeout"),
    Setting("S3_ASSETS_EXPECTED_BUCKET_OWNER", S3Prefix, "expected_bucket_owner"),
    Setting("S3_ASSETS_SSE", S3Prefix, "server_side_encryption"),
    Setting("S3_ASSETS_SSE_KMS_KEY_ID", S3Prefix, "sse_kms_key_id"),
    Setting("S3_ASSETS_SOURCE", UciSource, "base"),
    Setting("S3_ASSETS_OFFLINE_SOURCE", UciSource, "offline_dir", empty_is_a_value=True),
    Setting("S3_ASSETS_CACHE_DIR", UciSource, "cache_dir"),
    Setting("S3_ASSETS_SOURCE_TIMEOUT", UciSource, "timeout"),
    Setting("S3_ASSETS_SOURCE_RETRIES", UciSource, "retries"),
    Setting("S3_ASSETS_LOCAL_DIR", S3Connection, "local_dir"),
    Setting("S3_ASSETS_LOCAL_S3_PORT", S3Connection, "local_s3_port"),
    Setting("S3_ASSETS_LOCAL_MASTER_PORT", S3Connection, "local_master_port"),
    Setting("S3_ASSETS_LOCAL_VOLUME_PORT", S3Connection, "local_volume_port"),
    Setting("S3_ASSETS_LOCAL_FILER_PORT", S3Connection, "local_filer_port"),
    Setting("S3_ASSETS_LOCAL_ADMIN_PORT", S3Connection, "local_admin_port"),
    Setting("S3_ASSETS_GRPC_PORT_OFFSET", S3Connection, "grpc_port_offset"),
    Setting("S3_ASSETS_WEED_BINARY", S3Connection, "weed_binary"),
    Setting("S3_ASSETS_CLUSTER_DIR", ClusterSettings, "cluster_dir"),
    Setting("S3_ASSETS_CLUSTER_WORKERS", ClusterSettings, "workers"),
    Setting("S3_ASSETS_CELERY_BROKER_URL", ClusterSettings, "celery_broker_url"),
    Setting("S3_ASSETS_REDIS_BINARY", ClusterSettings, "redis_binary"),
)

# Secrets: passed as EnvVar (the UI shows the variable's name, never its value).
SECRETS = {
    "S3_ASSETS_ACCESS_KEY_ID": ("aws_access_key_id", "access key for `aws`/`custom`; empty: botocore's chain"),
    "S3_ASSETS_SECRET_ACCESS_KEY": ("aws_secret_access_key", "secret key paired with `S3_ASSETS_ACCESS_KEY_ID`"),
}

ENV_VARS = (*(s.var for s in SETTINGS), *SECRETS)


def _values(resource: type[ConfigurableResource] | type[Config], env: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for setting in SETTINGS:
        if setting.resource is not resource or setting.var not in env:
            continue
        raw = env[setting.var].strip()
        if raw or setting.empty_is_a_value:
            values[setting.field] = raw
    return values


def _build(resource: type[ConfigurableResource] | type[Config], env: Mapping[str, str], **extra: Any) -> Any:
    """Build one resource from the environment; a refused value names its variable(s)."""
    values = _values(resource, env)
    try:
        return resource(**{**values, **extra})
    except ValidationError as error:
        raise _named(resource, error, values) from None  # the cause is restated in full


def _named(resource: type[ConfigurableResource] | type[Config], error: ValidationError, values: Mapping[str, str]) -> ConfigError:
    """pydantic's error, restated with the S3_ASSETS_* variables that set the fields."""
    var_of = {s.field: s.var for s in SETTINGS if s.resource is resource}
    problems, variables = [], []
    for detail in error.errors():
        cause = (detail.get("ctx") or {}).get("error")
        fields = getattr(cause, "fields", ()) or tuple(str(part) for part in detail["loc"][:1])
        names = [var_of.get(field, field) for field in fields]
        # A value may be a URL with a password in it (endpoint, source, broker): shown without.
        # a name that is no field: botocore's own variable, read from the environment (AWS_MAX_ATTEMPTS)
        shown = ", ".join(f"{name}={shown_url(values[field])!r}" if field in values
                          else f"{name} (default)" if field in resource.model_fields else name
                          for field, name in zip(fields, names, strict=True))
        message = without_url_secrets(str(cause) if isinstance(cause, ConfigError) else detail["msg"], *values.values())
        allowed = allowed_range(resource, fields[0]) if len(fields) == 1 and fields[0] in resource.model_fields else None
        if allowed and detail["type"] in _OUT_OF_RANGE:
            message = f"out of range: use {allowed}"
        problems.append(f"{shown}: {message}")
        variables += names
    return ConfigError("invalid configuration: " + "; ".join(problems), fields=tuple(variables))


_OUT_OF_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def build_resources(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The resources for one environment: the only place S3_ASSETS_* variables are read."""
    secrets = {}
    target = env.get("S3_ASSETS_TARGET", "").strip().lower()
    if env.get("S3_ASSETS_ACCESS_KEY_ID", "").strip() and target != "local" and target:
        secrets = {field: EnvVar(var) for var, (field, _) in SECRETS.items()}
    connection = _build(S3Connection, env, **secrets)
    s3_prefix = _build(S3Prefix, env, s3=connection)
    source = _build(UciSource, env)
    if "@" in source.base and os.environ.get("S3_ASSETS_SOURCE", "").strip() == source.base:
        # A user part (basic auth): as an EnvVar (resolved when used), so that no page shows the password.
        source = _build(UciSource, env, base=EnvVar("S3_ASSETS_SOURCE"))
    return {
        "s3_prefix": s3_prefix,
        "uci_source": source,
        "io_manager": S3ParquetIOManager(s3_prefix=s3_prefix),
    }


def load_connection(env: Mapping[str, str] = os.environ) -> S3Connection:
    """Only the connection to the embedded S3 (for `s3-assets-local`, whatever the target)."""
    return _build(S3Connection, {k: v for k, v in env.items() if k != "S3_ASSETS_TARGET"})


def load_cluster_settings(env: Mapping[str, str] = os.environ) -> ClusterSettings:
    """The Celery cluster's settings (executor, run launcher, workers, `s3-assets-cluster`)."""
    return _build(ClusterSettings, env)


def configuration_table() -> str:
    """docs/CONFIGURATION.md's configuration table, generated from the fields' defaults and descriptions."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "(empty)"
        rows.append(f"| `{setting.var}` | {default} | {setting.description} |")
    for var, (_, description) in SECRETS.items():
        rows.append(f"| `{var}` | (empty) | {description} (read through `EnvVar`) |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(configuration_table())
