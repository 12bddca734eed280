"""The Dagster UI as a user sees it: `dagster dev` on a free loopback port, driven by headless
Chromium. One story, each step asserted on the page's visible text and saved as a screenshot
in `test-artifacts/` (issue 12):

1. the catalog and the S3 copies' pages show the real URI (no `s3:////` from a swallowed
   `<bucket>`), and the metadata after "materialize all" (`dagster/uri`, per-frame table);
2. the cleanup Launchpad starts from `dry_run: true`;
3. after a real cleanup run, every asset whose S3 object or stored value is gone shows failed
   checks in the catalog (its row's red icon), the lineage ("0 / 1 Passed") and its checks;
4. the change sensor: its ticks ignore the project's own writes and see someone else's key
   (GraphQL's `sensorDryRun`, and the UI's "Preview tick result"), and a preview changes
   nothing that the next evaluation sees; after someone else overwrites `raw/gt.csv`, the run
   the sensor asks for shows `gt_csv`'s `matches_raw_table` failed, in the catalog too;
5. what a data scientist looks for (issue 22 §5): the local endpoint, a notebook snippet, a
   labelled preview and a chart of CARAVAN's rate, drawn on the asset's page.

Servers run in their own process group and are always torn down. Nothing waits a fixed time:
every wait is on a condition (a page text, a run status), with a deadline that fails the
test with what was seen.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from s3_assets_tests.dev_server import stop_group

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ASSETS = ["train", "test", "ground_truth", "dictionary_text", "train_csv", "test_csv", "gt_csv", "col_info_csv",
          "s3_listing", "file_map", "data_dictionary", "dataframes", "modelling_table"]
COPIES = {"train_csv": "raw/train.csv", "test_csv": "raw/test.csv", "gt_csv": "raw/gt.csv",
          "col_info_csv": "raw/metadata/col_info.csv"}
CLEANUP_OP = "delete_objects_under_prefix"
WELCOME_DIALOG = "Join the Dagster community"  # shown over the first page; skipped

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)"),
]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def poll(condition: Callable[[], T | None], timeout: float, what: Callable[[], str], interval: float = 0.25) -> T:
    """The first truthy result of `condition`, checked every `interval` s until `timeout`;
    else fail with `what()` (what was seen instead)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(what())
        time.sleep(interval)  # the pause between checks of the condition, not a wait for it


@pytest.fixture
def dagster_dev(s3_server, bucket, uci_dir, tmp_path) -> Iterator[tuple[str, Path]]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "config" / "dagster.yaml", home / "dagster.yaml")
    with open(home / "dagster.yaml", "a") as config:  # no "Join the Dagster community" dialog over the pages
        config.write("\nnux:\n  enabled: false\n")
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

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited with {process.returncode}; log tail:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return True
        except OSError:
            return False

    try:
        poll(answers, 120, lambda: f"dagster dev did not answer on {url} within 120 s; log tail:\n{log_tail(log)}")
        yield url, log
    finally:
        stop_group(process, signal.SIGTERM)


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


def page_text(driver) -> str:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except WebDriverException:  # the page is being replaced
        return ""


def show(driver, url: str, texts: list[str], screenshot: str, absent: tuple[str, ...] = (),
         timeout: float = 90) -> str:
    """Open `url`, wait until its visible text holds every one of `texts` and none of
    `absent`, save a screenshot; the page text."""
    driver.get(url)

    def ready() -> str | None:
        dismiss_welcome_dialog(driver)
        text = page_text(driver)
        unwanted = (*absent, WELCOME_DIALOG)
        return text if all(t in text for t in texts) and not any(a in text for a in unwanted) else None

    def seen() -> str:
        driver.save_screenshot(str(ARTIFACTS / f"FAILED-{screenshot}"))
        text = page_text(driver)
        return (f"{url} did not show {[t for t in texts if t not in text]} (or still showed "
                f"{[a for a in absent if a in text]}) within {timeout:.0f} s; page text:\n{text[:3000]}")

    text = poll(ready, timeout, seen)
    driver.save_screenshot(str(ARTIFACTS / screenshot))
    return text


def dismiss_welcome_dialog(driver) -> None:
    """The first visit shows a 'Join the Dagster community' dialog over the page; skip it."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    with contextlib.suppress(WebDriverException):
        for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            if button.is_displayed():
                button.click()


def click(driver, xpath: str, timeout: float = 30) -> None:
    """Click the visible element at `xpath` once it takes the click: a dialog that is still
    opening (its backdrop in front) or a button not yet enabled is waited for, not failed on."""
    from selenium.common.exceptions import ElementClickInterceptedException, ElementNotInteractableException
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        for element in driver.find_elements(By.XPATH, xpath):
            if element.is_displayed() and element.is_enabled():
                try:
                    element.click()
                except (ElementClickInterceptedException, ElementNotInteractableException):
                    dismiss_welcome_dialog(driver)  # what may lie over it
                    return False
                return True
        return False

    poll(clicked, timeout, lambda: f"nothing at {xpath} took a click in {timeout:.0f} s:\n{page_text(driver)}")


def catalog_status(driver, assets: list[str], timeout: float = 60) -> dict[str, str]:
    """asset -> the status icon of its row in the catalog (the page is open): `check_passed`
    (green) or `check_failed` (red: a failed check, e.g. after a cleanup), as Dagster 1.13 draws
    them (OSS shows no asset-health tag: `assetHealthEnabled()` is false)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def icons() -> dict[str, str] | None:
        found = {}
        try:
            for asset in assets:
                xpath = (f"//a[@href='/assets/{asset}']/ancestor::div[contains(@class, 'cellBox')]/.."
                         "//div[@role='img'][starts-with(@aria-label, 'check_')]")
                elements = driver.find_elements(By.XPATH, xpath)
                if not elements:
                    return None
                found[asset] = elements[0].get_attribute("aria-label")
        except WebDriverException:  # the table is being redrawn
            return None
        return found

    return poll(icons, timeout, lambda: f"the catalog showed no status for some of {assets}:\n{page_text(driver)[:3000]}")


def scroll_to(driver, text: str, screenshot: str) -> None:
    """Bring the element whose whole text is `text` into view, and screenshot what a person sees there."""
    from selenium.webdriver.common.by import By

    element = poll(lambda: next(iter(driver.find_elements(By.XPATH, f"//*[normalize-space()='{text}']")), None), 30,
                   lambda: f"nothing shows {text!r}:\n{page_text(driver)[:3000]}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    driver.save_screenshot(str(ARTIFACTS / screenshot))


def preview_tick(driver, cursor: str) -> str:
    """The sensor page's "Preview tick result": evaluate a tick from `cursor`, screenshot it;
    the page text with the result."""
    from selenium.webdriver.common.by import By

    click(driver, "//button[contains(., 'Preview tick result')]")
    field = poll(lambda: next(iter(driver.find_elements(By.XPATH, "//input[@placeholder='Enter a cursor value']")), None),
                 30, lambda: f"no cursor field in the preview dialog:\n{page_text(driver)}")
    field.send_keys(cursor)
    click(driver, "//div[contains(@class, 'dialog')]//button[normalize-space()='Continue']")

    def result() -> str | None:
        text = page_text(driver)
        return text if "Requested runs" in text else None

    text = poll(result, 120, lambda: f"the preview dialog showed no result:\n{page_text(driver)}")
    driver.save_screenshot(str(ARTIFACTS / "4-sensor-preview-tick.png"))
    return text


def run_to_end(client, log: Path, job: str, run_config: dict | None = None, timeout: float = 240,
               tags: dict[str, str] | None = None, expect: tuple[str, ...] = ("SUCCESS",)) -> str:
    from dagster_graphql import DagsterGraphQLClientError

    run_id = client.submit_job_execution(job, repository_location_name="s3_assets", run_config=run_config or {},
                                         tags=tags)
    status: list[str | None] = [None]

    def ended() -> bool:
        try:
            status[0] = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status[0] = None
        return status[0] in ("SUCCESS", "FAILURE", "CANCELED")

    poll(ended, timeout, lambda: f"run {run_id} of {job} still {status[0]} after {timeout:.0f} s; "
                                 f"dagster dev log tail:\n{log_tail(log)}", interval=1)
    assert status[0] in expect, f"run {run_id} of {job} ended {status[0]}; dagster dev log tail:\n{log_tail(log)}"
    return run_id


SENSOR_DRY_RUN = """
mutation($selector: SensorSelector!, $cursor: String) {
  sensorDryRun(selectorData: $selector, cursor: $cursor) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { skipReason cursor runRequests { runKey tags { key value } } error { message } }
    }
    ... on PythonError { message }
  }
}"""


def sensor_tick(url: str, cursor: str | None) -> dict:
    """One evaluation of the change sensor, as the UI's "Preview tick result" runs it."""
    import json

    body = json.dumps({"query": SENSOR_DRY_RUN, "variables": {"cursor": cursor, "selector": {
        "repositoryLocationName": "s3_assets", "repositoryName": "__repository__", "sensorName": "s3_change_sensor"}}})
    request = urllib.request.Request(f"{url}/graphql", data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    result = answer["data"]["sensorDryRun"]
    assert result["__typename"] == "DryRunInstigationTick", answer
    evaluation = result["evaluationResult"]
    assert not evaluation["error"], evaluation["error"]
    return evaluation


def test_ui_tells_the_truth(dagster_dev, browser, s3, bucket):
    from dagster_graphql import DagsterGraphQLClient

    url, log = dagster_dev
    ARTIFACTS.mkdir(exist_ok=True)
    uris = {name: f"s3://{bucket}/ins_dataset/{relative}" for name, relative in COPIES.items()}

    # §1: the catalog and each copy's page show the configured URI before any run.
    catalog = show(browser, f"{url}/assets", ASSETS, "1-catalog.png")
    assert f"s3://{bucket}/ins_dataset/raw/" in catalog and "<bucket>" not in catalog
    page = show(browser, f"{url}/assets/train_csv", [uris["train_csv"]], "1-train_csv-definition.png")
    assert "s3:////" not in page
    show(browser, f"{url}/locations/s3_assets/asset-groups/analysis", ["s3_listing", "dataframes"],
         "1-lineage-analysis.png")

    host, port = url.removeprefix("http://").split(":")
    client = DagsterGraphQLClient(host, port_number=int(port))
    run_id = run_to_end(client, log, "refresh_all")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")["Contents"]}
    assert keys == {f"ins_dataset/{relative}" for relative in COPIES.values()}
    show(browser, f"{url}/runs/{run_id}", ["Success"], "1-run.png")
    # The copy's materialization: `dagster/uri` (shown as "Storage") and a size with its unit.
    show(browser, f"{url}/assets/train_csv", ["Storage", uris["train_csv"], "size_bytes"],
         "1-train_csv-materialized.png")
    # The catalog after the whole graph: every asset current (no failed check).
    show(browser, f"{url}/assets", ASSETS, "1-catalog-materialized.png", absent=("Loading...",))
    assert catalog_status(browser, ASSETS) == dict.fromkeys(ASSETS, "check_passed")
    show(browser, f"{url}/assets/dataframes", ["frames", "train schema", "read_in_a_notebook"],
         "1-dataframes-materialized.png")
    # Issue 22 §5: the local endpoint, a notebook snippet, a labelled preview and a chart.
    page = show(browser, f"{url}/assets/train_csv", ["s3_endpoint", "http://127.0.0.1:", "read_in_a_notebook",
                                                    "storage_options"], "5-train_csv-endpoint-and-snippet.png")
    show(browser, f"{url}/assets/modelling_table",
         ["preview_labelled", "caravan_rate_by_main_type", "Main type 1", "█", "load_asset_value"],
         "5-modelling_table-chart.png")
    scroll_to(browser, "caravan_rate_by_main_type", "5-modelling_table-chart-shown.png")
    scroll_to(browser, "preview_labelled", "5-modelling_table-labelled-preview.png")

    # §4: the change sensor, off by default, and what its ticks decide (GraphQL's sensorDryRun is
    # what the UI's "Preview tick result" runs): the project's own writes start nothing, a key
    # someone else puts there starts `refresh_listing`.
    baseline = sensor_tick(url, None)
    assert baseline["skipReason"].startswith("baseline") and not baseline["runRequests"]
    own = sensor_tick(url, baseline["cursor"])
    assert own["skipReason"] and not own["runRequests"], own
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/extra.csv", Body=b"a,b\n1,2\n")
    show(browser, f"{url}/locations/s3_assets/sensors/s3_change_sensor", ["s3_change_sensor", "refresh_listing"],
         "4-sensor.png")
    # The tick after someone else's write, in the UI. A preview keeps no cursor and changes no
    # state: the same evaluation again still sees the new key.
    result = preview_tick(browser, baseline["cursor"])
    assert "Requested runs (1)" in result, result
    again = sensor_tick(url, baseline["cursor"])
    assert [r["runKey"] for r in again["runRequests"]] and len(again["runRequests"]) == 1, again

    # Issue 22 §4: someone else overwrites a copy; the run the sensor asks for checks the copies
    # again, and the copy's own check shows failed (not green beside bad data).
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/gt.csv", Body=b"CARAVAN\n0\n1\n")
    overwritten = sensor_tick(url, again["cursor"])
    [request] = overwritten["runRequests"]
    tags = {tag["key"]: tag["value"] for tag in request["tags"]}
    assert tags["s3_assets/overwritten_objects"] == "1", overwritten
    run_to_end(client, log, "refresh_listing", tags=tags, expect=("SUCCESS", "FAILURE"))
    show(browser, f"{url}/assets/gt_csv?view=checks&checkDetail=matches_raw_table", ["matches_raw_table", "Failed"],
         "4-gt_csv-checks-after-overwrite.png")
    show(browser, f"{url}/assets", ASSETS, "4-catalog-after-overwrite.png", absent=("Loading...",))
    shown = catalog_status(browser, list(COPIES))
    assert shown["gt_csv"] == "check_failed" and shown["train_csv"] == "check_passed", shown

    # §2: the cleanup Launchpad pre-fills a dry run.
    show(browser, f"{url}/locations/s3_assets/jobs/cleanup_job/playground", ["dry_run: true"], "2-cleanup-launchpad.png",
         absent=("dry_run: false",))

    # §3: a real cleanup turns the copies' `object_exists` checks red until they are written again.
    run_to_end(client, log, "cleanup_job", {"ops": {CLEANUP_OP: {"config": {"dry_run": False}}}})
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")
    for copy in COPIES:
        show(browser, f"{url}/assets/{copy}?view=checks&checkDetail=object_exists", ["object_exists", "Failed"],
             f"3-{copy}-checks-after-cleanup.png")
    show(browser, f"{url}/assets/train_csv?view=checks&checkDetail=matches_raw_table", ["matches_raw_table", "Failed"],
         "3-train_csv-matches-after-cleanup.png", absent=("Passed",))
    for asset in ("modelling_table", "dataframes", "file_map", "s3_listing", "train"):
        show(browser, f"{url}/assets/{asset}?view=checks&checkDetail=stored_value_exists",
             ["stored_value_exists", "Failed"], f"3-{asset}-checks-after-cleanup.png")
    # The catalog: every asset (the copies, the raw tables' and all stored values, the listing)
    # is shown failed until it is materialized again; the lineage says how many checks passed.
    show(browser, f"{url}/assets", ASSETS, "3-catalog-after-cleanup.png", absent=("Loading...",))
    assert catalog_status(browser, ASSETS) == dict.fromkeys(ASSETS, "check_failed")
    show(browser, f"{url}/locations/s3_assets/asset-groups/analysis",
         ["s3_listing", "file_map", "dataframes", "modelling_table", "0 / 2 Passed", "0 / 1 Passed"],
         "3-lineage-analysis-after-cleanup.png", absent=("Loading...",))
