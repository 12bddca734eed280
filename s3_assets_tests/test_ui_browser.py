"""The Dagster UI as a user sees it: `dagster dev` on a free loopback port, headless Chromium
shows every asset and the cleanup job, then "materialize all" runs to success and the objects
are in S3. Servers run in their own process group and are always torn down."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ASSETS = ["train", "test", "ground_truth", "dictionary_text", "train_csv", "test_csv", "gt_csv", "col_info_csv",
          "s3_listing", "file_map", "data_dictionary", "dataframes", "modelling_table"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture
def dagster_dev(s3_server, bucket, uci_dir, tmp_path) -> Iterator[tuple[str, Path]]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "config" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "S3_ASSETS_LOCAL_DIR": s3_server.local_dir,
           "S3_ASSETS_BUCKET": bucket, "S3_ASSETS_SOURCE": str(uci_dir), "S3_ASSETS_OFFLINE_SOURCE": "",
           "S3_ASSETS_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "dagster-dev.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"dagster dev exited with {process.returncode}; log tail:\n{log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"dagster dev did not answer on {url} within 120 s; log tail:\n{log_tail(log)}")
                time.sleep(1)
        yield url, log
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1600,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_text(driver, names: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        source = driver.page_source
        missing = [name for name in names if name not in source]
        if not missing:
            dismiss_welcome_dialog(driver)
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{driver.current_url} did not show {missing} within {timeout:.0f} s")
        time.sleep(1)


def dismiss_welcome_dialog(driver) -> None:
    """The first visit shows a 'Join the Dagster community' dialog over the page; skip it."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        if button.is_displayed():
            button.click()
            time.sleep(0.5)


def test_ui_shows_the_graph_and_materializes_everything(dagster_dev, browser, s3, bucket):
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    url, log = dagster_dev
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{url}/assets")
    wait_for_text(browser, ASSETS)
    browser.save_screenshot(str(ARTIFACTS / "ui-assets.png"))
    browser.get(f"{url}/locations/s3_assets/asset-groups/analysis")
    wait_for_text(browser, ["s3_listing", "dataframes"])
    browser.save_screenshot(str(ARTIFACTS / "ui-lineage-analysis.png"))
    browser.get(f"{url}/jobs")
    wait_for_text(browser, ["cleanup_job", "refresh_all"])
    browser.save_screenshot(str(ARTIFACTS / "ui-jobs.png"))

    host, port = url.removeprefix("http://").split(":")
    client = DagsterGraphQLClient(host, port_number=int(port))
    run_id = client.submit_job_execution("refresh_all", repository_location_name="s3_assets")
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} ended {status}; dagster dev log tail:\n{log_tail(log)}"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")["Contents"]}
    assert keys == {"ins_dataset/raw/train.csv", "ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv",
                    "ins_dataset/raw/metadata/col_info.csv"}
    browser.get(f"{url}/runs/{run_id}")
    wait_for_text(browser, ["Success"])
    browser.save_screenshot(str(ARTIFACTS / "ui-run.png"))
