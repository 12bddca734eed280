"""Configuration from the environment (one reader onto the resources' fields), the code location
as Dagster loads it, and schedules. No S3 server: clients are built but never called."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DefaultScheduleStatus, EnvVar, build_schedule_context

from s3_assets.definitions import build_definitions
from s3_assets.defs.resources import (
    DEFAULT_BUCKET,
    S3Connection,
    S3Prefix,
    normalise_prefix,
    prefixes_overlap,
    validate_bucket_name,
)
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.source import UCI_BASE_URL
from s3_assets.settings import ENV_VARS, SETTINGS, build_resources, configuration_table

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION_PAGE = ROOT / "docs" / "CONFIGURATION.md"  # the table moved there from README

# The public interface: every variable the project has ever documented keeps working.
PUBLIC_VARIABLES = [
    "S3_ASSETS_TARGET", "S3_ASSETS_BUCKET", "S3_ASSETS_PREFIX", "S3_ASSETS_CREATE_BUCKET", "S3_ASSETS_ENDPOINT_URL",
    "S3_ASSETS_REGION", "S3_ASSETS_PROFILE", "S3_ASSETS_ACCESS_KEY_ID", "S3_ASSETS_SECRET_ACCESS_KEY",
    "S3_ASSETS_MAX_ATTEMPTS", "S3_ASSETS_RETRY_MODE", "S3_ASSETS_CONNECT_TIMEOUT", "S3_ASSETS_READ_TIMEOUT",
    "S3_ASSETS_EXPECTED_BUCKET_OWNER", "S3_ASSETS_SSE", "S3_ASSETS_SSE_KMS_KEY_ID", "S3_ASSETS_IO_PREFIX",
    "S3_ASSETS_SOURCE", "S3_ASSETS_OFFLINE_SOURCE", "S3_ASSETS_CACHE_DIR", "S3_ASSETS_SOURCE_TIMEOUT",
    "S3_ASSETS_SOURCE_RETRIES", "S3_ASSETS_LOCAL_DIR",
    "S3_ASSETS_LOCAL_S3_PORT", "S3_ASSETS_LOCAL_MASTER_PORT", "S3_ASSETS_LOCAL_VOLUME_PORT",
    "S3_ASSETS_LOCAL_FILER_PORT", "S3_ASSETS_LOCAL_ADMIN_PORT", "S3_ASSETS_GRPC_PORT_OFFSET", "S3_ASSETS_WEED_BINARY",
    "S3_ASSETS_CLUSTER_DIR", "S3_ASSETS_CLUSTER_WORKERS", "S3_ASSETS_CELERY_BROKER_URL", "S3_ASSETS_REDIS_BINARY",
]


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch, tmp_path):
    """botocore reads AWS_* and ~/.aws: each test starts from none of them."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def resources(env: dict[str, str]) -> dict:
    return build_resources(env)


def test_defaults_are_the_embedded_s3_and_the_notebooks_names():
    built = resources({})
    s3_prefix: S3Prefix = built["s3_prefix"]
    assert s3_prefix.s3.target == "local" and s3_prefix.prefix == "ins_dataset"
    assert s3_prefix.resolved_bucket() == DEFAULT_BUCKET == "s3-assets"
    assert built["uci_source"].base == UCI_BASE_URL
    ports = s3_prefix.s3.local_ports().listening().values()
    assert 8888 not in ports and 3000 not in ports  # Jupyter's and Dagster's own ports stay free


def test_every_public_variable_is_read():
    assert sorted(ENV_VARS) == sorted(PUBLIC_VARIABLES)


@pytest.mark.parametrize(("var", "raw", "attribute", "value"), [
    ("S3_ASSETS_TARGET", "AWS", "s3.target", "aws"),
    ("S3_ASSETS_BUCKET", "my-bucket", "bucket", "my-bucket"),
    ("S3_ASSETS_PREFIX", "a/b", "prefix", "a/b"),
    ("S3_ASSETS_IO_PREFIX", "outputs", "io_prefix", "outputs"),
    ("S3_ASSETS_CREATE_BUCKET", "yes", "create_bucket", True),
    ("S3_ASSETS_MAX_ATTEMPTS", "9", "s3.max_attempts", 9),
    ("S3_ASSETS_READ_TIMEOUT", "2.5", "s3.read_timeout", 2.5),
    ("S3_ASSETS_LOCAL_FILER_PORT", "18890", "s3.local_filer_port", 18890),
    ("S3_ASSETS_WEED_BINARY", "/opt/weed", "s3.weed_binary", "/opt/weed"),
    ("S3_ASSETS_SSE", "aws:kms", "server_side_encryption", "aws:kms"),
    ("S3_ASSETS_REGION", "  ", "s3.region_name", None),  # blank: botocore's chain
])
def test_each_variable_sets_its_field(var, raw, attribute, value):
    s3_prefix = resources({var: raw})["s3_prefix"]
    for part in attribute.split("."):
        s3_prefix = getattr(s3_prefix, part)
    assert s3_prefix == value


def test_the_embedded_servers_settings_are_fields_of_the_connection():
    env = {"S3_ASSETS_LOCAL_DIR": "var/s3", "S3_ASSETS_WEED_BINARY": "/opt/weed/bin/weed",
           "S3_ASSETS_LOCAL_S3_PORT": "18333", "S3_ASSETS_LOCAL_MASTER_PORT": "19433",
           "S3_ASSETS_LOCAL_VOLUME_PORT": "19340", "S3_ASSETS_LOCAL_FILER_PORT": "18890",
           "S3_ASSETS_LOCAL_ADMIN_PORT": "23000", "S3_ASSETS_GRPC_PORT_OFFSET": "1000"}
    server = resources(env)["s3_prefix"].s3.embedded_server()  # built, not started
    assert server.data_dir == ROOT / "var" / "s3" and server.weed_binary == "/opt/weed/bin/weed"
    assert server.requested_ports.listening() == {
        "s3.port": 18333, "s3.port.grpc": 19333, "master.port": 19433, "master.port.grpc": 20433,
        "volume.port": 19340, "volume.port.grpc": 20340, "filer.port": 18890, "filer.port.grpc": 19890,
        "admin.port": 23000, "admin.port.grpc": 24000}
    assert server.status() is None


def test_offline_source_empty_means_none_and_unset_means_the_shared_copy():
    assert resources({"S3_ASSETS_OFFLINE_SOURCE": ""})["uci_source"].offline_dir == ""
    assert resources({})["uci_source"].offline_dir == "../shared/data/coil2000"


def test_empty_prefix_is_the_bucket_root_which_holds_the_io_prefix():
    with pytest.raises(ConfigError, match="S3_ASSETS_PREFIX='': refusing to delete with an empty or root prefix"):
        resources({"S3_ASSETS_PREFIX": ""})


def test_aws_without_bucket_leaves_it_to_the_sagemaker_rule():
    assert resources({"S3_ASSETS_TARGET": "aws"})["s3_prefix"].bucket == ""


@pytest.mark.parametrize(("env", "message"), [
    ({"S3_ASSETS_TARGET": "gcs"}, "S3_ASSETS_TARGET='gcs'"),
    ({"S3_ASSETS_TARGET": "custom"}, "S3_ASSETS_TARGET='custom', S3_ASSETS_ENDPOINT_URL (default): target 'custom' needs an endpoint"),
    ({"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "127.0.0.1:9000"}, "S3_ASSETS_ENDPOINT_URL='127.0.0.1:9000'"),
    ({"S3_ASSETS_MAX_ATTEMPTS": "many"}, "S3_ASSETS_MAX_ATTEMPTS='many'"),
    ({"S3_ASSETS_MAX_ATTEMPTS": "0"}, "S3_ASSETS_MAX_ATTEMPTS='0': out of range: use 1 to 20"),
    ({"S3_ASSETS_MAX_ATTEMPTS": "-3"}, "S3_ASSETS_MAX_ATTEMPTS='-3'"),
    ({"S3_ASSETS_RETRY_MODE": "fast"}, "S3_ASSETS_RETRY_MODE='fast'"),
    ({"S3_ASSETS_CREATE_BUCKET": "maybe"}, "S3_ASSETS_CREATE_BUCKET='maybe'"),
    ({"S3_ASSETS_READ_TIMEOUT": "-1"}, "S3_ASSETS_READ_TIMEOUT='-1': out of range: use more than 0, at most 3600"),
    ({"S3_ASSETS_READ_TIMEOUT": "0"}, "S3_ASSETS_READ_TIMEOUT='0'"),
    ({"S3_ASSETS_READ_TIMEOUT": "nan"}, "S3_ASSETS_READ_TIMEOUT='nan'"),
    ({"S3_ASSETS_READ_TIMEOUT": "inf"}, "S3_ASSETS_READ_TIMEOUT='inf'"),
    ({"S3_ASSETS_READ_TIMEOUT": "-inf"}, "S3_ASSETS_READ_TIMEOUT='-inf'"),
    ({"S3_ASSETS_READ_TIMEOUT": "soon"}, "S3_ASSETS_READ_TIMEOUT='soon'"),
    ({"S3_ASSETS_CONNECT_TIMEOUT": "0"}, "S3_ASSETS_CONNECT_TIMEOUT='0'"),
    ({"S3_ASSETS_CONNECT_TIMEOUT": "NaN"}, "S3_ASSETS_CONNECT_TIMEOUT='NaN'"),
    ({"S3_ASSETS_CONNECT_TIMEOUT": "1e999"}, "S3_ASSETS_CONNECT_TIMEOUT='1e999'"),
    ({"S3_ASSETS_BUCKET": "Upper_Case"}, "S3_ASSETS_BUCKET='Upper_Case': invalid bucket name"),
    ({"S3_ASSETS_BUCKET": "a..b"}, "S3_ASSETS_BUCKET='a..b'"),
    ({"S3_ASSETS_PREFIX": "data/../other"}, "S3_ASSETS_PREFIX='data/../other': prefix 'data/../other' has a '.' or '..' segment"),
    ({"S3_ASSETS_PREFIX": "./data"}, "S3_ASSETS_PREFIX='./data'"),
    ({"S3_ASSETS_PREFIX": ".."}, "S3_ASSETS_PREFIX='..'"),
    ({"S3_ASSETS_PREFIX": "a//b"}, "S3_ASSETS_PREFIX='a//b': prefix 'a//b' has an empty segment"),
    ({"S3_ASSETS_PREFIX": "a\x01b"}, "control character"),
    ({"S3_ASSETS_PREFIX": "x" * 600}, "longer than 512 bytes"),
    ({"S3_ASSETS_IO_PREFIX": "io/./x"}, "S3_ASSETS_IO_PREFIX='io/./x'"),
    ({"S3_ASSETS_LOCAL_S3_PORT": "80"}, "S3_ASSETS_LOCAL_S3_PORT='80': out of range: use 1024 to 65535"),
    ({"S3_ASSETS_GRPC_PORT_OFFSET": "60000"}, "S3_ASSETS_GRPC_PORT_OFFSET='60000'"),
    ({"S3_ASSETS_LOCAL_FILER_PORT": "9333"}, "S3_ASSETS_LOCAL_FILER_PORT='9333': embedded S3 ports master.port and filer.port are both 9333"),
    ({"S3_ASSETS_EXPECTED_BUCKET_OWNER": "me"}, "S3_ASSETS_EXPECTED_BUCKET_OWNER='me'"),
    ({"S3_ASSETS_SSE": "rot13"}, "S3_ASSETS_SSE='rot13'"),
])
def test_bad_settings_fail_at_load_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resources(env)


def test_cluster_settings_come_from_the_same_reader():
    """The Celery cluster is no resource, but its variables are fields read the same way."""
    from s3_assets.settings import load_cluster_settings

    defaults = load_cluster_settings({})
    assert (defaults.workers, defaults.celery_broker_url, defaults.redis_binary) == (2, "", "")
    chosen = load_cluster_settings({"S3_ASSETS_CLUSTER_WORKERS": " 5 ", "S3_ASSETS_REDIS_BINARY": "/opt/redis",
                                    "S3_ASSETS_CLUSTER_DIR": "/tmp/c"})
    assert (chosen.workers, chosen.redis_binary, chosen.cluster_dir) == (5, "/opt/redis", "/tmp/c")
    for raw in ("0", "65", "two"):
        with pytest.raises(ConfigError, match=re.escape(f"S3_ASSETS_CLUSTER_WORKERS={raw!r}")):
            load_cluster_settings({"S3_ASSETS_CLUSTER_WORKERS": raw})


@pytest.mark.parametrize(("prefix", "io_prefix"), [
    ("ins_dataset", "ins_dataset"),
    ("/ins_dataset/", "ins_dataset"),
    ("ins_dataset", "ins_dataset/dagster-io"),
    ("dagster-io/data", "dagster-io"),
    ("ins_dataset", "/"),
])
def test_overlapping_prefixes_are_refused_naming_both_variables(prefix, io_prefix):
    with pytest.raises(ConfigError) as raised:
        resources({"S3_ASSETS_PREFIX": prefix, "S3_ASSETS_IO_PREFIX": io_prefix})
    assert f"S3_ASSETS_PREFIX={prefix!r}" in str(raised.value), str(raised.value)
    assert "S3_ASSETS_IO_PREFIX" in str(raised.value) and "overlap" in str(raised.value)


def test_overlap_is_refused_when_the_resource_is_built_in_code_too():
    with pytest.raises(ValueError, match="overlap"):  # pydantic's ValidationError, from our validator
        S3Prefix(s3=S3Connection(), prefix="a", io_prefix="a/b")


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("ins_dataset", "ins_dataset2", False), ("ins", "ins_dataset", False), ("a/b", "a/c", False),
    ("a", "a/b", True), ("a/b/", "a", True), ("x", "", True),
])
def test_prefix_overlap_is_by_segments_not_by_characters(a, b, overlap):
    assert prefixes_overlap(a, b) is overlap and prefixes_overlap(b, a) is overlap


@pytest.mark.parametrize("name", ["ab", "Upper", "under_score", "-dash", "a..b", "192.168.1.1", "x" * 64])
def test_invalid_bucket_names_are_refused(name):
    with pytest.raises(ConfigError, match="invalid bucket name"):
        validate_bucket_name(name)


@pytest.mark.parametrize(("raw", "root"), [
    ("ins_dataset", "ins_dataset/"), ("/ins_dataset/", "ins_dataset/"), ("a/b", "a/b/"), ("", ""), ("/", ""),
])
def test_prefix_normalisation(raw, root):
    assert normalise_prefix(raw) == root


def test_the_fields_are_the_one_source_of_defaults_and_descriptions():
    for setting in SETTINGS:
        assert setting.description, f"{setting.resource.__name__}.{setting.field} has no description"
    assert S3Connection().read_timeout == 60.0 and resources({})["s3_prefix"].s3.read_timeout == 60.0


def test_the_configuration_table_is_generated_from_the_fields():
    assert configuration_table() in CONFIGURATION_PAGE.read_text(), (
        "docs/CONFIGURATION.md's table is out of date: paste `python -m s3_assets.settings` into it"
    )


def test_readme_points_to_the_configuration_table_and_fits_a_first_read():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/CONFIGURATION.md)" in readme and "| `S3_ASSETS_" not in readme
    assert len(readme.splitlines()) <= 200
    for page in re.findall(r"\]\((docs/[A-Z_]+\.md)", readme):
        assert (ROOT / page).is_file(), page


# -- botocore's own settings apply when S3_ASSETS_* leaves them unset ---------------------------
def custom_client(env: dict[str, str]):
    return resources({"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://127.0.0.1:9", **env})[
        "s3_prefix"].s3.get_client()


def test_unset_settings_use_our_defaults_when_botocore_has_none():
    client = custom_client({})
    assert client.meta.region_name == "us-east-1"  # botocore's fallback for s3
    assert client.meta.config.retries == {"total_max_attempts": 5, "mode": "standard"}


def test_aws_environment_variables_apply_when_ours_are_unset(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    client = custom_client({})
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries["total_max_attempts"] == 7 and client.meta.config.retries["mode"] == "adaptive"
    ours = custom_client({"S3_ASSETS_REGION": "ap-south-1", "S3_ASSETS_MAX_ATTEMPTS": "2", "S3_ASSETS_RETRY_MODE": "legacy"})
    assert ours.meta.region_name == "ap-south-1"
    assert ours.meta.config.retries == {"total_max_attempts": 2, "mode": "legacy"}


def test_aws_profile_config_applies_when_ours_are_unset(monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile analyst]\nregion = eu-central-1\nmax_attempts = 4\nretry_mode = adaptive\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "analyst")
    client = custom_client({})
    assert client.meta.region_name == "eu-central-1"
    assert client.meta.config.retries["total_max_attempts"] == 4 and client.meta.config.retries["mode"] == "adaptive"
    monkeypatch.delenv("AWS_PROFILE")
    assert custom_client({"S3_ASSETS_PROFILE": "analyst"}).meta.region_name == "eu-central-1"


def test_aws_endpoint_url_s3_serves_a_custom_target_without_ours(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:19000")
    s3_prefix = resources({"S3_ASSETS_TARGET": "custom"})["s3_prefix"]
    assert s3_prefix.s3.get_client().meta.endpoint_url == "http://127.0.0.1:19000"


def test_sagemaker_bucket_region_follows_the_aws_region_chain(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s3_prefix = resources({"S3_ASSETS_TARGET": "aws"})["s3_prefix"]
    assert s3_prefix.s3.region_name is None and s3_prefix.s3.aws_session().region_name == "eu-west-1"
    assert "region=eu-west-1" in S3Prefix(s3=s3_prefix.s3, bucket="bkt").browse_url("ins_dataset/raw/x.csv")


def test_secrets_reach_the_resource_only_as_env_var_names():
    env = {"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://127.0.0.1:9",
           "S3_ASSETS_ACCESS_KEY_ID": "AKIAEXAMPLE", "S3_ASSETS_SECRET_ACCESS_KEY": "sekrit"}
    s3_prefix = resources(env)["s3_prefix"]
    assert s3_prefix.s3.aws_secret_access_key == EnvVar("S3_ASSETS_SECRET_ACCESS_KEY")
    assert "sekrit" not in repr(s3_prefix)


def test_a_refused_value_is_named_but_a_secret_never_shown():
    env = {"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://127.0.0.1:9",
           "S3_ASSETS_SECRET_ACCESS_KEY": "sekrit-value", "S3_ASSETS_ACCESS_KEY_ID": "AKIAEXAMPLE",
           "S3_ASSETS_READ_TIMEOUT": "nan"}
    with pytest.raises(ConfigError) as raised:
        resources(env)
    assert "S3_ASSETS_READ_TIMEOUT" in str(raised.value) and "sekrit" not in str(raised.value)


def test_definitions_load_with_assets_jobs_and_schedules():
    defs = build_definitions({})
    names = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"train", "test", "ground_truth", "dictionary_text", "train_csv", "test_csv", "gt_csv", "col_info_csv",
            "s3_listing", "file_map", "data_dictionary", "dataframes"} <= names
    assert defs.resolve_job_def("cleanup_job") and defs.resolve_job_def("refresh_all")


def test_schedules():
    defs = build_definitions({})
    daily = defs.resolve_schedule_def("daily_refresh")
    cleanup = defs.resolve_schedule_def("weekly_cleanup")
    assert daily.default_status == DefaultScheduleStatus.RUNNING
    assert cleanup.default_status == DefaultScheduleStatus.STOPPED
    assert daily.job_name == "refresh_all" and cleanup.job_name == "cleanup_job"
    [request] = list(daily.evaluate_tick(build_schedule_context()).run_requests)
    assert request.job_name in (None, "refresh_all")
    [cleanup_request] = list(cleanup.evaluate_tick(build_schedule_context()).run_requests)
    assert cleanup_request.run_config == {"ops": {"delete_objects_under_prefix": {"config": {"dry_run": False}}}}


@pytest.mark.integration
def test_definitions_validate_fails_on_overlapping_prefixes_naming_both_variables(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_ASSETS_", "AWS_"))}
    env.update(DAGSTER_HOME=str(tmp_path), S3_ASSETS_PREFIX="dagster-io/data", S3_ASSETS_IO_PREFIX="dagster-io")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "s3_assets.definitions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "S3_ASSETS_PREFIX='dagster-io/data'" in output and "S3_ASSETS_IO_PREFIX='dagster-io'" in output


# -- pandas/s3fs storage_options --------------------------------------------------------------
def test_storage_options_for_a_custom_endpoint_resolve_the_secrets(monkeypatch):
    monkeypatch.setenv("S3_ASSETS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("S3_ASSETS_SECRET_ACCESS_KEY", "sekrit")
    env = {"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://127.0.0.1:9000",
           "S3_ASSETS_ACCESS_KEY_ID": "AKIAEXAMPLE", "S3_ASSETS_REGION": "eu-west-1", "S3_ASSETS_READ_TIMEOUT": "7"}
    options = resources(env)["s3_prefix"].s3.storage_options()
    assert options["key"] == "AKIAEXAMPLE" and options["secret"] == "sekrit"
    assert options["client_kwargs"] == {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}
    assert options["config_kwargs"]["read_timeout"] == 7.0 and options["config_kwargs"]["s3"] == {"addressing_style": "path"}


def test_storage_options_on_aws_leave_credentials_to_the_chain(monkeypatch, tmp_path):
    (tmp_path / "config").write_text("[profile analyst]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    options = resources({"S3_ASSETS_TARGET": "aws", "S3_ASSETS_PROFILE": "analyst"})["s3_prefix"].s3.storage_options()
    assert options["profile"] == "analyst" and "key" not in options and "secret" not in options


def test_storage_options_for_a_stopped_embedded_server_start_nothing(tmp_path):
    s3 = resources({"S3_ASSETS_LOCAL_DIR": str(tmp_path / "s3")})["s3_prefix"].s3
    with pytest.raises(ConfigError, match="is not running: start it with `s3-assets-local start`"):
        s3.storage_options()
    assert s3.embedded_server().status() is None


# -- the project's errors ---------------------------------------------------------------------
PACKAGE = ROOT / "s3_assets"


def test_every_project_error_derives_from_s3_assets_error():
    import importlib
    import inspect
    import pkgutil

    import s3_assets
    from s3_assets.lib.errors import S3AssetsError

    errors = []
    for module_info in pkgutil.walk_packages(s3_assets.__path__, "s3_assets."):
        # __main__ runs a CLI; celery_app connects to the local cluster's broker when imported.
        if module_info.name.endswith(("__main__", "celery_app")):
            continue
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, BaseException):
                errors.append(cls)
    assert len(errors) >= 10
    assert [cls.__qualname__ for cls in errors if not issubclass(cls, S3AssetsError)] == []


def test_no_blind_except_around_our_own_code():
    """`except Exception` would report a bug in our code (a hook, a parser) as an S3 failure:
    S3 calls catch lib.errors.S3_FAILURES. The one allowed blind catch is the start-up probe."""
    blind = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"except\s*(Exception|BaseException)?\s*(as \w+)?:", line)
             and "handed to the caller's thread" not in line and "not ready yet" not in line]
    assert blind == []
