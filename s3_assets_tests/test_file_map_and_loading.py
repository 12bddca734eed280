"""The file map's rules and the loaded DataFrame dict: concurrency-safe, correct parsing,
errors that name the key, nothing half-loaded."""

from __future__ import annotations

import gzip
import io
import re

import boto3
import botocore.session
import pandas as pd
import pytest
import urllib3
from botocore.config import Config

from s3_assets.lib.file_map import DuplicateNameError, FileMapRules, build_file_map
from s3_assets.lib.listing import frame_from_rows, list_objects
from s3_assets.lib.loading import ClientOrigin, LoadError, arrow_options, load_frames
from s3_assets_tests.sigv4_proxy import SigV4OnlyProxy


def listing_of(keys: list[str], root: str = "ins_dataset/") -> pd.DataFrame:
    sizes = [0 if k.endswith("/") else 10 for k in keys]
    now = [pd.Timestamp("2026-01-01", tz="UTC")] * len(keys)
    return frame_from_rows("b", root, keys, sizes, now, ["e"] * len(keys), ["STANDARD"] * len(keys))


NOTEBOOK_LAYOUT = [
    "ins_dataset/raw/", "ins_dataset/raw/train.csv", "ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv",
    "ins_dataset/raw/metadata/", "ins_dataset/raw/metadata/col_info.csv",
]


def test_default_rules_give_the_notebooks_three_files():
    assert build_file_map(listing_of(NOTEBOOK_LAYOUT), FileMapRules()) == {
        "train": "ins_dataset/raw/train.csv", "test": "ins_dataset/raw/test.csv", "gt": "ins_dataset/raw/gt.csv"}


def test_depth_and_extension_rules():
    keys = NOTEBOOK_LAYOUT + ["ins_dataset/raw/notes.txt", "ins_dataset/raw/model.tar.gz", "ins_dataset/top.CSV"]
    deeper = build_file_map(listing_of(keys), FileMapRules(max_depth=2))
    assert deeper["col_info"] == "ins_dataset/raw/metadata/col_info.csv"
    assert build_file_map(listing_of(keys), FileMapRules(max_depth=0)) == {"top": "ins_dataset/top.CSV"}
    texts = build_file_map(listing_of(keys), FileMapRules(extensions=["txt", ".gz"]))
    assert texts == {"notes": "ins_dataset/raw/notes.txt", "model.tar": "ins_dataset/raw/model.tar.gz"}


def test_folder_markers_are_never_files():
    assert build_file_map(listing_of(["ins_dataset/x.csv/"]), FileMapRules()) == {}


def test_duplicate_names_name_both_keys():
    keys = ["ins_dataset/a/train.csv", "ins_dataset/b/train.csv"]
    with pytest.raises(DuplicateNameError, match="'ins_dataset/a/train.csv' and 'ins_dataset/b/train.csv'"):
        build_file_map(listing_of(keys), FileMapRules())


def test_file_map_on_the_real_server(s3, bucket):
    for key in ["ins_dataset/raw/train.csv", "ins_dataset/raw/metadata/col_info.csv", "ins_dataset_old/raw/x.csv"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"a\n1\n")
    assert build_file_map(list_objects(s3, bucket, "ins_dataset/"), FileMapRules()) == {
        "train": "ins_dataset/raw/train.csv"}


def test_loads_csv_with_commas_and_compact_types(s3, bucket, origin):
    frame = pd.DataFrame({"0": range(300), "1": [-5] * 300, "2": [70000] * 300})
    s3.put_object(Bucket=bucket, Key="p/a.csv", Body=frame.to_csv(index=False).encode())
    s3.put_object(Bucket=bucket, Key="p/b.csv", Body=b"x,y\n1,2\n")
    progress: list[str] = []
    frames = load_frames(s3, bucket, {"a": "p/a.csv", "b": "p/b.csv"}, {}, progress=progress.append, origin=origin)
    assert frames["a"].shape == (300, 3)  # not one text column, as read_table gave
    assert [str(t) for t in frames["a"].dtypes] == ["uint16", "int8", "uint32"]
    assert frames["b"].to_dict("list") == {"x": [1], "y": [2]}
    assert progress[-1].startswith("2/2 files")


def test_broken_row_fails_naming_the_key(s3, bucket, origin):
    s3.put_object(Bucket=bucket, Key="p/good.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key="p/broken.csv", Body=b"a,b\n1,2\n3,4,5\n")
    with pytest.raises(LoadError, match="'p/broken.csv' is not a valid CSV.*Expected 2 columns, got 3"):
        load_frames(s3, bucket, {"good": "p/good.csv", "broken": "p/broken.csv"}, {}, origin=origin)


def test_missing_object_names_the_key(s3, bucket, origin):
    with pytest.raises(LoadError, match=f"s3://{bucket}/p/gone.csv.*NoSuchKey"):
        load_frames(s3, bucket, {"gone": "p/gone.csv"}, {}, origin=origin)


@pytest.mark.parametrize("botocore_only", [False, True], ids=["arrow", "botocore"])
def test_file_over_the_size_limit_is_refused(s3, bucket, botocore_only, origin):
    with pytest.raises(LoadError, match="'p/big.csv' is 5,000 bytes, over the in-memory limit of 1,000"):
        load_frames(s3, bucket, {"big": "p/big.csv"}, {"p/big.csv": 5000}, max_bytes=1000, origin=origin)
    # a listing older than the file (it grew since) is caught when the file is opened
    s3.put_object(Bucket=bucket, Key="p/grown.csv", Body=b"a\n" + b"1\n" * 600)
    with pytest.raises(LoadError, match="'p/grown.csv' is 1,202 bytes, over the in-memory limit of 1,000"):
        load_frames(s3, bucket, {"grown": "p/grown.csv"}, {"p/grown.csv": 10}, max_bytes=1000,
                    botocore_only=botocore_only, origin=origin)


BAD_BODIES = {
    "gzip": (gzip.compress(b"a,b\n" + b"1,2\n" * 5000), "line 1 starts with the gzip signature"),
    "tiny gzip": (gzip.compress(b"a,b\n1,2\n"), "line 1 starts with the gzip signature"),
    "duplicate header": (b"a,b,a\n1,2,3\n", "line 1 \\(the header\\) names column\\(s\\) a more than once"),
    "short row": (b"a,b\n1,2\n3\n4,5\n", "line 3: Expected 2 columns, got 1"),
    "not UTF-8": (b"a,b\n1,x\n2,\xff\xfe\n", "line 3, column 2 \\(b\\) is not UTF-8 text"),
    "empty": (b"", "line 1: Empty CSV file"),
}


@pytest.mark.parametrize("botocore_only", [False, True], ids=["arrow", "botocore"])
@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_content_names_the_key_and_the_line(s3, bucket, case, botocore_only, origin):
    body, message = BAD_BODIES[case]
    key = f"raw/{case.replace(' ', '_')}\x1b[31m.csv"
    s3.put_object(Bucket=bucket, Key="raw/good.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    with pytest.raises(LoadError) as raised:
        load_frames(s3, bucket, {"good": "raw/good.csv", "bad": key}, {}, botocore_only=botocore_only, origin=origin)
    text = str(raised.value)
    assert f"'raw/{case.replace(' ', '_')}\\x1b[31m.csv'" in text  # the key, its escape shown as text
    assert "\x1b" not in text
    assert re.search(message, text), text


def test_a_big_file_that_fails_late_names_the_line(s3, bucket, monkeypatch, origin):
    from s3_assets.lib import loading

    monkeypatch.setattr(loading, "STREAM_FROM", 1000)  # parsed block by block, as a big file is
    monkeypatch.setattr(loading, "BIG_BLOCK", 4096)
    body = b"a,b\n" + b"1,2\n" * 3000 + b"3,4,5\n"
    s3.put_object(Bucket=bucket, Key="raw/late.csv", Body=body)
    with pytest.raises(LoadError, match="'raw/late.csv' is not a valid CSV.*line 3002: Expected 2 columns, got 3"):
        load_frames(s3, bucket, {"late": "raw/late.csv"}, {"raw/late.csv": len(body)}, origin=origin)


BLOCKWISE = {
    # small values first, wide and negative ones in later blocks: one type for the whole column
    "widening": "a,b,c\n" + "".join(f"{i % 7},{i},1\n" for i in range(3000)) + "-5,70000,2\n",
    # an empty cell in a late block: the column stays int64 with its gap, as read in one go
    "late gap": "a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(3000)) + "7,\n",
    # text in a late block of an integer column: read again in one go, which widens the type
    "late text": "a,b\n" + "".join(f"{i},{i}\n" for i in range(3000)) + "8,x\n",
}


@pytest.mark.parametrize("case", sorted(BLOCKWISE))
def test_blockwise_parsing_gives_the_frame_of_a_whole_read(s3, bucket, monkeypatch, case, origin):
    from s3_assets.lib import loading

    body = BLOCKWISE[case].encode()
    s3.put_object(Bucket=bucket, Key="raw/x.csv", Body=body)
    whole = load_frames(s3, bucket, {"x": "raw/x.csv"}, {"raw/x.csv": len(body)}, origin=origin)["x"]
    monkeypatch.setattr(loading, "STREAM_FROM", 1000)
    monkeypatch.setattr(loading, "BIG_BLOCK", 4096)  # several blocks
    blockwise = load_frames(s3, bucket, {"x": "raw/x.csv"}, {"raw/x.csv": len(body)}, origin=origin)["x"]
    pd.testing.assert_frame_equal(blockwise, whole)
    expected = pd.read_csv(io.BytesIO(body))
    if case == "widening":
        assert [str(t) for t in blockwise.dtypes] == ["int8", "uint32", "uint8"]
    pd.testing.assert_frame_equal(whole.astype(expected.dtypes.to_dict()), expected, check_dtype=False)


def test_every_get_is_sigv4_one_per_object(s3_server, s3, bucket, origin):
    """Behind an endpoint that refuses SigV2 (as AWS, R2 and B2 do), each small object costs
    one GET, which also tells its current size: nothing is refused and nothing retried."""
    keys = {f"f{i}": f"raw/f{i:03d}.csv" for i in range(12)}
    for key in keys.values():
        s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n")
    with SigV4OnlyProxy(s3_server.state.ports.s3) as proxy:
        guarded = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                               aws_access_key_id=s3_server.server.credentials().access_key_id,
                               aws_secret_access_key=s3_server.server.credentials().secret_access_key,
                               config=Config(s3={"addressing_style": "path"}))
        # the proxy refuses what the old fast path sent: a SigV2 presigned URL
        url = guarded.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": keys["f0"]})
        assert urllib3.request("GET", url).status == 400
        proxy.seen.clear()
        frames = load_frames(guarded, bucket, keys, {}, origin=origin)
        seen = list(proxy.seen)
    assert sorted(frames) == sorted(keys) and all(f.shape == (1, 2) for f in frames.values())
    assert {s.signature for s in seen} == {"sigv4"}
    for key in keys.values():
        methods = sorted(s.method for s in seen if s.path == f"/{bucket}/{key}")
        assert methods == ["GET"], (key, methods)
    assert len(seen) == len(keys)


def test_http_proxy_of_the_client_is_used(s3_server, s3, bucket, monkeypatch, origin):
    """HTTP_PROXY as botocore resolves it (NO_PROXY included) carries the loads too: small
    files (botocore) and big ones (arrow)."""
    from s3_assets.lib import loading

    monkeypatch.setattr(loading, "STREAM_FROM", 16)  # raw/big.csv takes arrow's path
    s3.put_object(Bucket=bucket, Key="raw/a.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key="raw/big.csv", Body=b"a,b\n" + b"1,2\n" * 8)
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with SigV4OnlyProxy(s3_server.state.ports.s3) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = s3_server.client()  # created with the variable set, as botocore reads it then
        assert arrow_options(client, origin)["proxy_options"] == proxy.url
        frames = load_frames(client, bucket, {"a": "raw/a.csv", "big": "raw/big.csv"},
                             {"raw/a.csv": 8, "raw/big.csv": 36}, origin=origin)
        seen = list(proxy.seen)
    assert frames["a"].to_dict("list") == {"a": [1], "b": [2]} and frames["big"].shape == (8, 2)
    assert [(s.method, s.path, s.via_proxy) for s in seen if s.path.endswith("/raw/a.csv")] == [
        ("GET", f"/{bucket}/raw/a.csv", True)]
    assert [(s.method, s.path, s.via_proxy) for s in seen if s.path.endswith("/raw/big.csv")] == [
        ("HEAD", f"/{bucket}/raw/big.csv", True), ("GET", f"/{bucket}/raw/big.csv", True)]


def test_no_proxy_and_tls_settings_map_onto_arrow(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read here")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "s3.example.org")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))

    def client(endpoint: str | None, verify=None, **kwargs):
        session = botocore.session.Session()
        made = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s",
                                     aws_session_token="token", region_name="eu-west-1", botocore_session=session,
                                     ).client("s3", endpoint_url=endpoint, verify=verify, **kwargs)
        return made, ClientOrigin(session, verify)

    custom = arrow_options(*client("https://minio.example.com:9000",
                                   config=Config(connect_timeout=3, read_timeout=7,
                                                 retries={"total_max_attempts": 4, "mode": "standard"})))
    assert custom == {
        "region": "eu-west-1", "scheme": "https", "endpoint_override": "minio.example.com:9000",
        "tls_ca_file_path": str(bundle), "proxy_options": "http://proxy.internal:3128",
        "access_key": "AKIDEXAMPLE", "secret_key": "s", "session_token": "token",
        "connect_timeout": 3.0, "request_timeout": 7.0, "retry_strategy": ("standard", 4)}
    assert "proxy_options" not in arrow_options(*client("https://s3.example.org"))
    assert arrow_options(*client("https://minio.example.com", verify="/other/ca.pem"))["tls_ca_file_path"] == \
        "/other/ca.pem"
    aws = arrow_options(*client(None))
    assert "endpoint_override" not in aws and aws["region"] == "eu-west-1"
    virtual = arrow_options(*client("https://r2.example.com", config=Config(s3={"addressing_style": "virtual"})))
    assert virtual["force_virtual_addressing"] is True
    # proxies given to the client win over the environment's, as in botocore
    explicit = arrow_options(*client("https://s3.example.org", config=Config(proxies={"https": "proxy.example:8080"})))
    assert explicit["proxy_options"] == "http://proxy.example:8080"
    # settings arrow cannot carry send the load through botocore instead
    assert arrow_options(*client("https://minio.example.com", verify=False)) is None
    assert arrow_options(*client(None, config=Config(use_fips_endpoint=True))) is None
    # AWS hosts other than S3's regional endpoints (a VPC interface endpoint, an access point):
    # arrow would reach the public endpoint by region instead, so botocore loads
    for host in ("https://bucket.vpce-0a1b2c3d-e4f5g6h7.s3.us-east-1.vpce.amazonaws.com",
                 "https://ap-123456789012.s3-accesspoint.us-east-1.amazonaws.com"):
        assert arrow_options(*client(host)) is None, host
    assert "endpoint_override" not in arrow_options(*client("https://s3.us-east-1.amazonaws.com"))
    # without the origin there are no credentials to give arrow: botocore loads
    assert arrow_options(client("https://minio.example.com")[0], None) is None


def test_credentials_come_from_the_connections_provider_chain(s3_server, s3, bucket, monkeypatch):
    """A `custom` S3Connection whose keys and session token come from the environment (the
    provider chain, as on SageMaker or with AWS_PROFILE): its origin gives arrow those
    credentials, and arrow's requests through a SigV4-only endpoint succeed (HEAD + GET,
    which only the arrow path sends: the file is loaded as a big one)."""
    from s3_assets.defs.resources import S3Connection
    from s3_assets.lib import loading

    monkeypatch.setattr(loading, "STREAM_FROM", 4)  # raw/a.csv takes arrow's path

    s3.put_object(Bucket=bucket, Key="raw/a.csv", Body=b"a,b\n1,2\n")
    creds = s3_server.server.credentials()
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_access_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-session-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with SigV4OnlyProxy(s3_server.state.ports.s3) as proxy:
        connection = S3Connection(target="custom", endpoint_url=proxy.url, region_name="us-east-1", max_attempts=2)
        options = arrow_options(connection.get_client(), connection.client_origin())
        assert (options["access_key"], options["session_token"]) == (creds.access_key_id, "a-session-token")
        monkeypatch.delenv("AWS_SESSION_TOKEN")  # SeaweedFS would refuse the made-up token itself
        client, origin = connection.get_client(), connection.client_origin()
        frames = load_frames(client, bucket, {"a": "raw/a.csv"}, {"raw/a.csv": 8}, origin=origin)
        seen = list(proxy.seen)
    assert frames["a"].to_dict("list") == {"a": [1], "b": [2]}
    assert [(s.method, s.signature) for s in seen if s.path == f"/{bucket}/raw/a.csv"] == [
        ("HEAD", "sigv4"), ("GET", "sigv4")]


@pytest.mark.parametrize("uri", [
    "s3://b/elsewhere/train.csv",          # another folder of the bucket
    "s3://b/ins_dataset_old/train.csv",    # a sibling whose name starts like the prefix
    "s3://other/ins_dataset/train.csv",    # another bucket
    "s3://b/ins_dataset/../elsewhere/x.csv",
    "s3://b/ins_dataset//raw/train.csv",   # the server stores it under another key
    "s3://b/ins_dataset/raw\\train.csv",
    "s3://b/ins_dataset/",                 # the prefix itself
    "s3://b/ins_dataset/raw/",             # a folder (a folder marker on AWS), not a file
    "/etc/passwd",
    "s3://b/elsewhere/\nnew line\x1b[31m",  # outside text: escaped in the message
])
def test_a_map_pointing_outside_the_prefix_is_refused_by_name(uri):
    from s3_assets.lib.file_map import OutsidePrefixError, keys_under_prefix

    good = {"test": "s3://b/ins_dataset/raw/test.csv"}
    with pytest.raises(OutsidePrefixError) as refused:
        keys_under_prefix({**good, "train": uri}, "b", "ins_dataset/")
    message = str(refused.value)
    assert "train: " in message and "test.csv" not in message and "\n" not in message and "\x1b" not in message
    assert keys_under_prefix(good, "b", "ins_dataset/") == {"test": "ins_dataset/raw/test.csv"}


def test_dataframes_refuses_a_planted_map_before_reading_anything(s3, bucket, make_location):
    """A file map value from anywhere (a planted stored value) is checked by `dataframes` itself."""
    from dagster import build_asset_context

    from s3_assets.defs.analysis.assets import LoadConfig, dataframes
    from s3_assets.lib.dictionary import parse_dictionary
    from s3_assets.lib.file_map import OutsidePrefixError
    from s3_assets_tests.uci_fixtures import dictionary_text

    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="elsewhere/train.csv", Body=b"1,2\n")
    planted = {"train": f"s3://{bucket}/elsewhere/train.csv"}
    with build_asset_context(resources={"s3_prefix": location}) as context, \
            pytest.raises(OutsidePrefixError, match=f"train: s3://{bucket}/elsewhere/train.csv"):
        dataframes(context, config=LoadConfig(), file_map=planted,
                   s3_listing=listing_of(["ins_dataset/raw/train.csv"]),
                   data_dictionary=parse_dictionary(dictionary_text()))
