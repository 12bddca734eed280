"""Settings and local state from outside are data (issue 19 §7): the folders and files the
embedded S3 and the local cluster keep are configured from outside, so the project changes the
mode only of folders it created, refuses folders others own or may write into, never writes or
chmods through a symlink; and the cluster refuses a run whose target-choosing environment
(S3_ASSETS_*, botocore's AWS_*) differs from its workers', naming variables, never values."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from s3_assets.lib.local_process import MARKER, UnsafeDirectoryError, private_dir
from s3_assets.local_cluster.broker import LocalBroker
from s3_assets.local_cluster.cluster import SETTINGS_FILE, SETTINGS_KEY_FILE, LocalCluster
from s3_assets.local_s3.server import EmbeddedS3


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def shared(tmp_path) -> Path:
    """A shared folder like /tmp: mode 1777, owned by this user, not created by the project."""
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    return folder


@pytest.mark.parametrize("command", ["stop", "start", "status"])
def test_local_command_refuses_a_shared_folder_and_leaves_its_mode(shared, monkeypatch, capsys, command):
    from s3_assets.local_s3.cli import main

    monkeypatch.setenv("S3_ASSETS_LOCAL_DIR", str(shared))
    code = main([command])
    err = capsys.readouterr().err
    assert mode(shared) == 0o1777  # the old stop made it 0700
    if command != "status":  # status only reads
        assert code == 1
        assert f"refusing the embedded S3's data directory (S3_ASSETS_LOCAL_DIR) {shared}" in err
        assert "others may write into it (mode 1777)" in err
    assert not (shared / MARKER).exists() and not (shared / ".lock").exists()


@pytest.mark.parametrize("command", ["stop", "start"])
def test_cluster_command_refuses_a_shared_folder_and_leaves_its_mode(shared, monkeypatch, capsys, command):
    from s3_assets.local_cluster.cli import main

    monkeypatch.setenv("S3_ASSETS_CLUSTER_DIR", str(shared))
    assert main([command]) == 1
    assert mode(shared) == 0o1777
    err = capsys.readouterr().err
    assert f"refusing the local cluster's directory (S3_ASSETS_CLUSTER_DIR) {shared}" in err
    assert os.listdir(shared) == []


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user owns needs root")
def test_a_foreign_owned_folder_is_refused_for_both(tmp_path):
    foreign = tmp_path / "theirs"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, 54321, 54321)
    for attempt in (lambda: EmbeddedS3(foreign).stop(), lambda: EmbeddedS3(foreign).credentials(),
                    lambda: LocalCluster(foreign, workers=1).stop(), lambda: LocalBroker(foreign).password()):
        with pytest.raises(UnsafeDirectoryError, match=r"belongs to another user \(uid 54321\)"):
            attempt()
    assert mode(foreign) == 0o755 and foreign.stat().st_uid == 54321 and os.listdir(foreign) == []


def test_only_folders_the_project_created_change_mode(tmp_path):
    created = tmp_path / "new" / "s3"
    EmbeddedS3(created).credentials()  # creates the folder, owner-only, with its marker
    assert mode(created) == 0o700 and (created / MARKER).is_file()
    os.chmod(created, 0o755)
    EmbeddedS3(created).stop()
    assert mode(created) == 0o700  # the project's own: made owner-only again

    own = tmp_path / "mine"
    own.mkdir(mode=0o755)
    os.chmod(own, 0o755)
    EmbeddedS3(own).credentials()  # a folder of the user's own, not writable by others: used as is
    assert mode(own) == 0o755 and not (own / MARKER).exists()
    assert mode(own / "credentials.json") == 0o600
    assert EmbeddedS3(tmp_path / "never").stop() is False and not (tmp_path / "never").exists()
    assert LocalCluster(tmp_path / "nor", workers=1).stop() is False and not (tmp_path / "nor").exists()


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim" / "authorized_keys"
    path.parent.mkdir(exist_ok=True)
    path.write_text("precious\n")
    os.chmod(path, 0o644)
    return path


def replaced_by_symlink_to_victim(tmp_path: Path, path: Path) -> Path:
    """`path` made a symlink to a file the project must never write or chmod; that file."""
    target = victim(tmp_path)
    path.unlink(missing_ok=True)
    path.symlink_to(target)
    return target


def untouched(target: Path) -> bool:
    return target.read_text() == "precious\n" and mode(target) == 0o644


@pytest.mark.parametrize("name", ["credentials.json", ".lock"])
def test_local_s3_never_writes_or_chmods_through_a_symlink(tmp_path, name):
    data = tmp_path / "s3"
    EmbeddedS3(data).credentials()
    target = replaced_by_symlink_to_victim(tmp_path, data / name)
    server = EmbeddedS3(data)
    with pytest.raises(UnsafeDirectoryError, match=f"refusing the file {data / name}: it is a symlink"):
        server.credentials() if name == "credentials.json" else server.ensure_running()
    assert untouched(target)


@pytest.mark.parametrize("name", ["broker-password", ".broker.lock", "workers-settings.key", "workers-settings.json"])
def test_cluster_never_writes_or_chmods_through_a_symlink(tmp_path, name):
    directory = tmp_path / "cluster"
    LocalBroker(directory).password()
    target = replaced_by_symlink_to_victim(tmp_path, directory / name)
    with pytest.raises(UnsafeDirectoryError, match="it is a symlink"):
        if name == "broker-password":
            LocalBroker(directory).password()
        elif name == ".broker.lock":
            LocalCluster(directory, workers=1).stop()
        else:  # the settings' HMAC key and digests (written at a start of the workers)
            LocalCluster(directory, workers=1).record_settings(WORKERS_ENV)
    assert untouched(target)


@pytest.mark.parametrize("sub", ["broker-data", "dagster-home", "security", "logs"])
def test_a_symlinked_subfolder_is_refused_and_its_target_keeps_its_mode(tmp_path, sub):
    parent = tmp_path / "state"
    parent.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o755)
    (parent / sub).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeDirectoryError, match="it is a symlink or not a directory"):
        if sub == "broker-data":
            LocalBroker(parent).password()
        elif sub == "dagster-home":
            LocalCluster(parent, workers=1)._write_dagster_home()
        elif sub == "security":
            from s3_assets.local_s3.security import ensure_tls

            ensure_tls(parent)
        else:
            private_dir(parent / sub, "a folder")
    assert mode(elsewhere) == 0o755 and os.listdir(elsewhere) == []


# -- the cluster and the run must choose the same target (issue 19 §7, fourth bullet) --

WORKERS_ENV = {
    "S3_ASSETS_TARGET": "custom", "S3_ASSETS_BUCKET": "b", "S3_ASSETS_CLUSTER_DIR": "/x",
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000", "AWS_PROFILE": "analyst", "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_SECRET_ACCESS_KEY": "very-secret-worker-key", "AWS_MAX_ATTEMPTS": "3", "HOME": "/root",
}


@pytest.mark.parametrize("name, value", [
    ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9999"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9998"),
    ("AWS_PROFILE", "analyst-two"), ("AWS_DEFAULT_REGION", "us-west-2"), ("AWS_REGION", "us-west-2"),
    ("AWS_CONFIG_FILE", "/elsewhere/config"), ("AWS_SHARED_CREDENTIALS_FILE", "/elsewhere/creds"),
    ("AWS_ACCESS_KEY_ID", "AKIAOTHER"), ("AWS_SECRET_ACCESS_KEY", "another-very-secret-key"),
    ("AWS_ROLE_ARN", "arn:aws:iam::1:role/x"),
    ("AWS_CA_BUNDLE", "/elsewhere/ca.pem"), ("AWS_USE_FIPS_ENDPOINT", "true"),
    ("S3_ASSETS_BUCKET", "bucket-two"), ("S3_ASSETS_SECRET_ACCESS_KEY", "a-secret-setting"),
])
def test_a_run_choosing_another_target_or_caller_is_refused_by_name(tmp_path, name, value):
    cluster = LocalCluster(tmp_path / "cluster", workers=1)
    cluster.record_settings(WORKERS_ENV)
    cluster.check_settings(dict(WORKERS_ENV))  # the same environment runs
    with pytest.raises(Exception, match="started with other settings") as raised:
        cluster.check_settings({**WORKERS_ENV, name: value})
    message = str(raised.value)
    assert f"({name} differ)" in message
    digests = json.loads((cluster.directory / SETTINGS_FILE).read_text()).values()
    for secret in (value, WORKERS_ENV["AWS_SECRET_ACCESS_KEY"], *digests):
        assert secret not in message


def test_tuning_and_the_clusters_own_variables_do_not_count(tmp_path):
    cluster = LocalCluster(tmp_path / "cluster", workers=1)
    cluster.record_settings(WORKERS_ENV)
    cluster.check_settings({**WORKERS_ENV, "AWS_MAX_ATTEMPTS": "9", "S3_ASSETS_CLUSTER_DIR": "/y", "HOME": "/h"})
    assert "very-secret-worker-key" not in (cluster.directory / SETTINGS_FILE).read_text()


# -- the settings file is no offline-guessable copy of a secret; a rotating session token is no mismatch --

SESSION_ENV = {**WORKERS_ENV, "AWS_ACCESS_KEY_ID": "ASIAWORKERSESSION01", "AWS_SESSION_TOKEN": "session-token-one",
               "AWS_SECURITY_TOKEN": "session-token-one", "AWS_CREDENTIAL_EXPIRATION": "2026-12-03T13:00:00Z"}


def test_the_settings_file_holds_no_plain_hash_of_a_secret(tmp_path):
    import hashlib

    cluster = LocalCluster(tmp_path / "cluster", workers=1)
    cluster.record_settings(SESSION_ENV)
    stored = (cluster.directory / SETTINGS_FILE).read_text()
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "S3_ASSETS_BUCKET"):
        value = SESSION_ENV[name]
        assert len(value) < 6 or value not in stored
        assert hashlib.sha256(value.encode()).hexdigest() not in stored, f"a plain SHA-256 of {name} is stored"
    # The HMAC key: random, owner-only, in the cluster's owner-only folder, never the digest's input.
    key = cluster.directory / SETTINGS_KEY_FILE
    assert mode(key) == 0o600 and mode(cluster.directory) == 0o700 and (cluster.directory / MARKER).is_file()
    assert len(key.read_text().strip()) >= 32
    other = LocalCluster(tmp_path / "other", workers=1)
    other.record_settings(SESSION_ENV)
    assert other.directory.joinpath(SETTINGS_KEY_FILE).read_text() != key.read_text()
    assert json.loads(other.directory.joinpath(SETTINGS_FILE).read_text()) != json.loads(stored)  # keyed per cluster


def test_a_rotated_session_token_is_no_mismatch_and_a_changed_secret_key_still_is(tmp_path):
    cluster = LocalCluster(tmp_path / "cluster", workers=1)
    cluster.record_settings(SESSION_ENV)
    cluster.record_settings(SESSION_ENV)  # a restart of the workers keeps the key
    rotated = {**SESSION_ENV, "AWS_SESSION_TOKEN": "session-token-two", "AWS_SECURITY_TOKEN": "session-token-two",
               "AWS_CREDENTIAL_EXPIRATION": "2026-12-03T14:00:00Z"}
    cluster.check_settings(rotated)
    cluster.check_settings({name: value for name, value in SESSION_ENV.items() if "TOKEN" not in name})
    stored = (cluster.directory / SETTINGS_FILE).read_text()
    assert "AWS_SESSION_TOKEN" not in stored and "AWS_SECURITY_TOKEN" not in stored
    with pytest.raises(Exception, match=r"\(AWS_SECRET_ACCESS_KEY differ\)") as raised:
        cluster.check_settings({**rotated, "AWS_SECRET_ACCESS_KEY": "a-rotated-secret-key"})
    assert "a-rotated-secret-key" not in str(raised.value) and "very-secret-worker-key" not in str(raised.value)
    # Workers started by a version that stored plain hashes have no key: nothing can be compared,
    # so a run is refused with the restart it needs, never let through.
    (cluster.directory / SETTINGS_KEY_FILE).unlink()
    with pytest.raises(Exception, match="s3-assets-cluster stop"):
        cluster.check_settings(dict(SESSION_ENV))
