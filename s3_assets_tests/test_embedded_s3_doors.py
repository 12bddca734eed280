"""No door of the embedded SeaweedFS opens without credentials.

Every TCP port the weed process listens on (found in /proc, not taken from our configuration)
is tried: over TLS with and without the project's client certificate, as plaintext gRPC, and
with a battery of unauthenticated HTTP data requests (filer GET/PUT/DELETE, master assign,
volume read/write, unsigned S3). Only S3 with the generated keys reads and writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import stat
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from s3_assets.lib.local_process import pid_alive
from s3_assets.local_s3.security import (
    CA_CERT,
    NODE_CERT,
    NODE_KEY,
    SECURITY_DIR,
    SECURITY_TOML,
)
from s3_assets.local_s3.server import EmbeddedS3, find_free_ports
from s3_assets_tests.test_embedded_s3 import listening

MARKER = b"door-probe-secret-content-" + uuid.uuid4().hex.encode()


def listening_ports(pid: int) -> set[int]:
    """Every TCP port the process listens on (IPv4 and IPv6), from /proc."""
    return {port for _, port in listening(pid)}


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path

    def context(self, with_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = False  # the node certificate names localhost/127.0.0.1 anyway
        if with_cert:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context


def tls_files(server: EmbeddedS3) -> Tls:
    folder = server.data_dir / SECURITY_DIR
    return Tls(folder / CA_CERT, folder / NODE_CERT, folder / NODE_KEY)


def tls_exchange(port: int, context: ssl.SSLContext) -> bytes | None:
    """Handshake, send an HTTP/2 preface, read: the bytes the server sent (a gRPC server sends
    its SETTINGS at once), or None if the TLS session failed (handshake refused, the server's
    alert on the first read, or a close without a byte)."""
    try:
        with (socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
              context.wrap_socket(raw, server_hostname="localhost") as conn):
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            return conn.recv(64) or None
    except (TimeoutError, ssl.SSLError, ConnectionError):
        return None


def grpc_code(port: int, tls: Tls | None) -> grpc.StatusCode:
    """The status of a call to a method no server has: UNIMPLEMENTED means a gRPC conversation
    took place; UNAVAILABLE means none could (the transport was refused)."""
    target = f"127.0.0.1:{port}"
    if tls:
        creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        call = channel.unary_unary("/s3assets.probe.Nothing/Probe")
        try:
            call(b"", timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def http(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int | None, bytes]:
    """An unauthenticated HTTP request: (status, body), or (None, b"") if no HTTP answer came."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError):
        return None, b""


def data_requests(bucket: str, key: str, volume_ids: list[int]) -> list[tuple[str, str, bytes | None]]:
    """Requests that read, write or delete data on some SeaweedFS port when it has no auth."""
    new = f"{bucket}/planted-{uuid.uuid4().hex[:8]}.bin"
    requests = [
        ("GET", f"/buckets/{bucket}/{key}", None),  # filer read
        ("PUT", f"/buckets/{new}", b"planted"),  # filer write
        ("POST", f"/buckets/{new}", b"planted"),
        ("DELETE", f"/buckets/{bucket}/{key}", None),  # filer delete
        ("GET", f"/buckets/{bucket}/", None),  # filer listing
        ("GET", "/dir/assign", None),  # master: a file id (and a JWT) to write with
        ("POST", "/dir/assign", None),
        ("GET", "/dir/lookup?volumeId=1", None),
        ("POST", "/submit", b"planted"),  # master: assign + write in one
        ("GET", f"/{bucket}/{key}", None),  # unsigned S3 read
        ("PUT", f"/{new}", b"planted"),  # unsigned S3 write
        ("DELETE", f"/{bucket}/{key}", None),  # unsigned S3 delete
    ]
    for vid in volume_ids or [1]:
        fid = f"{vid},{uuid.uuid4().hex[:10]}"
        requests += [("POST", f"/{fid}", b"planted"), ("PUT", f"/{fid}", b"planted"),  # volume write
                     ("GET", f"/{vid},01", None), ("DELETE", f"/{vid},01", None)]  # volume read/delete
    return requests


def volume_ids(ports: set[int]) -> list[int]:
    """Real volume ids, from the volume server's status page (it shows sizes, not data)."""
    ids: list[int] = []
    for port in ports:
        status, body = http(port, "GET", "/status")
        if status == 200:
            try:
                ids += [volume["Id"] for volume in json.loads(body).get("Volumes") or []]
            except (ValueError, AttributeError, TypeError):
                pass
    return sorted(set(ids))


def test_every_port_refuses_without_credentials(s3_server, s3, bucket):
    key = f"secret/{uuid.uuid4().hex}.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=MARKER * 100)
    state, tls = s3_server.state, tls_files(s3_server.server)
    ports = listening_ports(state.pid)
    configured = set(state.ports.listening().values())
    assert configured <= ports, f"not listening: {sorted(configured - ports)}"

    tls_ports = {port for port in ports if tls_exchange(port, tls.context(with_cert=True)) is not None}
    http_ports = ports - tls_ports
    # Every gRPC port is a TLS port; the HTTP ones are S3, master, volume, filer and admin.
    grpc_ports = {getattr(state.ports, name) + state.ports.grpc_offset
                  for name in ("s3", "master", "volume", "filer", "admin")}
    assert grpc_ports <= tls_ports, f"gRPC without TLS: {sorted(grpc_ports - tls_ports)}"

    for port in sorted(tls_ports):
        assert tls_exchange(port, tls.context(with_cert=False)) is None, f"port {port}: TLS without a client cert"
        assert grpc_code(port, tls) == grpc.StatusCode.UNIMPLEMENTED, f"port {port}: not gRPC with our cert"
    for port in sorted(ports):
        # A gRPC conversation in plaintext, on any port, would be an open door.
        assert grpc_code(port, None) not in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED), port

    requests = data_requests(bucket, key, volume_ids(http_ports))
    opened = []
    for port in sorted(http_ports):
        for method, path, body in requests + [("GET", "/", None)]:
            status, answer = http(port, method, path, body)
            leaked = MARKER in answer or (key not in path and key.encode() in answer)
            if leaked or (path != "/" and status is not None and 200 <= status < 300):
                opened.append((port, method, path, status, answer[:120]))
    assert opened == [], opened

    # Nothing changed behind S3's back, and S3 with the generated keys still reads and writes.
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == MARKER * 100
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_filer_and_master_volume_paths_are_refused(s3_server, s3, bucket):
    """The reported doors, by name: filer GET/PUT/DELETE, master assign then volume POST."""
    ports = s3_server.state.ports
    key = "raw/train.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=MARKER)
    status, body = http(ports.filer, "GET", f"/buckets/{bucket}/{key}")
    assert status not in range(200, 300) and MARKER not in body
    status, _ = http(ports.filer, "PUT", f"/buckets/{bucket}/planted.pkl", b"planted")
    assert status not in range(200, 300)
    status, _ = http(ports.filer, "DELETE", f"/buckets/{bucket}/{key}")
    assert status not in range(200, 300)
    status, body = http(ports.master, "GET", "/dir/assign")
    assert status not in range(200, 300) and b"fid" not in body
    status, body = http(ports.volume, "POST", "/1,0123456789", b"planted")
    assert status in (401, 403), (status, body)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == [key]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == MARKER


def test_security_files_are_owner_only(s3_server):
    folder = s3_server.server.data_dir / SECURITY_DIR
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in (CA_CERT, NODE_CERT, NODE_KEY, SECURITY_TOML):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert not list(folder.glob("*ca*.key")), "the CA's private key is never kept"
    toml = (folder / SECURITY_TOML).read_text()
    for section in ("[jwt.signing]", "[jwt.signing.read]", "[jwt.filer_signing]", "[jwt.filer_signing.read]"):
        assert section in toml
    assert 'key = ""' not in toml


def tmp_snapshot() -> dict[str, tuple[int, int]]:
    """/tmp's names with inode and change time (a file re-created under an old name differs)."""
    entries = {}
    for name in os.listdir("/tmp"):
        with contextlib.suppress(OSError):
            info = os.lstat(f"/tmp/{name}")
            entries[name] = (info.st_ino, info.st_ctime_ns)
    return entries


def tmp_entries_of(before: dict[str, tuple[int, int]], ports: list[int], pid: int) -> set[str]:
    """Names in /tmp, new or re-created since `before`, that belong to a server with these
    ports and pid (weed names its sockets after ports and its log files after the pid).
    Leftovers of other, dead servers with the same port numbers are not this server's."""
    marks = [str(port) for port in ports] + [f".{pid}"]
    return {name for name, identity in tmp_snapshot().items()
            if "seaweedfs" in name or name.startswith("weed")
            if any(name.endswith((f"-{mark}.sock", mark)) for mark in marks)
            if before.get(name) != identity}


@pytest.mark.integration
@pytest.mark.parametrize("private_tmp", [True, False], ids=["private-tmp", "shared-tmp"])
def test_logs_and_sockets_stay_in_the_data_dir(tmp_path, private_tmp):
    ports = find_free_ports()
    server = EmbeddedS3(tmp_path / "s3", ports, try_private_tmp=private_tmp)
    before = tmp_snapshot()
    state = server.ensure_running()
    try:
        if private_tmp and not state.private_tmp:
            pytest.skip("this system allows no unprivileged mount namespace (the shared-tmp case applies)")
        leftovers = tmp_entries_of(before, list(ports.listening().values()), state.pid)
        data_dir = server.data_dir
        for name in ("logs", "run", "tmp", "security"):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o700, name
        logs = list((data_dir / "logs").iterdir())
        assert any(f".{state.pid}" in path.name for path in logs), "weed logs in the data dir"
        for path in [*logs, *(data_dir / "run").iterdir(), *(data_dir / "tmp").iterdir(), server.log_path]:
            if not path.is_symlink():
                assert stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0, path
        if state.private_tmp:
            assert leftovers == set(), leftovers
        else:
            # weed hard-codes its in-process gRPC sockets in /tmp: there they are owner-only.
            assert all(name.endswith(".sock") and "-grpc-" in name for name in leftovers), leftovers
            for name in leftovers:
                assert stat.S_IMODE(os.lstat(f"/tmp/{name}").st_mode) & 0o077 == 0, name
    finally:
        server.stop()
    assert tmp_entries_of(before, list(ports.listening().values()), state.pid) == set()


def test_open_link_only_where_it_opens_without_a_door():
    """No link into the closed file browser (nor a presigned link that dies silently in the
    event log): only the AWS console, which has its own login."""
    from s3_assets.defs.resources import S3Connection, S3Prefix

    aws = S3Prefix(s3=S3Connection(target="aws", region_name="eu-west-1"), bucket="my-bucket", prefix="ins_dataset")
    url = aws.browse_url("ins_dataset/raw/a b#c.csv")
    assert url == ("https://s3.console.aws.amazon.com/s3/buckets/my-bucket?region=eu-west-1"
                   "&prefix=ins_dataset/raw/&showversions=false")
    assert aws.browse_metadata("ins_dataset/raw/a b#c.csv")["open"].url == url
    odd = aws.browse_url("ins_dataset/we ird#&?/x.csv")
    assert "we%20ird%23%26%3F/" in odd and "#" not in odd
    for connection in (S3Connection(target="local", local_dir="/nonexistent/never-started"),
                       S3Connection(target="custom", endpoint_url="http://127.0.0.1:9")):
        prefix = S3Prefix(s3=connection, bucket="my-bucket", prefix="ins_dataset")
        assert prefix.browse_url("ins_dataset/raw/train.csv") is None
        assert prefix.browse_metadata("ins_dataset/raw/train.csv") == {}


@pytest.mark.integration
def test_a_server_of_an_older_version_is_restarted_not_reused(tmp_path):
    """An unlocked server left running by an older version of the project is not reused."""
    server = EmbeddedS3(tmp_path / "s3", find_free_ports())
    first = server.ensure_running()
    try:
        state_file = server.data_dir / "server.json"
        old = json.loads(state_file.read_text())
        del old["version"]  # what an older version wrote
        state_file.write_text(json.dumps(old))
        second = server.ensure_running()
        assert second.pid != first.pid and second.version == 2
        assert server.status() == second
        assert not pid_alive(first.pid)
    finally:
        server.stop()
