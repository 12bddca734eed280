"""A Dagster dev server (`dg dev`, `dagster dev`) started as a user starts it, for the tests that
ask its webserver: in a process group of its own, ready once `/server_info` answers, stopped like
Ctrl-C (or killed if it does not stop within a minute)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


def stop_group(process: subprocess.Popen, how: int = signal.SIGINT) -> str:
    """Signal the process group, wait, kill it if it lingers; what it wrote to stderr (if piped)."""
    try:
        os.killpg(process.pid, how)
    except ProcessLookupError:
        pass
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
    return stderr or ""


@dataclass
class DevServer:
    process: subprocess.Popen
    stderr: str = ""  # once stopped


@contextmanager
def dev_server(command: list[str], cwd: Path, env: dict[str, str], port: int, timeout: float = 300) -> Iterator[DevServer]:
    """`command` (a program of this venv and its arguments) serving the UI on `port`."""
    process = subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    server = DevServer(process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, f"{command} exited {process.returncode}: {process.stderr.read()[-3000:]}"  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"{command} did not serve on port {port} in {timeout:.0f}s"
            time.sleep(0.5)  # polling for readiness, not ordering a race
        yield server
    finally:
        server.stderr = stop_group(process)
