"""A newcomer's first hour, run as they type it (issue 22): the install gives the checkout its own
Dagster instance, so README's command 1, `dg dev`, `dagster dev` and the CLI all see the same
runs without anyone exporting DAGSTER_HOME, and a DAGSTER_HOME of the user's own still wins; a
whole-graph run ends by saying where the data is and how to read it, at INFO, without Dagster's
DEBUG lines.

Each test works on a copy of the project's top-level files (pyproject.toml, setup.py,
workspace.yaml, config/) with the package and the venv linked in, so the developer's own
`.env` and `.dagster_home/` are never touched."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from s3_assets_tests.dev_server import dev_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARK = "# s3-assets: the project's own Dagster instance"


@pytest.fixture
def project(tmp_path) -> Path:
    """A checkout as pip sees it, before any install step of ours has run."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    for name in ("pyproject.toml", "setup.py", "workspace.yaml", "README.md"):
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "config", folder / "config")
    (folder / "s3_assets").symlink_to(ROOT / "s3_assets")
    (folder / ".venv").symlink_to(BIN.parent)
    return folder


def install_step(project: Path) -> None:
    """What `pip install -e .` runs of setup.py: the file itself, as `__main__`, from the project
    folder (setuptools then only prints the name)."""
    done = subprocess.run([sys.executable, "setup.py", "--name"], cwd=project, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_install_points_dot_env_at_the_projects_instance_and_keeps_the_users_lines(project):
    (project / ".env").write_text("S3_ASSETS_PREFIX=mine\n")
    install_step(project)
    install_step(project)  # every install runs it: one line, not two
    home = project.resolve() / ".dagster_home"
    lines = (project / ".env").read_text().splitlines()
    assert lines == ["S3_ASSETS_PREFIX=mine", lines[1], f'DAGSTER_HOME="${{DAGSTER_HOME:-{home}}}"']
    assert lines[1].startswith(MARK)
    # The instance's settings are config/dagster.yaml's.
    config = (home / "dagster.yaml").read_text()
    assert config.endswith((ROOT / "config" / "dagster.yaml").read_text()) and "python_log_level: INFO" in config
    # A DAGSTER_HOME line of the user's own is theirs: nothing is added.
    own = "DAGSTER_HOME=/srv/dagster\n"
    (project / ".env").write_text(own)
    install_step(project)
    assert (project / ".env").read_text() == own


@pytest.fixture
def env(s3_server, bucket, uci_dir, tmp_path) -> dict[str, str]:
    """The user's shell: no DAGSTER_HOME; the test SeaweedFS and generated UCI files."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("S3_ASSETS_", "AWS_", "VIRTUAL_ENV", "DAGSTER_"))}
    return {**clean, "S3_ASSETS_LOCAL_DIR": s3_server.local_dir, "S3_ASSETS_BUCKET": bucket,
            "S3_ASSETS_SOURCE": str(uci_dir), "S3_ASSETS_OFFLINE_SOURCE": "", "S3_ASSETS_CACHE_DIR": str(tmp_path / "cache")}


def run(project: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["data"]


RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
LATEST = ('{ assetOrError(assetKey: {path: ["modelling_table"]}) '
          "{ ... on Asset { assetMaterializations(limit: 1) { runId } } } }")


def what_the_ui_shows(project: Path, env: dict[str, str], command: list[str], port: int) -> tuple[dict, dict]:
    """Start a dev server as README says, ask its GraphQL API for the runs and the latest
    materialization of modelling_table, stop it."""
    with dev_server(command, project, env, port):
        runs = graphql(port, RUNS)["runsOrError"]["results"]
        latest = graphql(port, LATEST)["assetOrError"]["assetMaterializations"]
    return {r["runId"]: r["status"] for r in runs}, (latest[0] if latest else {})


def test_command_1_then_dg_dev_and_dagster_dev_show_the_same_run(project, env, bucket, tmp_path):
    install_step(project)
    launched = run(project, env, "dg", "launch", "--job", "refresh_all")
    output = launched.stdout + launched.stderr
    [run_id] = set(re.findall(r" - ([0-9a-f-]{36}) - modelling_table - Your data:", output))

    # The run ends by saying where the data is and how to read it; the instance's INFO level
    # leaves out Dagster's DEBUG event lines, and nothing warns in a healthy run.
    summary = output[output.index("Your data:"):]
    assert f"the UCI copies are in s3://{bucket}/ins_dataset/raw/ (bucket {bucket}, prefix ins_dataset/)" in summary
    assert re.search(r"on the embedded S3 at http://127\.0\.0\.1:\d+ ", summary)
    assert f"pd.read_csv('s3://{bucket}/ins_dataset/raw/train.csv', storage_options=" in summary
    assert "defs.load_asset_value('modelling_table')" in summary
    assert " - DEBUG - " not in output and " - WARNING - " not in output and " - ERROR - " not in output
    assert len(output.splitlines()) < 40, output

    # The UI, started either way, shows that run: no "Never materialized".
    for command in (["dg", "dev", "--host", "127.0.0.1", "--port"], ["dagster", "dev", "-w", "workspace.yaml", "-h",
                                                                       "127.0.0.1", "-p"]):
        port = free_port()
        runs, latest = what_the_ui_shows(project, env, [*command, str(port)], port)
        assert runs == {run_id: "SUCCESS"}, command
        assert latest == {"runId": run_id}, command

    # The classic CLI reads the same instance; a DAGSTER_HOME of the user's own wins.
    assert run_id in run(project, env, "dagster", "run", "list").stdout
    own = tmp_path / "own_home"
    own.mkdir()
    shutil.copy(ROOT / "config" / "dagster.yaml", own / "dagster.yaml")
    assert run_id not in run(project, {**env, "DAGSTER_HOME": str(own)}, "dagster", "run", "list").stdout
    assert (own / "history").is_dir()  # the runs there are the user's


def test_the_summary_follows_the_last_asset_of_the_graph():
    """The run's closing lines come after LAST_ASSET's step: no asset may depend on it, or its
    step would no longer be the last one and the summary would stop being the run's end."""
    from s3_assets.defs import ASSETS
    from s3_assets.defs.refresh import LAST_ASSET

    keys = {key.to_user_string() for assets in ASSETS for key in assets.keys}
    assert LAST_ASSET in keys
    dependents = [spec.key.to_user_string() for assets in ASSETS for spec in assets.specs
                  if LAST_ASSET in {dep.asset_key.to_user_string() for dep in spec.deps}]
    assert dependents == []
