"""The lock notes by which runs and cleanups exclude each other (docs/RELIABILITY.md, "Lock notes"):
keyed on the bucket and the roots as the server stores them, in one folder no setting moves;
overlaps (parent, child, another configuration's IO prefix, a run's stored outputs) refused; a
dead run's note stops counting when it is no longer renewed; malformed notes fail by name; no
conditional request, so servers that refuse or ignore them work; one note per run and process,
one PUT + one LIST at the start and one DELETE at the end; nothing left behind."""

from __future__ import annotations

import json
import re
import threading
import unicodedata
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

from s3_assets.defs.resources import S3Connection, S3Prefix, prefixes_overlap, validate_prefix
from s3_assets.lib.errors import ConfigError, S3AssetsError
from s3_assets.lib.prefix_lock import (
    NOTES_ROOT,
    LeaseLapsedError,
    NoteError,
    PrefixBusyError,
    PrefixLocks,
    note_key,
)
from s3_assets.lib.text import printable
from s3_assets_tests.fault_proxy import FaultProxy, carries_condition, refuse_conditional
from s3_assets_tests.lease_faults import FailingRenewals, short_lease_prefix
from s3_assets_tests.test_aws_account import SECRET, moto_url  # noqa: F401 - the fixture
from s3_assets_tests.test_cleanup import keys_in
from s3_assets_tests.test_cleanup_safety import (
    Gate,
    custom,
    failure_of,
    in_thread,
    run_cleanup,
    seed_copies,
)
from s3_assets_tests.test_cli_and_sensor import cli  # noqa: F401 - the fixture
from s3_assets_tests.test_listing import put_many


def notes_in(s3, bucket: str) -> set[str]:
    return {key for key in keys_in(s3, bucket) if key.startswith(NOTES_ROOT)}


# -- 1. keyed on the stored data prefix, overlaps refused ----------------------------------------

def _outputs_of_e30(connection) -> str:
    # A non-default IO prefix: a data prefix in the default one (`dagster-io/e30/`) is refused
    # when the resource is built (test_cleanup_other_configurations.py).
    return S3Prefix(s3=connection, bucket="any-bucket", prefix="e30", io_prefix="io-e30").outputs_root()


@pytest.mark.parametrize("case", ["parent", "child", "other io prefix", "the run's stored outputs"])
def test_a_cleanup_refuses_while_an_overlapping_prefix_is_held(s3_server, s3, bucket, connection, run_graph,
                                                               uci_dir, case):
    run_prefix, run_io, cleanup_io = {"parent": ("nest/child", "dagster-io", "dagster-io"),
                                      "child": ("nest", "dagster-io", "dagster-io"),
                                      "other io prefix": ("e11", "dagster-io", "io2"),
                                      "the run's stored outputs": ("e30", "io-e30", "io2")}[case]
    cleanup_prefix = {"parent": "nest", "child": "nest/child", "other io prefix": "e11",
                      "the run's stored outputs": _outputs_of_e30(connection)}[case]
    put_many(s3, bucket, [f"{run_prefix}/raw/train.csv"])
    gate = Gate(lambda method, path: method == "HEAD" and path.endswith(f"/{run_prefix}/raw/train.csv"))
    with FaultProxy(s3_server.state.ports.s3, on_request=gate) as proxy:
        run_location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket, prefix=run_prefix, io_prefix=run_io)
        thread, box = in_thread(lambda: run_graph(run_location, uci_dir, selection="*train_csv"))
        assert gate.reached.wait(120)
        try:
            cleanup_location = S3Prefix(s3=connection, bucket=bucket, prefix=cleanup_prefix, io_prefix=cleanup_io)
            refused = run_cleanup(cleanup_location, raise_on_error=False, dry_run=False)  # another instance
            held = keys_in(s3, bucket)
        finally:
            gate.release.set()
        thread.join(120)
    assert not refused.success
    message = failure_of(refused)
    assert box["result"].run_id in message and "Nothing was deleted" in message
    assert f"{run_prefix}/raw/train.csv" in held  # nothing deleted while the run held it
    assert box["result"].success
    assert f"{run_prefix}/raw/train.csv" in keys_in(s3, bucket)
    assert not notes_in(s3, bucket)  # the run took its note back at its end


@pytest.mark.parametrize("prefix", ["bsdata\\io", "bs2\\ins", "a//b", "a/ b/c", "a /b", "\\lead",
                                    unicodedata.normalize("NFD", "caf\u00e9"), ".s3-assets-locks",
                                    ".s3-assets-locks/v1/x", "/.S3-Assets-Locks/"])
@pytest.mark.parametrize("field", ["prefix", "io_prefix"])
def test_prefixes_a_server_rewrites_or_the_notes_folder_are_refused(connection, prefix, field):
    with pytest.raises(ConfigError):
        validate_prefix(prefix, field)
    others = {"prefix": "data", "io_prefix": "io"}
    with pytest.raises(ValueError, match="prefix"):  # S3_ASSETS_PREFIX and S3_ASSETS_IO_PREFIX alike
        S3Prefix(s3=connection, bucket="b-ok", **{**others, field: prefix})


def test_overlap_is_judged_on_the_stored_form():
    assert prefixes_overlap("Data", "data/x") and prefixes_overlap("/nest/", "nest/child")
    assert prefixes_overlap("caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9") + "/x")
    assert not prefixes_overlap("data", "data2") and not prefixes_overlap("a/b", "a/bc")


def test_notes_do_not_depend_on_the_io_prefix(s3, bucket, make_location):
    # Two configurations of one data prefix (different IO prefixes) meet in the same folder.
    first, second = make_location(bucket, io_prefix="io1"), make_location(bucket, io_prefix="io2")
    hold = first.prefix_locks(first.connect()).hold_for_run("run-a", first.written_roots(), what="a")
    try:
        with pytest.raises(PrefixBusyError, match="run-a"):
            with second.prefix_locks(second.connect()).cleanup("cleanup-b", second.written_roots(), what="b"):
                pass
    finally:
        hold.release()
    assert not notes_in(s3, bucket)


# -- 2. a dead run does not block for ever ---------------------------------------------------------

def _started_run(instance: DagsterInstance) -> DagsterRun:
    run = DagsterRun(job_name="refresh_all", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
    return instance.add_run(run)


def test_a_killed_run_blocks_only_until_its_note_expires_or_the_run_is_terminated(s3, bucket, make_location):
    location, instance = make_location(bucket), DagsterInstance.ephemeral()
    seed_copies(s3, bucket)
    # A run SIGKILLed a whole ttl ago: its instance still says STARTED, its note is no longer renewed.
    dead = _started_run(instance)
    PrefixLocks(location.connect(), bucket, ttl_seconds=0).hold_for_run(
        dead.run_id, location.written_roots(), what="t").stop()
    # A run killed just now: its note still counts, and the refusal says until when and how to end it.
    killed = _started_run(instance)
    PrefixLocks(location.connect(), bucket).hold_for_run(killed.run_id, location.written_roots(), what="t").stop()
    refused = run_cleanup(location, instance=instance, raise_on_error=False, dry_run=False)
    message = failure_of(refused)
    assert not refused.success and killed.run_id in message and dead.run_id not in message
    assert "running in this Dagster instance" in message and "Terminate" in message
    assert "until" in message and "UTC on the server's clock" in message and "ends by itself" in message
    instance.report_run_canceled(killed)  # what Terminate (forced) in the UI records
    run_cleanup(location, instance=instance, dry_run=False)
    assert not keys_in(s3, bucket)  # data deleted, both dead notes swept


# -- 3. malformed notes fail by name ---------------------------------------------------------------

def _valid_body(owner: str, roots: list[str], kind: str = "run", ttl: int = 120) -> dict:
    return {"kind": kind, "ttl_seconds": ttl, "owner": owner, "roots": roots, "host": "h", "pid": 1}


BAD_BODIES = {
    "a list": b"[]",
    "ttl nan string": json.dumps({**_valid_body("r", ["ins_dataset/"]), "ttl_seconds": "nan"}).encode(),
    "ttl NaN literal": json.dumps(_valid_body("r", ["ins_dataset/"])).replace("120", "NaN").encode(),
    "ttl 1e12": json.dumps({**_valid_body("r", ["ins_dataset/"]), "ttl_seconds": 1e12}).encode(),
    "ttl bool": json.dumps({**_valid_body("r", ["ins_dataset/"]), "ttl_seconds": True}).encode(),
    "missing fields": b'{"kind": "run"}',
    "not json": b"\x00\xff{{",
    "deep": b"[" * 10000,
    "huge": json.dumps({**_valid_body("r", ["ins_dataset/"]), "pad": "x" * 100000}).encode(),
    "roots not a list": json.dumps({**_valid_body("r", ["ins_dataset/"]), "roots": "ins_dataset/"}).encode(),
    "pid text": json.dumps({**_valid_body("r", ["ins_dataset/"]), "pid": "1"}).encode(),
}


@pytest.mark.parametrize("why", list(BAD_BODIES))
def test_a_note_with_a_malformed_body_fails_by_name(s3, bucket, make_location, why):
    location = make_location(bucket)
    key = note_key("run", 120, "r", "0123456789abcdef", ["ins_dataset/"])
    s3.put_object(Bucket=bucket, Key=key, Body=BAD_BODIES[why])
    locks = location.prefix_locks(location.connect())
    with pytest.raises(NoteError) as raised:
        with locks.cleanup("cleanup-run", location.written_roots(), what="t"):
            pytest.fail("the cleanup went ahead")
    assert isinstance(raised.value, S3AssetsError) and printable(key) in str(raised.value)
    assert notes_in(s3, bucket) == {key}  # the cleanup took its own note back


@pytest.mark.parametrize("name", ["junk", "run.nan.r.0123456789abcdef.aW5zX2RhdGFzZXQv",
                                  "run.1000000000000.r.0123456789abcdef.aW5zX2RhdGFzZXQv",
                                  "run.-1.r.0123456789abcdef.aW5zX2RhdGFzZXQv", "other.120.r.0123456789abcdef.x",
                                  "cleanup.120.r.0123456789abcdef.%%%", "run.120.r.0123456789abcdef.aW5zX2Rh\x1b",
                                  "run.120.r\u202e.0123456789abcdef.aW5zX2RhdGFzZXQv",
                                  "run.120.r.0123456789abcdef.aW5zX2RhdGFzZXQv%25"])
def test_a_note_with_a_malformed_name_fails_runs_and_cleanups_by_name(s3, bucket, make_location, name):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key=NOTES_ROOT + name, Body=b"{}")
    locks = location.prefix_locks(location.connect())
    for take in (lambda: locks.hold_for_run("a-run", location.written_roots(), what="t"),
                 lambda: locks.hold("cleanup", "a-cleanup", location.written_roots(), what="t")):
        with pytest.raises(NoteError) as raised:
            take()
        text = str(raised.value)
        assert printable(NOTES_ROOT + name) in text and not {"\x1b", "\u202e"} & set(text)
    assert notes_in(s3, bucket) == {NOTES_ROOT + name}


def test_a_run_refuses_by_name_on_a_malformed_cleanup_note(s3, bucket, make_location, run_graph, uci_dir):
    location = make_location(bucket)
    key = note_key("cleanup", 120, "c", "0123456789abcdef", location.written_roots())
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"ttl_seconds": "nan"}')
    run = run_graph(location, uci_dir, selection="*train_csv", raise_on_error=False)
    assert not run.success and printable(key) in failure_of(run) and "NoteError" in failure_of(run)
    assert "AttributeError" not in failure_of(run) and "OverflowError" not in failure_of(run)


# -- 4. servers without conditional requests; nothing left behind ------------------------------------

@pytest.mark.parametrize("server", ["refuses conditional requests", "ignores them"])
def test_runs_and_cleanups_need_no_conditional_request(s3_server, s3, bucket, run_graph, uci_dir, server):
    put_many(s3, bucket, ["ins_dataset_old/keep.csv", "ins_dataset/extra.csv"])
    kwargs = {"answer": refuse_conditional} if server.startswith("refuses") else \
        {"strip_headers": ("If-None-Match", "If-Match")}
    failing = threading.Event()
    failing.set()

    def rule(method: str, path: str) -> str:  # fails the first run after it took its note
        return "internal_error" if failing.is_set() and method == "PUT" and "/ins_dataset/raw/" in path else "pass"

    with FaultProxy(s3_server.state.ports.s3, rule=rule, **kwargs) as proxy:
        location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket)
        instance = DagsterInstance.ephemeral()
        failed = run_graph(location, uci_dir, selection="*train_csv", instance=instance, raise_on_error=False)
        assert not failed.success and "InternalError" in failure_of(failed)
        assert not notes_in(s3, bucket)  # a failed run takes its note back too
        failing.clear()
        assert run_graph(location, uci_dir, selection="*train_csv", instance=instance).success
        assert not notes_in(s3, bucket)
        run_cleanup(location, dry_run=False)  # another instance: no note of the runs is left to wait for
        # A cleanup that refuses takes its note back as well.
        hold = PrefixLocks(s3, bucket).hold_for_run("live-run", location.written_roots(), what="t")
        assert not run_cleanup(location, raise_on_error=False, dry_run=False).success
        hold.release()
        requests = list(proxy.requests)
    assert keys_in(s3, bucket) == {"ins_dataset_old/keep.csv"}
    assert not any(carries_condition(headers) for _, _, headers in requests)
    assert proxy.stripped == 0


def test_runs_and_cleanups_on_motos_server(moto_url):  # noqa: F811 - the imported fixture
    import boto3

    moto = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="AKIAMOTOTEST0001",
                        aws_secret_access_key=SECRET)
    bucket = f"moto-{uuid.uuid4().hex[:10]}"
    moto.create_bucket(Bucket=bucket)
    moto.put_object(Bucket=bucket, Key="ins_dataset_old/keep.csv", Body=b"1")
    connection = S3Connection(target="custom", endpoint_url=moto_url, region_name="us-east-1", max_attempts=2,
                              aws_access_key_id="AKIAMOTOTEST0001", aws_secret_access_key=SECRET)
    location = S3Prefix(s3=connection, bucket=bucket)
    locks = PrefixLocks(moto, bucket)
    hold = locks.hold_for_run("moto-run", location.written_roots(), what="t")
    refused = run_cleanup(location, raise_on_error=False, dry_run=False)
    assert not refused.success and "moto-run" in failure_of(refused)  # moto's Date and LastModified agree
    hold.release()
    moto.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=b"x")
    run_cleanup(location, dry_run=False)
    left = {item["Key"] for item in moto.list_objects_v2(Bucket=bucket).get("Contents", ())}
    assert left == {"ins_dataset_old/keep.csv"}


# -- 5. one connection, one bucket check, one note per run and process --------------------------------

def test_a_run_costs_one_bucket_check_and_one_note_put_listed_and_deleted(s3_server, s3, bucket, run_graph,
                                                                         uci_dir):
    with FaultProxy(s3_server.state.ports.s3) as proxy:
        location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket)
        assert run_graph(location, uci_dir, selection="*train_csv").success
        requests = list(proxy.requests)

    def query(path: str) -> dict[str, list[str]]:
        return parse_qs(urlsplit(path).query)

    note_paths = [(method, unquote(urlsplit(path).path)) for method, path, _ in requests
                  if unquote(urlsplit(path).path).startswith(f"/{bucket}/{NOTES_ROOT}")]
    note_lists = [path for method, path, _ in requests if query(path).get("prefix") == [NOTES_ROOT]]
    bucket_checks = [path for method, path, _ in requests
                     if query(path).get("prefix") == ["ins_dataset/"] and query(path).get("max-keys") == ["1"]]
    assert len({path for method, path in note_paths if method == "PUT"}) == 1  # one note (renewals rewrite it)
    assert [method for method, _ in note_paths if method == "DELETE"] == ["DELETE"]
    assert not [method for method, _ in note_paths if method not in ("PUT", "DELETE")]  # no GET of a body
    assert len(note_lists) == 1 and len(bucket_checks) == 1
    assert not notes_in(s3, bucket)


@pytest.mark.parametrize("override", [False, True], ids=["settings", "run-config-prefix"])
def test_a_step_per_process_run_holds_its_prefix_between_steps(s3_server, s3, bucket, uci_dir, tmp_path,
                                                              cli, override):  # noqa: F811 - the imported fixture
    """Each step of a multiprocess (or Celery) run holds the note only while it runs; between
    steps no step process is alive. The run's own process holds the note for the whole run, so a
    cleanup in that gap is refused, and the run leaves no note behind. With `s3_prefix` overridden
    in the run's config (the launchpad), the data goes to the override's prefix while the IO
    manager (a nested resource run config does not reach) stores under the settings' one: both
    are held."""
    import os
    import subprocess

    from dagster import DagsterInstance

    from s3_assets_tests.step_gap_jobs import FIRST_KEY, SECOND_KEY

    data = "other" if override else "ins_dataset"
    pause = tmp_path / "pause"
    pause.mkdir()
    os.mkfifo(pause / "release")
    config = tmp_path / "run.yaml"
    config.write_text(f"ops:\n  wait_between:\n    config:\n      pause_dir: {pause}\n" + (
        f"resources:\n  s3_prefix:\n    config:\n      prefix: {data}\n      bucket: {bucket}\n" if override else ""))
    run = subprocess.Popen([cli.dagster, "job", "execute", "-m", "s3_assets_tests.step_gap_jobs", "-j", "step_gap",
                            "-c", str(config)], cwd=cli.root, env=cli.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        while not (pause / "paused").exists():
            assert run.poll() is None, run.communicate()[0][-3000:]
            threading.Event().wait(0.05)  # polling for the step's marker, not ordering a race
        assert s3.head_object(Bucket=bucket, Key=f"{data}/{FIRST_KEY}")  # the first step is done
        with DagsterInstance.from_config(str(cli.home)) as instance:
            [record] = instance.get_runs()
        locks = PrefixLocks(s3, bucket)
        for roots in (["ins_dataset/"], ["dagster-io/ins_dataset/"]) + ((["other/"],) if override else ()):
            with pytest.raises(PrefixBusyError, match=f"run {record.run_id}"):
                with locks.cleanup("gap-cleanup", roots, what="the gap's prefix"):
                    pass
    finally:
        open(pause / "release", "w").close()
        output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output[-3000:]
    assert s3.get_object(Bucket=bucket, Key=f"{data}/{SECOND_KEY}")["Body"].read() == b"2"
    assert notes_in(s3, bucket) == set()  # the run's process deleted its notes at the end


def test_every_job_whose_steps_run_elsewhere_holds_the_run_from_its_own_process():
    """A job with an executor that runs steps in other processes must use one that holds the
    run's note from the run's process (`s3_assets.defs.executors`), or cleanups find gaps."""
    from dagster import in_process_executor

    from s3_assets.definitions import defs
    from s3_assets.defs.cluster.executor import s3_celery_executor
    from s3_assets.defs.executors import held_multiprocess_executor
    from s3_assets.per_file_definitions import build_definitions as build_per_file_definitions

    holding = {held_multiprocess_executor, s3_celery_executor}
    for definitions in (defs, build_per_file_definitions()):
        for job in definitions.resolve_all_job_defs():
            assert job.executor_def is in_process_executor or job.executor_def in holding, job.name


# -- 6. a holder is told when its lease lapsed --------------------------------------------------------

def _proxied_client(s3_server, proxy: FaultProxy, attempts: int = 1):
    import boto3
    from botocore.config import Config

    creds = s3_server.server.credentials()
    return boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"mode": "standard", "total_max_attempts": attempts}))


def test_a_hold_whose_renewals_fail_past_its_lease_says_so_and_stays_lost(s3_server, s3, bucket):
    ttl = 6
    renewals = FailingRenewals(ttl, kind="run")
    with FaultProxy(s3_server.state.ports.s3, rule=renewals) as proxy:
        locks = PrefixLocks(_proxied_client(s3_server, proxy), bucket, ttl_seconds=ttl)
        hold = locks.hold_for_run("lapsing-run", ["ins_dataset/", "dagster-io/ins_dataset/"], what="t")
        try:
            hold.ensure_live()  # just taken: live
            renewals.refuse.set()  # every renewal from now on: 503 SlowDown
            assert renewals.lapsed.wait(120)
            with pytest.raises(LeaseLapsedError) as raised:
                hold.ensure_live(before="writing s3://b/ins_dataset/raw/train.csv")
            text = str(raised.value)
            assert isinstance(raised.value, S3AssetsError)
            assert printable(hold.key) in text and "run lapsing-run" in text and "pid" in text
            assert re.search(r"last renewed successfully \d+\.\d s ago", text)
            assert "renewal(s) failed since" in text and "SlowDown" in text
            assert "before writing s3://b/ins_dataset/raw/train.csv" in text and "nothing more is written" in text
            # A failed renewal is retried soon, not a whole interval (2 s) later: more than the
            # 3 tries a fixed interval allows within the ttl (4: slack for a loaded machine), and no flood
            # (at most one per 1/8 interval).
            assert 4 <= renewals.refused_before_lapse <= 8 * 3 + 2
            # S3 answers again: the note is renewed, but the lease stays lost (a cleanup may have
            # started meanwhile and will not look again).
            renewals.refuse.clear()
            assert renewals.passed_again.wait(120)
            assert hold.left() > 0
            with pytest.raises(LeaseLapsedError, match="lapsed"):
                hold.ensure_live()
        finally:
            hold.release()
    assert not notes_in(s3, bucket)


def test_a_stored_value_is_not_made_current_after_the_lease_lapsed(s3_server, s3, bucket):
    from s3_assets.lib.stored_values import MANIFEST, ValueStore, read_value

    ttl = 6
    renewals = FailingRenewals(ttl, kind="run")
    base = "dagster-io/ins_dataset/train/"
    frame_put = Gate(lambda method, path: method == "PUT" and f"/{base}v" in unquote(path) and path.endswith(".parquet"))
    first = pd.DataFrame({"a": [1, 2]})
    with FaultProxy(s3_server.state.ports.s3, rule=renewals, on_request=frame_put) as proxy:
        client = _proxied_client(s3_server, proxy)
        hold = PrefixLocks(client, bucket, ttl_seconds=ttl).hold_for_run("value-run", [base], what="t")
        store = ValueStore(client, bucket, before_write=hold.check_before)
        try:
            frame_put.reached.set()  # the first value passes the gate
            store.write(base, first)
            frame_put.reached.clear()
            renewals.refuse.set()
            thread, box = in_thread(lambda: store.write(base, pd.DataFrame({"a": [3, 4, 5]})))
            assert frame_put.reached.wait(120)  # its file is being put ...
            assert renewals.lapsed.wait(120)  # ... while the lease lapses
            frame_put.release.set()
            thread.join(120)
        finally:
            frame_put.release.set()
            store.close()
            hold.release()
    assert isinstance(box.get("error"), LeaseLapsedError)
    assert f"s3://{bucket}/{base}{MANIFEST}" in str(box["error"]) and "value-run" in str(box["error"])
    assert read_value(s3, bucket, base).equals(first)  # the old value stays current
    assert not notes_in(s3, bucket)


def _run_paused_while_its_lease_lapses(s3_server, bucket, run_graph, uci_dir, gate):
    """`*train_csv` run with 9 s notes through the proxy; held at `gate` until its renewals have
    failed for a whole ttl; its result."""
    ttl = 9
    renewals = FailingRenewals(ttl, kind="run")
    with FaultProxy(s3_server.state.ports.s3, rule=renewals, on_request=gate) as proxy:
        location = short_lease_prefix(ttl)(s3=custom(proxy.url, s3_server), bucket=bucket)
        thread, box = in_thread(lambda: run_graph(location, uci_dir, selection="*train_csv", raise_on_error=False))
        try:
            assert gate.reached.wait(120)
            renewals.refuse.set()
            assert renewals.lapsed.wait(120)
        finally:
            gate.release.set()
        thread.join(120)
    return box["result"]


def test_a_runs_copy_is_not_written_after_its_lease_lapsed(s3_server, s3, bucket, run_graph, uci_dir):
    seed_copies(s3, bucket, b"old\n")
    # The run pauses at its look at raw/train.csv (a HEAD, before the PUT) while its renewals fail.
    run = _run_paused_while_its_lease_lapses(
        s3_server, bucket, run_graph, uci_dir,
        Gate(lambda method, path: method == "HEAD" and path.endswith("/ins_dataset/raw/train.csv")))
    message = failure_of(run)
    assert not run.success and "LeaseLapsedError" in message
    assert run.run_id in message and f"{NOTES_ROOT}run." in message and "last renewed successfully" in message
    assert f"before writing s3://{bucket}/ins_dataset/raw/train.csv" in message
    assert s3.get_object(Bucket=bucket, Key="ins_dataset/raw/train.csv")["Body"].read() == b"old\n"
    assert not notes_in(s3, bucket)


def test_a_runs_stored_value_is_not_made_current_after_lapse(s3_server, s3, bucket, run_graph, uci_dir):
    """Through the IO manager: the run's first stored file is held at the proxy while the
    renewals fail; no manifest is put after, in that step or any later one."""
    outputs = "/dagster-io/ins_dataset/"
    run = _run_paused_while_its_lease_lapses(
        s3_server, bucket, run_graph, uci_dir,
        Gate(lambda method, path: method == "PUT" and outputs in path and ".parquet" in path))
    message = failure_of(run)
    assert not run.success and "LeaseLapsedError" in message and run.run_id in message
    assert re.search(rf"before putting s3://{bucket}/dagster-io/ins_dataset/\S+/manifest\.json", message)
    assert not [key for key in keys_in(s3, bucket) if key.endswith("/manifest.json")]
    assert not notes_in(s3, bucket)
