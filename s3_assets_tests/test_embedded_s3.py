"""The embedded SeaweedFS: starts, is reused, persists across a restart, binds to loopback
only, keeps its credentials private, stops; clear errors for a taken port or no binary."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from s3_assets.local_s3.server import EmbeddedS3, EmbeddedS3Error
from s3_assets.local_s3.server import find_free_ports as free_ports


def client_for(server: EmbeddedS3, state):
    creds = server.credentials()
    return boto3.client("s3", endpoint_url=state.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                        config=Config(s3={"addressing_style": "path"}))


def listening(pid: int) -> set[tuple[str, int]]:
    """(hex address, port) of every TCP socket the process listens on, IPv4 and IPv6, from /proc.
    A descriptor closed between listing and reading is skipped (the process is running)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                    address, port = fields[1].rsplit(":", 1)
                    found.add((address, int(port, 16)))
    return found


def listening_addresses(pid: int) -> set[str]:
    return {address for address, _ in listening(pid)}


def test_starts_reuses_persists_and_stops(tmp_path):
    server = EmbeddedS3(tmp_path / "s3", free_ports())
    state = server.ensure_running()
    try:
        again = EmbeddedS3(tmp_path / "s3", free_ports()).ensure_running()
        assert again.pid == state.pid and again.ports == state.ports  # reused, not a second server
        client = client_for(server, state)
        client.create_bucket(Bucket="persisted")
        client.put_object(Bucket="persisted", Key="a/b.csv", Body=b"1,2\n")
        client.close()  # open keep-alive connections would hold the port past the stop
        assert server.stop() is True
        assert server.status() is None
        restarted = server.ensure_running()
        assert restarted.pid != state.pid
        body = client_for(server, restarted).get_object(Bucket="persisted", Key="a/b.csv")["Body"].read()
        assert body == b"1,2\n"
    finally:
        server.stop()
    assert server.stop() is False


def test_binds_to_loopback_only_with_private_credentials(s3_server):
    addresses = listening_addresses(s3_server.state.pid)
    assert addresses == {"0100007F"}, addresses  # 127.0.0.1 in /proc's little-endian hex
    creds_file = s3_server.server.data_dir / "credentials.json"
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(s3_server.server.data_dir.stat().st_mode) == 0o700
    creds = s3_server.server.credentials()
    assert creds.access_key_id not in ("admin", "minioadmin", "any") and len(creds.secret_access_key) >= 30
    assert creds.secret_access_key not in repr(creds)
    assert creds.secret_access_key not in s3_server.server.log_path.read_text(errors="replace")


def test_wrong_credentials_are_refused(s3_server):
    from s3_assets.local_s3.server import Credentials

    client = s3_server.client(Credentials("nobody", "wrong-secret-wrong-secret"))
    with pytest.raises(Exception, match="InvalidAccessKeyId"):
        client.list_buckets()


def test_taken_port_is_a_clear_error(tmp_path):
    ports = free_ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports.filer))
        blocker.listen()
        with pytest.raises(EmbeddedS3Error, match=rf"port {ports.filer} on 127.0.0.1 \(weed -filer.port\) is in use"):
            EmbeddedS3(tmp_path / "s3", ports).ensure_running()


def port_settings(ports) -> dict[str, str]:
    """The S3_ASSETS_* variables that put the embedded server on `ports`."""
    return {"S3_ASSETS_LOCAL_S3_PORT": str(ports.s3), "S3_ASSETS_LOCAL_MASTER_PORT": str(ports.master),
            "S3_ASSETS_LOCAL_VOLUME_PORT": str(ports.volume), "S3_ASSETS_LOCAL_FILER_PORT": str(ports.filer),
            "S3_ASSETS_LOCAL_ADMIN_PORT": str(ports.admin), "S3_ASSETS_GRPC_PORT_OFFSET": str(ports.grpc_offset)}


def test_default_ports_lie_below_the_ephemeral_range():
    """Every port the default server binds (HTTP and gRPC, as configured by default) lies below
    the kernel's ephemeral range, so no outgoing connection of a busy machine holds one when the
    server starts (the old admin gRPC port, 33646, was taken so on a machine running tests)."""
    from s3_assets.defs.resources import S3Connection

    low = 32768  # Linux's default ip_local_port_range starts here; IANA's dynamic range at 49152
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    listening = S3Connection().local_ports().listening()
    assert listening and all(port < min(low, 32768) for port in listening.values()), listening


def test_missing_binary_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddedS3Error, match="S3_ASSETS_WEED_BINARY=.*not an executable"):
        EmbeddedS3(tmp_path / "s3", free_ports(), weed_binary=str(tmp_path / "no-weed-here")).ensure_running()


def test_status_command_shows_url_and_never_the_secret(s3_server):
    env = {**os.environ, "S3_ASSETS_LOCAL_DIR": s3_server.local_dir}
    out = subprocess.run([sys.executable, "-m", "s3_assets.local_s3", "status"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert s3_server.state.endpoint_url in out and f"pid {s3_server.state.pid}" in out
    assert re.findall(r"https?://\S+", out) == [s3_server.state.endpoint_url]  # no file browser
    assert s3_server.server.credentials().secret_access_key not in out
    assert s3_server.server.credentials().access_key_id not in out


def test_status_command_when_stopped(tmp_path):
    env = {**os.environ, "S3_ASSETS_LOCAL_DIR": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, "-m", "s3_assets.local_s3", "status"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 3 and "not running" in done.stdout


# -- any path: a clone or venv under /tmp, a path with a space, a symlinked folder (issue 21 §1) --

@pytest.fixture
def tmp_places():
    """Folders directly under /tmp with spaces in their names (as a clone under /tmp would be,
    which the private /tmp covers), removed after the test."""
    import shutil
    import tempfile

    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def weed_copy_under(folder: str) -> str:
    """The binary as a venv under `folder` would hold it (a hard link: same bytes, no copy)."""
    from s3_assets.local_s3.server import find_weed_binary

    venv_bin = os.path.join(folder, "my venv", "bin")
    os.makedirs(venv_bin)
    target = os.path.join(venv_bin, "weed")
    try:
        os.link(os.path.realpath(find_weed_binary()), target)
    except OSError:
        import shutil

        shutil.copy2(find_weed_binary(), target)
    return target


def serves(server: EmbeddedS3, state) -> bytes:
    client = client_for(server, state)
    client.create_bucket(Bucket="anywhere")
    client.put_object(Bucket="anywhere", Key="k.csv", Body=b"1,2\n")
    body = client.get_object(Bucket="anywhere", Key="k.csv")["Body"].read()
    client.close()
    return body


def test_starts_from_a_venv_and_data_dir_under_tmp_with_spaces(tmp_places):
    """The old namespace covered /tmp and bound back only the data directory: weed under /tmp
    vanished (exit 127). Both under /tmp, with spaces in their paths."""
    weed = weed_copy_under(tmp_places("s3a clone "))
    server = EmbeddedS3(os.path.join(tmp_places("s3a data "), "s3 data"), free_ports(), weed_binary=weed)
    try:
        state = server.ensure_running()
        assert serves(server, state) == b"1,2\n"
        from s3_assets.local_s3.server import private_tmp_wrapper

        if private_tmp_wrapper(server.data_dir, weed) is not None:  # where namespaces are allowed, one is used
            assert state.private_tmp
            assert not list(Path("/tmp").glob(f"seaweedfs-*-{state.ports.s3}.sock"))
    finally:
        server.stop()


def test_starts_through_symlinked_folders_under_tmp(tmp_places, tmp_path):
    """A symlink under /tmp to the binary's folder and another to the data directory: both
    vanish under a private /tmp unless they are resolved first."""
    real_data = tmp_path / "real data"
    real_data.mkdir()
    links = Path(tmp_places("s3a links "))
    weed = weed_copy_under(tmp_places("s3a venv "))
    (links / "venv link").symlink_to(Path(weed).parent, target_is_directory=True)
    (links / "data link").symlink_to(real_data, target_is_directory=True)
    server = EmbeddedS3(links / "data link", free_ports(), weed_binary=str(links / "venv link" / "weed"))
    try:
        state = server.ensure_running()
        assert serves(server, state) == b"1,2\n"
        assert (real_data / "server.json").exists()
    finally:
        server.stop()


def test_local_command_starts_and_stops_from_paths_under_tmp_with_spaces(tmp_places):
    weed = weed_copy_under(tmp_places("s3a cli clone "))
    data = os.path.join(tmp_places("s3a cli data "), "local s3")
    ports = free_ports()
    env = {**os.environ, "S3_ASSETS_LOCAL_DIR": data, "S3_ASSETS_WEED_BINARY": weed, **port_settings(ports)}
    command = [sys.executable, "-m", "s3_assets.local_s3"]
    try:
        started = subprocess.run([*command, "start"], env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        assert f"S3 URL    http://127.0.0.1:{ports.s3}" in started.stdout
        assert "Traceback" not in started.stderr
    finally:
        stopped = subprocess.run([*command, "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped")
