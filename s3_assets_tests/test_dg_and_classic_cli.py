"""The project as both CLIs see it, run as a user types the README's commands (subprocesses,
a DAGSTER_HOME of their own, the test SeaweedFS): `dg` (check, list, launch, dev) and the
classic `dagster` commands. Each must succeed. The dg commands print no warning at all. The
classic ones print only Dagster's own notices, which no project setting can turn off: the
`@superseded` decorator on each classic command warns unconditionally (a dg project does not
silence it), naming the dg command that README shows; nothing of ours warns."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from s3_assets_tests.dev_server import dev_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Python warnings ("SupersessionWarning: ...", "DeprecationWarning: ...") and dg's own notices.
WARNING = re.compile(r"\b[A-Z]\w*Warning: |To suppress this warning| - WARNING - ")
# Dagster's own notices on the classic CLI: the supersession notice, and warnings raised inside
# dagster's package (e.g. a BetaWarning from its own selection parser).
DAGSTER_OWN = re.compile(r"/click/core\.py:\d+: SupersessionWarning: .* Use 'dg [a-z -<>]+' instead\.$"
                         r"|/site-packages/dagster/\S+\.py:\d+: \w+Warning: ")

pytestmark = pytest.mark.integration


@pytest.fixture
def env(s3_server, bucket, uci_dir, tmp_path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "config" / "dagster.yaml", home / "dagster.yaml")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("S3_ASSETS_", "AWS_", "VIRTUAL_ENV"))}
    return {**clean, "DAGSTER_HOME": str(home), "S3_ASSETS_LOCAL_DIR": s3_server.local_dir,
            "S3_ASSETS_BUCKET": bucket, "S3_ASSETS_SOURCE": str(uci_dir), "S3_ASSETS_OFFLINE_SOURCE": "",
            "S3_ASSETS_CACHE_DIR": str(tmp_path / "cache")}


def run(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if WARNING.search(line)]


def keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_dg_check_and_list_defs(env):
    checked = run(env, "dg", "check", "defs")
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = run(env, "dg", "list", "defs", "--json")
    assert {"train_csv", "s3_listing", "dataframes"} <= set(re.findall(r'"asset_key": "([^"]+)"', listed.stdout))
    assert not warnings_in(checked.stderr + checked.stdout) and not warnings_in(listed.stderr)


def test_a_scaffolded_asset_is_listed(env, tmp_path):
    """`dg scaffold defs dagster.asset new_asset.py` in a copy of the project: the new module in
    the defs folder is part of the code location (`dg list defs`, `dg check defs`), beside
    every asset that was there, and the configured S3 URIs still show."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "workspace.yaml", "config"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, project / name)
    shutil.copytree(ROOT / "s3_assets", project / "s3_assets", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".venv").symlink_to(BIN.parent)  # dg runs the project's venv; the copy's modules come first

    def run_in_copy(*command: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "dg"), *command], cwd=project, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"dg {' '.join(command)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    run_in_copy("scaffold", "defs", "dagster.asset", "new_asset.py")
    assert (project / "s3_assets" / "defs" / "new_asset.py").is_file()
    listed = run_in_copy("list", "defs", "--json")
    assert {"new_asset", "train_csv", "s3_listing", "dataframes"} <= set(re.findall(r'"asset_key": "([^"]+)"', listed.stdout))
    assert f"s3://{env['S3_ASSETS_BUCKET']}/ins_dataset/raw/train.csv" in listed.stdout
    assert "All definitions loaded successfully" in (lambda d: d.stdout + d.stderr)(run_in_copy("check", "defs"))


def test_dg_launch_materializes_everything(env, s3, bucket):
    done = run(env, "dg", "launch", "--job", "refresh_all")
    assert {"ins_dataset/raw/train.csv", "ins_dataset/raw/metadata/col_info.csv"} <= keys(s3, bucket)
    assert warnings_in(done.stderr) == []
    # '*' works too; Dagster's own selection parser adds a BetaWarning for it (nothing of ours).
    star = run(env, "dg", "launch", "--assets", "*")
    assert [line for line in warnings_in(star.stderr) if not DAGSTER_OWN.search(line)] == []


def test_classic_materialize_and_validate(env, s3, bucket):
    done = run(env, "dagster", "asset", "materialize", "-m", "s3_assets.definitions", "--select", "*")
    assert "ins_dataset/raw/train.csv" in keys(s3, bucket)
    validated = run(env, "dagster", "definitions", "validate", "-m", "s3_assets.definitions")
    assert "Validation successful" in validated.stderr + validated.stdout
    for stderr in (done.stderr, validated.stderr):
        notices = warnings_in(stderr)
        assert any("SupersessionWarning" in line for line in notices)  # Dagster's, unconditional
        assert [line for line in notices if not DAGSTER_OWN.search(line)] == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_until_ready(env: dict[str, str], command: list[str], port: int, timeout: float = 300) -> str:
    """Start a dev server, wait until its webserver answers, stop it; its stderr."""
    with dev_server(command, ROOT, env, port, timeout) as server:
        pass
    return server.stderr


@pytest.mark.parametrize("cli", ["dg", "dagster"])
def test_dev_serves_the_ui(env, cli):
    port = free_port()
    command = ["dg", "dev", "--host", "127.0.0.1", "--port", str(port)] if cli == "dg" else \
        ["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    stderr = serve_until_ready(env, command, port)
    notices = warnings_in(stderr)
    if cli == "dg":
        assert notices == []
    else:
        assert [line for line in notices if not DAGSTER_OWN.search(line)] == []
