"""Keys are outside text: created on the real SeaweedFS with markdown, HTML, terminal escapes,
line breaks and bidi overrides, they are shown as data everywhere (UI markdown, tables, logs)
and every key the file map's rules select is either named or reported."""

from __future__ import annotations

import re

from dagster import DagsterInstance, materialize

from s3_assets.defs import ASSETS
from s3_assets.lib.text import printable
from s3_assets_tests.conftest import graph_resources, materialization_metadata

HOSTILE = [
    "ins_dataset/raw/```\n# Injected heading\n```.csv",
    "ins_dataset/raw/# heading.csv",
    "ins_dataset/raw/<img src=x onerror=alert(1)>.csv",
    "ins_dataset/raw/\x1b[31mred\x1b[0m.csv",
    "ins_dataset/raw/line\nbreak.csv",
    "ins_dataset/raw/carriage\rreturn.csv",
    "ins_dataset/raw/bidi\u202egnp.csv",
    "ins_dataset/raw/[link](javascript:x).csv",
    "ins_dataset/raw/fine.csv",
    "ins_dataset/top ```` four.csv",
]
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def fenced_body(markdown: str) -> list[str]:
    """The lines inside the one code block the markdown must be, or fail."""
    lines = markdown.split("\n")
    fence = re.match(r"^(`{3,})", lines[0])
    assert fence and lines[-1] == fence.group(1), markdown
    body = lines[1:-1]
    assert not any(line.lstrip().startswith(fence.group(1)) for line in body)  # nothing closes it early
    return body


def test_hostile_keys_stay_text_in_listing_and_file_map(s3, bucket, make_location, uci_dir, tmp_path):
    for key in HOSTILE:  # one by one (see RELIABILITY.md on SeaweedFS and concurrent PUTs)
        s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n")
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")["Contents"]}
    assert stored == set(HOSTILE)  # the server keeps every hostile key as it was given
    location = make_location(bucket)
    instance = DagsterInstance.ephemeral()
    result = materialize(ASSETS, selection=["s3_listing", "file_map"], instance=instance,
                         resources=graph_resources(location, uci_dir, tmp_path / "cache"))
    listing = materialization_metadata(result, "s3_listing")
    for name in ("aws s3 ls", "aws s3 ls --recursive"):
        body = fenced_body(listing[name].md_str if hasattr(listing[name], "md_str") else listing[name])
        assert not any(UNSAFE.search(line) for line in body)
    recursive = "\n".join(fenced_body(listing["aws s3 ls --recursive"]))
    for key in HOSTILE:
        assert printable(key) in recursive  # each key shown, escaped, on its own line
    preview_keys = [record.data["key"] for record in listing["preview"].records]
    assert preview_keys and not any(UNSAFE.search(key) for key in preview_keys)

    file_map = materialization_metadata(result, "file_map")
    mapping = result.output_for_node("file_map")
    named = {location.key_from_uri(uri) for uri in mapping.values()}
    unnamed = {key for key in HOSTILE if UNSAFE.search(key.rsplit("/", 1)[1])}
    assert unnamed == {HOSTILE[0], HOSTILE[3], HOSTILE[4], HOSTILE[5], HOSTILE[6]}
    assert named == set(HOSTILE) - unnamed  # the rules apply to every key: named...
    assert file_map["unnamed_files"] == len(unnamed)  # ...or reported, never dropped
    reported = "\n".join(fenced_body(file_map["unnamed"].md_str if hasattr(file_map["unnamed"], "md_str")
                                     else file_map["unnamed"]))
    assert all(printable(key) in reported for key in unnamed)
    assert "<img src=x onerror=alert(1)>" in mapping and "# heading" in mapping  # names are data (JSON)

    messages = [record.dagster_event.message if record.dagster_event else record.user_message
                for record in instance.all_logs(result.run_id)]
    warnings = [m for m in messages if m and "cannot name" in m]
    assert len(warnings) == 1 and all(printable(key) in warnings[0] for key in unnamed)
    assert not any(m and ("\x1b" in m or "\u202e" in m or "\r" in m) for m in messages)


HOSTILE_KEYS = ["ins_dataset/raw/\x1b[2J\x1b[31mred.csv", "ins_dataset/raw/line\nbreak.csv",
                "ins_dataset/raw/\u202eevil.csv", "ins_dataset/raw/bell\x07.csv"]


def test_error_messages_show_keys_as_text():
    """Every error that names a key shows it escaped: no terminal escape, line break or bidi
    control of a key reaches a log, a terminal or the UI raw."""
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    from s3_assets.lib.errors import describe_client_error
    from s3_assets.lib.loading import gzip_error

    for key in HOSTILE_KEYS:
        denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")
        messages = [
            str(describe_client_error(denied, bucket="b", key=key, endpoint="http://127.0.0.1:1")),
            str(describe_client_error(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), bucket="b", key=key)),
            str(describe_client_error(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), bucket="b", key=key)),
            str(describe_client_error(ValueError(f"odd {key}"), bucket="b", key=key)),
            str(gzip_error(key)),
        ]
        for message in messages:
            assert printable(message) == message.replace("\\", "\\\\"), message
            assert printable(key) in message, message


def test_stored_value_errors_show_their_keys_as_text(s3, bucket):
    """A stored output whose folder is named by outside text (the prefix): a missing value, a
    manifest that is not JSON and one that is not the project's, each named escaped."""
    from s3_assets.lib.stored_values import MANIFEST, StoredValueError, read_manifest

    base = "dagster-io/\x1b[2J\n\u202e\\/"
    found = []
    for body in (None, b"not json", b'{"format": "someone else"}'):
        if body is not None:
            s3.put_object(Bucket=bucket, Key=base + MANIFEST, Body=body)
        try:
            read_manifest(s3, bucket, base)
        except StoredValueError as error:
            found.append(str(error))
    assert len(found) == 3
    for message in found:
        assert printable(base) in message and not UNSAFE.search(message), message
