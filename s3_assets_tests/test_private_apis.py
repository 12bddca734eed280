"""The project reaches no library internals except through `s3_assets/dagster_internals.py`,
and that module says which library versions it was written for when an upgrade moves a name."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s3_assets"
INTERNALS = PACKAGE / "dagster_internals.py"
# Private names: Dagster's and its libraries' underscore modules and attributes, botocore's
# private client attributes (the resolved transport and signer).
PRIVATE = re.compile(
    r"\bfrom dagster\w*(\.\w+)*\._\w*|\bimport dagster\w*(\.\w+)*\._\w*|\bdagster\w*(\.\w+)*\._\w+"
    r"|\bfrom dagster\w*(\.\w+)* import \(?\s*_\w+"
    r"|\._endpoint\b|\._request_signer\b|\._credentials\b|\._proxy_config\b|\.http_session\._|\bbotocore(\.\w+)*\._\w+")
# Another branch replaces these (issue 21 §4); remove the entry when it has landed.
PENDING: set[str] = set()


def test_no_private_library_names_outside_the_internals_module():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path == INTERNALS or relative in PENDING:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            # dagster.yaml text: Dagster's documented instance config names classes by module path
            if PRIVATE.search(code) and not re.match(r"\s*module: dagster\._core\.\w+$", code):
                found.append(f"s3_assets/{relative}:{number}: {line.strip()}")
    assert not found, "private library names outside s3_assets/dagster_internals.py:\n" + "\n".join(found)


def test_the_pattern_catches_what_it_should():
    for line in ("from dagster._core.launcher import RunLauncher", "import dagster._serdes",
                 "from dagster_celery.executor import _submit_task", "x = dagster_celery.executor._submit_task",
                 "http = client._endpoint.http_session", "signer = client._request_signer._credentials"):
        assert PRIVATE.search(line), line
    for line in ("from dagster import DagsterRun", "from dagster_celery.launcher import CeleryRunLauncher",
                 "self._client = client", "from botocore.httpsession import ProxyConfiguration"):
        assert not PRIVATE.search(line), line


def test_the_internals_have_the_shapes_we_use():
    from s3_assets import dagster_internals as internals

    versions = internals.installed_versions()
    assert re.fullmatch(r"dagster \S+, dagster-celery \S+", versions)
    expected = {
        internals.submit_celery_step: ["app", "plan_context", "step", "queue", "priority", "known_state"],
        internals.get_python_environment_entry_point: ["executable_path"],
    }
    for function, parameters in expected.items():
        assert list(inspect.signature(function).parameters) == parameters, \
            f"{function.__name__} changed in {versions} (written for {internals.WRITTEN_FOR})"
    fields = set(inspect.signature(internals.ExecuteRunArgs).parameters)
    assert {"job_origin", "run_id", "instance_ref", "set_exit_code_on_failure"} <= fields, \
        f"ExecuteRunArgs changed in {versions} (written for {internals.WRITTEN_FOR})"
    for method in ("launch_run", "terminate", "check_run_worker_health", "get_run_worker_debug_info"):
        assert callable(getattr(internals.RunLauncher, method, None)), \
            f"RunLauncher.{method} is gone in {versions} (written for {internals.WRITTEN_FOR})"
    assert {"RUNNING", "FAILED"} <= {status.name for status in internals.WorkerStatus}
    from dagster import DagsterInstance
    assert {"run_id", "of_type"} <= set(inspect.signature(DagsterInstance.all_logs).parameters), \
        f"DagsterInstance.all_logs changed in {versions} (written for {internals.WRITTEN_FOR})"


@pytest.mark.parametrize("module", ["dagster._grpc.types", "dagster_celery.executor"])
def test_a_moved_internal_fails_on_import_naming_the_versions(module):
    """An upgrade that removes one of the names: importing the project says which versions are
    installed and which the module was written for, instead of a bare ImportError deep inside."""
    code = (f"import sys, types; sys.modules[{module!r}] = types.ModuleType({module!r}); "
            "import s3_assets.dagster_internals")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    from importlib.metadata import version

    assert f"dagster {version('dagster')}, dagster-celery {version('dagster-celery')}" in done.stderr
    assert "written for dagster 1.13, dagster-celery 0.29" in done.stderr
