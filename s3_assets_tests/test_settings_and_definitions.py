"""Configuration from the environment, the code location as Dagster loads it, and schedules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dagster import DefaultScheduleStatus, build_schedule_context

from s3_assets.definitions import build_definitions
from s3_assets.defs.resources import normalise_prefix, validate_bucket_name
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.source import UCI_BASE_URL
from s3_assets.settings import ENV_VARS, LocalS3Ports, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_are_the_embedded_s3_and_the_notebooks_names():
    settings = Settings.from_env({})
    assert settings.target == "local" and settings.bucket == "s3-assets" and settings.prefix == "ins_dataset"
    assert settings.source == UCI_BASE_URL
    ports = LocalS3Ports.from_env({})
    assert 8888 not in ports.listening().values() and 3000 not in ports.listening().values()


def test_aws_without_bucket_leaves_it_to_the_sagemaker_rule():
    assert Settings.from_env({"S3_ASSETS_TARGET": "aws"}).bucket == ""


@pytest.mark.parametrize(("env", "message"), [
    ({"S3_ASSETS_TARGET": "gcs"}, "S3_ASSETS_TARGET='gcs': use one of local, aws, custom"),
    ({"S3_ASSETS_TARGET": "custom"}, "needs S3_ASSETS_ENDPOINT_URL"),
    ({"S3_ASSETS_MAX_ATTEMPTS": "many"}, "S3_ASSETS_MAX_ATTEMPTS='many' is not a whole number"),
    ({"S3_ASSETS_RETRY_MODE": "fast"}, "S3_ASSETS_RETRY_MODE='fast'"),
    ({"S3_ASSETS_CREATE_BUCKET": "maybe"}, "S3_ASSETS_CREATE_BUCKET='maybe'"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


def test_bad_port_names_the_flag():
    with pytest.raises(ConfigError, match="s3.port=80 is outside"):
        LocalS3Ports.from_env({"S3_ASSETS_LOCAL_S3_PORT": "80"})


@pytest.mark.parametrize("name", ["ab", "Upper", "under_score", "-dash", "a..b", "192.168.1.1", "x" * 64])
def test_invalid_bucket_names_are_refused(name):
    with pytest.raises(ConfigError, match="invalid bucket name"):
        validate_bucket_name(name)


@pytest.mark.parametrize(("raw", "root"), [
    ("ins_dataset", "ins_dataset/"), ("/ins_dataset/", "ins_dataset/"), ("a/b", "a/b/"), ("", ""), ("/", ""),
])
def test_prefix_normalisation(raw, root):
    assert normalise_prefix(raw) == root


def test_readme_documents_every_environment_variable():
    text = README.read_text()
    missing = [name for name in ENV_VARS if f"`{name}`" not in text]
    assert not missing, f"README's configuration table lacks {missing}"


def test_definitions_load_with_assets_jobs_and_schedules():
    defs = build_definitions(Settings.from_env({}))
    names = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"train", "test", "ground_truth", "dictionary_text", "train_csv", "test_csv", "gt_csv", "col_info_csv",
            "s3_listing", "file_map", "data_dictionary", "dataframes"} <= names
    assert defs.resolve_job_def("cleanup_job") and defs.resolve_job_def("refresh_all")


def test_secrets_reach_the_resource_only_as_env_var_names():
    from dagster import EnvVar

    from s3_assets.definitions import build_resources

    env = {"S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": "http://127.0.0.1:9",
           "S3_ASSETS_ACCESS_KEY_ID": "AKIAEXAMPLE", "S3_ASSETS_SECRET_ACCESS_KEY": "sekrit"}
    location = build_resources(Settings.from_env(env), env)["s3_prefix"]
    assert location.s3.aws_secret_access_key == EnvVar("S3_ASSETS_SECRET_ACCESS_KEY")


def test_schedules():
    defs = build_definitions(Settings.from_env({}))
    daily = defs.resolve_schedule_def("daily_refresh")
    cleanup = defs.resolve_schedule_def("weekly_cleanup")
    assert daily.default_status == DefaultScheduleStatus.RUNNING
    assert cleanup.default_status == DefaultScheduleStatus.STOPPED
    assert daily.job_name == "refresh_all" and cleanup.job_name == "cleanup_job"
    [request] = list(daily.evaluate_tick(build_schedule_context()).run_requests)
    assert request.job_name in (None, "refresh_all")
    [cleanup_request] = list(cleanup.evaluate_tick(build_schedule_context()).run_requests)
    assert cleanup_request.run_config == {"ops": {"delete_objects_under_prefix": {"config": {"dry_run": False}}}}


def test_aws_without_bucket_uses_the_sagemaker_default_bucket_name():
    import boto3
    from botocore.stub import Stubber

    from s3_assets.defs.resources import S3Connection, S3Prefix

    location = S3Prefix(s3=S3Connection(target="aws", region_name="eu-west-1"), bucket="")
    sts = boto3.client("sts", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(sts) as stub:
        stub.add_response("get_caller_identity", {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/u",
                                                  "UserId": "AIDAEXAMPLE"})
        assert location._sagemaker_default_bucket(sts) == "sagemaker-eu-west-1-123456789012"
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", "ExpiredToken")
        with pytest.raises(ConfigError, match="Set S3_ASSETS_BUCKET"):
            location._sagemaker_default_bucket(sts)
