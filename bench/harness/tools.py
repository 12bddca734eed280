"""The comparison tools, how each is run and timed.

Library calls (this project, the notebook's code) are timed around the call, in this process;
command-line tools (aws, s5cmd) as whole processes, start-up included, as a user runs them;
awswrangler in the tools venv (it pins other botocore/pyarrow versions), timed inside that
process around the call. A tool that is not installed is reported as such, not timed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness.server import TOOLS_BIN, tool_path

PROGRAMS = Path(__file__).resolve().parent / "programs"
PROJECT = "s3-assets (this project)"
NOTEBOOK = "notebook's code"


CPU: dict[str, float] = {}  # this process's CPU seconds of the last timed call, by label


def timed(fn: Callable[[], object], repeat: int, cpu_label: str = "") -> tuple[float, object]:
    """Best of `repeat` wall times (seconds), and the last result. With `cpu_label`, the CPU
    time this process spent in the fastest call is kept in CPU (threads included)."""
    times, result = [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        if cpu_label and times[-1] == min(times):
            CPU[cpu_label] = time.process_time() - cpu
    return min(times), result


def run_process(args: list[str], env: dict[str, str], repeat: int = 1) -> float:
    """Best wall time of `repeat` runs of a whole process."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(args, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        best = min(best, time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stderr.decode()[-500:]}")
    return best


def aws() -> str | None:
    return tool_path("aws")


def s5cmd() -> str | None:
    return tool_path("s5cmd")


def tools_python() -> str | None:
    python = TOOLS_BIN / "python"
    return str(python) if python.exists() else None


def run_program(python: str, program: str, args: list[str], env: dict[str, str]) -> str:
    """Run programs/<program> and return the last line it printed."""
    done = subprocess.run([python, str(PROGRAMS / program), *args], check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{program} failed: {done.stderr[-800:]}")
    return done.stdout.strip().splitlines()[-1]
